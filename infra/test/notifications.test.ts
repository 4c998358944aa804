// Notifications (shared/src/notify): the notifier on the events queue, its alarms for a
// backlog (seed 004 flow 11), the mail sender's identity and the push grants.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resourcesOf, synth } from './helpers';

const AWS = {};
const LOCAL = { local: 'true', arch: 'x86_64' };
const APP = 'arn:aws:sns:us-east-1:123456789012:app/GCM/flashsale-push';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const fn = (template: any, name: string) =>
  resourcesOf(template, 'AWS::Lambda::Function').find(([, f]) => f.Properties.FunctionName === `Flashsale-dev-${name}`)!;

describe('notifications', () => {
  for (const [label, context] of [['AWS', AWS], ['LocalStack', LOCAL]] as const) {
    it(`${label}: the notifier consumes the events queue in batches of 10, item failures reported, concurrency capped`, () => {
      const { template } = synth(context);
      const [fnId] = fn(template, 'notifier');
      const mappings = resourcesOf(template, 'AWS::Lambda::EventSourceMapping').filter(
        ([, m]) => JSON.stringify(m.Properties.FunctionName).includes(fnId),
      );
      assert.equal(mappings.length, 1);
      const m = mappings[0][1].Properties;
      assert.equal(m.BatchSize, 10);
      assert.deepEqual(m.FunctionResponseTypes, ['ReportBatchItemFailures']);
      assert.deepEqual(m.ScalingConfig, { MaximumConcurrency: 5 });
      assert.ok(JSON.stringify(m.EventSourceArn).includes('Events'), JSON.stringify(m.EventSourceArn));
    });
  }

  it('a backlog pages: more than 1,000 visible for a minute, the oldest over 5 minutes, consumer errors, its own lag over a minute', () => {
    const { template } = synth(AWS);
    const alarms = new Map(
      resourcesOf(template, 'AWS::CloudWatch::Alarm').map(([id, a]) => [id, a.Properties]),
    );
    const find = (part: string) => [...alarms.entries()].find(([id]) => id.includes(part))?.[1];
    const backlog = find('EventsBacklog');
    assert.equal(backlog.MetricName, 'ApproximateNumberOfMessagesVisible');
    assert.equal(backlog.Threshold, 1000);
    assert.equal(backlog.Period, 60);
    assert.equal(find('EventsOldestMessage').MetricName, 'ApproximateAgeOfOldestMessage');
    assert.equal(find('EventsOldestMessage').Threshold, 300);
    assert.equal(find('EventsConsumerErrors').MetricName, 'Errors');
    const lag = find('EventsConsumerLag');
    assert.deepEqual([lag.Namespace, lag.MetricName, lag.Threshold], ['Flashsale', 'LagMs', 60000]);
    assert.deepEqual(lag.Dimensions, [{ Name: 'function', Value: 'notifier' }]);
    for (const part of ['EventsBacklog', 'EventsOldestMessage', 'EventsConsumerErrors', 'EventsConsumerLag']) {
      assert.equal(find(part).AlarmActions.length, 1, part);
    }
  });

  it('the mail sender is an SES identity on AWS (none on LocalStack, where deploy-local.sh verifies it)', () => {
    const aws = resourcesOf(synth({ mailSender: 'shop@mail.example.org' }).template, 'AWS::SES::EmailIdentity');
    assert.deepEqual(aws.map(([, i]) => i.Properties.EmailIdentity), ['shop@mail.example.org']);
    assert.equal(resourcesOf(synth(LOCAL).template, 'AWS::SES::EmailIdentity').length, 0);
    assert.throws(() => synth({ mailSender: 'not an address' }), /mailSender/);
  });

  it('push: with a platform application the notifier may publish to its endpoints and devices may make them; without, neither', () => {
    const statements = (context: Record<string, string>, name: string) => {
      const { template } = synth(context);
      const [, f] = fn(template, name);
      const role = f.Properties.Role['Fn::GetAtt'][0];
      return resourcesOf(template, 'AWS::IAM::Policy')
        .filter(([, p]) => p.Properties.Roles.some((r: { Ref: string }) => r.Ref === role))
        .flatMap(([, p]) => p.Properties.PolicyDocument.Statement);
    };
    const sns = (context: Record<string, string>, name: string) =>
      statements(context, name).filter((s: { Action: string | string[] }) => JSON.stringify(s.Action).includes('sns:'));
    assert.deepEqual(sns({ pushPlatformApplicationArn: APP }, 'notifier').map((s: { Resource: string }) => s.Resource), [
      'arn:aws:sns:us-east-1:123456789012:endpoint/GCM/flashsale-push/*',
    ]);
    assert.deepEqual(sns({ pushPlatformApplicationArn: APP }, 'devices').map((s: { Resource: string }) => s.Resource), [APP]);
    assert.deepEqual(sns(AWS, 'notifier'), []);
    assert.deepEqual(sns(AWS, 'devices'), []);
    const { template } = synth({ pushPlatformApplicationArn: APP });
    assert.equal(fn(template, 'devices')[1].Properties.Environment.Variables.PUSH_PLATFORM_APPLICATION_ARN, APP);
    assert.throws(() => synth({ pushPlatformApplicationArn: 'arn:aws:sns:us-east-1:123456789012:my-topic' }), /platform application/);
  });
});
