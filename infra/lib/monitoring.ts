import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** The CloudWatch namespace of the functions' EMF metrics (shared/src/metrics.rs `NAMESPACE`). */
export const EMF_NAMESPACE = 'Flashsale';

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

  private add(alarm: cloudwatch.Alarm): cloudwatch.Alarm {
    alarm.addAlarmAction(this.action);
    return alarm;
  }
}
