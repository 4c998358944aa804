import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** The CloudWatch namespace of the functions' EMF metrics (shared/src/metrics.rs `NAMESPACE`). */
export const EMF_NAMESPACE = 'Flashsale';
/** A backlog alarm's threshold: the seed's "backlog above 1,000 messages". */
export const BACKLOG_MESSAGES = 1000;

export interface MonitoringProps {
  /** Optional e-mail subscription of the alarm topic. */
  readonly alarmEmail?: string;
}

/** The alarm topic and the helpers that put alarms on it. */
export class Monitoring extends Construct {
  readonly topic: sns.Topic;
  private readonly action: actions.SnsAction;

  constructor(scope: Construct, id: string, props: MonitoringProps = {}) {
    super(scope, id);
    this.topic = new sns.Topic(this, 'AlarmTopic', { displayName: 'flashsale alarms' });
    if (props.alarmEmail) {
      this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    }
    this.action = new actions.SnsAction(this.topic);
  }

  /** Alarms as soon as any message is visible in the dead-letter queue. */
  alarmOnDlqDepth(id: string, queue: sqs.IQueue): cloudwatch.Alarm {
    return this.add(
      new cloudwatch.Alarm(this, `${id}Depth`, {
        alarmDescription: `Messages in dead-letter queue ${id}: inspect and redrive`,
        metric: queue.metricApproximateNumberOfMessagesVisible({
          period: Duration.minutes(1),
          statistic: cloudwatch.Stats.MAXIMUM,
        }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );
  }

  /** Alarms on any failed execution of the state machine (ExecutionsFailed > 0 in a minute). */
  alarmOnExecutionsFailed(id: string, stateMachine: sfn.IStateMachine): cloudwatch.Alarm {
    return this.add(
      new cloudwatch.Alarm(this, `${id}ExecutionsFailed`, {
        alarmDescription: `Failed executions of state machine ${id}`,
        metric: stateMachine.metricFailed({
          period: Duration.minutes(1),
          statistic: cloudwatch.Stats.SUM,
        }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );
  }

  /**
   * Alarms when the EMF counter `metricName` (namespace Flashsale, dimension `function`) is above
   * zero in any minute, for any of `functions`. One alarm per function: EMF publishes one series
   * per dimension value.
   */
  alarmOnEmfCount(id: string, metricName: string, functions: readonly string[], description: string): cloudwatch.Alarm[] {
    return functions.map((fn) =>
      this.add(
        new cloudwatch.Alarm(this, `${id}${fn.replace(/(^|-)(\w)/g, (_m, _d, c: string) => c.toUpperCase())}`, {
          alarmDescription: `${description} (${fn})`,
          metric: new cloudwatch.Metric({
            namespace: EMF_NAMESPACE,
            metricName,
            dimensionsMap: { function: fn },
            period: Duration.minutes(1),
            statistic: cloudwatch.Stats.SUM,
          }),
          threshold: 0,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      ),
    );
  }

  /**
   * A consumer falling behind (seed 004 flow 11): more than 1,000 visible messages for a
   * minute, the oldest older than 5 minutes, the consumer's errors in a minute, and its own
   * lag (EMF `LagMs`, now minus the oldest message's sent time, which it emits with every
   * batch) above a minute.
   */
  alarmOnBacklog(id: string, queue: sqs.IQueue, consumer: lambda.IFunction, emfFunction: string): cloudwatch.Alarm[] {
    const minute = { period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM };
    const alarm = (suffix: string, description: string, metric: cloudwatch.IMetric, threshold: number) =>
      this.add(
        new cloudwatch.Alarm(this, `${id}${suffix}`, {
          alarmDescription: description,
          metric,
          threshold,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      );
    return [
      alarm('Backlog', `More than ${BACKLOG_MESSAGES} messages waiting in ${id} for a minute: its consumer is down or too slow`,
        queue.metricApproximateNumberOfMessagesVisible(minute), BACKLOG_MESSAGES),
      alarm('OldestMessage', `The oldest message in ${id} waits longer than 5 minutes`,
        queue.metricApproximateAgeOfOldestMessage(minute), 300),
      alarm('ConsumerErrors', `The consumer of ${id} failed`,
        consumer.metricErrors({ period: Duration.minutes(1), statistic: cloudwatch.Stats.SUM }), 0),
      alarm('ConsumerLag', `The consumer of ${id} reads messages more than a minute after they were sent`,
        new cloudwatch.Metric({
          namespace: EMF_NAMESPACE,
          metricName: 'LagMs',
          dimensionsMap: { function: emfFunction },
          ...minute,
        }), 60_000),
    ];
  }

  private add(alarm: cloudwatch.Alarm): cloudwatch.Alarm {
    alarm.addAlarmAction(this.action);
    return alarm;
  }
}
