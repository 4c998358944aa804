import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { allActions, asArray, only, resourcesOf, statementsOfRole, synth } from './helpers';

const AWS = {}; // defaults: AWS mode, arm64, stage dev
const LOCAL = { local: 'true', arch: 'x86_64', redisUrl: 'redis://127.0.0.1:7777' };

function healthFunction(context: Record<string, string>) {
  const { template } = synth(context);
  const found = resourcesOf(template, 'AWS::Lambda::Function').filter(
    ([, r]) => r.Properties.FunctionName === 'Flashsale-dev-health',
  );
  assert.equal(found.length, 1, 'one health function');
  return found[0];
}

describe('functions', () => {
  for (const [arch, context] of [
    ['arm64', {}],
    ['x86_64', { arch: 'x86_64' }],
    ['arm64', { local: 'true', arch: 'arm64' }],
    ['x86_64', LOCAL],
  ] as const) {
    it(`runs provided.al2023 on ${arch} when context is ${JSON.stringify(context)}`, () => {
      const [, fn] = healthFunction(context);
      assert.equal(fn.Properties.Runtime, 'provided.al2023');
      assert.deepEqual(fn.Properties.Architectures, [arch]);
      assert.equal(fn.Properties.Handler, 'bootstrap');
      assert.equal(fn.Properties.MemorySize, 256);
    });
  }

  it('every function has RUST_LOG=info, its own log group with retention, and an explicit name', () => {
    for (const context of [AWS, LOCAL]) {
      const { template } = synth(context);
      const logGroups = template.findResources('AWS::Logs::LogGroup');
      for (const [, fn] of resourcesOf(template, 'AWS::Lambda::Function')) {
        assert.equal(fn.Properties.Environment.Variables.RUST_LOG, 'info');
        const groupId = fn.Properties.LoggingConfig.LogGroup.Ref;
        const group = logGroups[groupId];
        assert.ok(group, 'log group defined in the stack');
        assert.equal(group.Properties.LogGroupName, `/aws/lambda/${fn.Properties.FunctionName}`);
        assert.ok(group.Properties.RetentionInDays > 0);
      }
    }
  });

  it('health gets exactly REDIS_URL, REDIS_MODE and SALES_TABLE (plus RUST_LOG)', () => {
    const [, fn] = healthFunction(AWS);
    const { stack } = synth(AWS);
    const salesId = stack.getLogicalId(stack.data.tables.sales.node.defaultChild as never);
    const vars = fn.Properties.Environment.Variables;
    assert.deepEqual(Object.keys(vars).sort(), ['REDIS_MODE', 'REDIS_URL', 'RUST_LOG', 'SALES_TABLE']);
    assert.equal(vars.REDIS_MODE, 'cluster');
    assert.deepEqual(vars.SALES_TABLE, { Ref: salesId });
  });
});

describe('REST API', () => {
  it('routes GET /health to the health function with a Lambda proxy integration', () => {
    for (const context of [AWS, LOCAL]) {
      const { template } = synth(context);
      const [fnId] = healthFunction(context);
      const [resId] = resourcesOf(template, 'AWS::ApiGateway::Resource').find(
        ([, r]) => r.Properties.PathPart === 'health',
      )!;
      const methods = resourcesOf(template, 'AWS::ApiGateway::Method').filter(
        ([, m]) => m.Properties.ResourceId.Ref === resId,
      );
      assert.equal(methods.length, 1);
      const m = methods[0][1].Properties;
      assert.equal(m.HttpMethod, 'GET');
      assert.equal(m.Integration.Type, 'AWS_PROXY');
      assert.equal(m.Integration.IntegrationHttpMethod, 'POST');
      const uri = JSON.stringify(m.Integration.Uri);
      assert.ok(uri.includes(JSON.stringify({ 'Fn::GetAtt': [fnId, 'Arn'] })), uri);
      assert.ok(uri.includes('/invocations'), uri);
      only(template, 'AWS::ApiGateway::RestApi');
    }
  });

  it('has a stage named after the context with stage-wide throttling', () => {
    const { template } = synth(AWS);
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'dev',
      MethodSettings: Match.arrayWith([
        Match.objectLike({
          HttpMethod: '*',
          ResourcePath: '/*',
          ThrottlingRateLimit: 10000,
          ThrottlingBurstLimit: 5000,
        }),
      ]),
    });
    const custom = synth({ stage: 'prod', throttleRateLimit: '100', throttleBurstLimit: '50' }).template;
    custom.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'prod',
      MethodSettings: Match.arrayWith([
        Match.objectLike({ ThrottlingRateLimit: 100, ThrottlingBurstLimit: 50 }),
      ]),
    });
  });

  it('exports the outputs the tooling reads', () => {
    const { template } = synth(LOCAL);
    const outputs = Object.keys(template.toJSON().Outputs);
    for (const name of [
      'ApiId',
      'StageName',
      'ApiUrl',
      'SalesTableName',
      'ReservationsTableName',
      'OrdersTableName',
      'WebhookEventsTableName',
      'EventsQueueUrl',
      'EventsQueueName',
      'EventsDlqUrl',
      'SagaDlqUrl',
      'SagaDlqName',
      'HealthFunctionName',
      'ReserveFunctionName',
      'EventPublisherFunctionName',
      'PayFunctionName',
      'PaymentWebhookFunctionName',
      'SagaStepsFunctionName',
      'ExpiryCleanupFunctionName',
      'RebuildStockFunctionName',
      'AuthorizerFunctionName',
      'CheckoutSagaArn',
      'JwtIssuer',
      'JwtAudience',
    ]) {
      assert.ok(outputs.includes(name), `output ${name}`);
    }
    template.hasOutput('StageName', { Value: Match.anyValue() });
  });
});

describe('DynamoDB', () => {
  const tableByKey = (context: Record<string, string>, pk: string, extra?: (t: any) => boolean) => {
    const { template } = synth(context);
    const found = resourcesOf(template, 'AWS::DynamoDB::Table').filter(
      ([, t]) => t.Properties.KeySchema[0].AttributeName === pk && (!extra || extra(t)),
    );
    assert.equal(found.length, 1, `one table keyed by ${pk}`);
    return found[0][1];
  };
  const gsi = (t: any, name: string) => {
    const index = (t.Properties.GlobalSecondaryIndexes ?? []).find((i: any) => i.IndexName === name);
    assert.ok(index, `index ${name}`);
    return index;
  };
  const sorted = (xs: string[]) => [...xs].sort();

  it('has six on-demand tables with generated names', () => {
    for (const context of [AWS, LOCAL]) {
      const tables = resourcesOf(synth(context).template, 'AWS::DynamoDB::Table');
      assert.equal(tables.length, 6);
      for (const [, t] of tables) {
        assert.equal(t.Properties.BillingMode, 'PAY_PER_REQUEST');
        assert.equal(t.Properties.TableName, undefined, 'no hard-coded table name');
      }
    }
  });

  it('sales: pk sale_id', () => {
    const t = tableByKey(AWS, 'sale_id');
    assert.deepEqual(t.Properties.KeySchema, [{ AttributeName: 'sale_id', KeyType: 'HASH' }]);
    assert.equal(t.Properties.TimeToLiveSpecification, undefined);
  });

  it('reservations: pk, TTL, the sparse expiry index and the bucketed by-sale index', () => {
    const t = tableByKey(AWS, 'reservation_id', (x) => x.Properties.TimeToLiveSpecification);
    assert.deepEqual(t.Properties.KeySchema, [{ AttributeName: 'reservation_id', KeyType: 'HASH' }]);
    assert.deepEqual(t.Properties.TimeToLiveSpecification, { AttributeName: 'ttl', Enabled: true });
    assert.deepEqual(
      sorted(t.Properties.AttributeDefinitions.map((a: any) => `${a.AttributeName}:${a.AttributeType}`)),
      sorted(['reservation_id:S', 'expiry_bucket:S', 'expires_at:N', 'sale_bucket:S']),
    );
    assert.equal(t.Properties.GlobalSecondaryIndexes.length, 2);
    const pending = gsi(t, 'pending-by-expiry');
    assert.deepEqual(pending.KeySchema, [
      { AttributeName: 'expiry_bucket', KeyType: 'HASH' },
      { AttributeName: 'expires_at', KeyType: 'RANGE' },
    ]);
    assert.equal(pending.Projection.ProjectionType, 'INCLUDE');
    assert.deepEqual(sorted(pending.Projection.NonKeyAttributes), sorted(['sale_id', 'user_id', 'quantity', 'shard', 'status']));
    // Spread over <sale>#00..#15 so a sale's burst of reservations is not one hot partition.
    const bySale = gsi(t, 'by-sale-bucketed');
    assert.deepEqual(bySale.KeySchema, [
      { AttributeName: 'sale_bucket', KeyType: 'HASH' },
      { AttributeName: 'reservation_id', KeyType: 'RANGE' },
    ]);
    assert.equal(bySale.Projection.ProjectionType, 'INCLUDE');
    // What a stock rebuild needs to re-create holds and per-user claims, and what the reconciler
    // needs to find payments with no running saga.
    assert.deepEqual(
      sorted(bySale.Projection.NonKeyAttributes),
      sorted(['status', 'quantity', 'shard', 'user_id', 'expires_at', 'created_at', 'payment_started_at']),
    );
  });

  it('orders: pk reservation_id and by-sale index', () => {
    const t = tableByKey(AWS, 'reservation_id', (x) => !x.Properties.TimeToLiveSpecification);
    assert.equal(t.Properties.GlobalSecondaryIndexes.length, 1);
    const bySale = gsi(t, 'by-sale');
    assert.deepEqual(bySale.KeySchema, [
      { AttributeName: 'sale_id', KeyType: 'HASH' },
      { AttributeName: 'reservation_id', KeyType: 'RANGE' },
    ]);
    assert.equal(bySale.Projection.ProjectionType, 'INCLUDE');
    assert.deepEqual(sorted(bySale.Projection.NonKeyAttributes), sorted(['quantity', 'shard', 'user_id']));
  });

  it('webhook-events: pk event_id with TTL', () => {
    const t = tableByKey(AWS, 'event_id');
    assert.deepEqual(t.Properties.TimeToLiveSpecification, { AttributeName: 'ttl', Enabled: true });
  });

  it('AWS: point-in-time recovery and RETAIN; LocalStack: neither', () => {
    for (const [context, pitr, policy] of [
      [AWS, true, 'Retain'],
      [LOCAL, false, 'Delete'],
    ] as const) {
      for (const [, t] of resourcesOf(synth(context).template, 'AWS::DynamoDB::Table')) {
        assert.equal(t.Properties.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled, pitr);
        assert.equal(t.DeletionPolicy, policy);
        assert.equal(t.UpdateReplacePolicy, policy);
      }
    }
  });

  it('table names reach the functions through the documented env vars', () => {
    const { stack } = synth(AWS);
    const ref = (t: any) => stack.resolve(t.tableName);
    assert.deepEqual(stack.resolve(stack.functionEnv.SALES_TABLE), ref(stack.data.tables.sales));
    assert.deepEqual(stack.resolve(stack.functionEnv.RESERVATIONS_TABLE), ref(stack.data.tables.reservations));
    assert.deepEqual(stack.resolve(stack.functionEnv.ORDERS_TABLE), ref(stack.data.tables.orders));
    assert.deepEqual(stack.resolve(stack.functionEnv.WEBHOOK_EVENTS_TABLE), ref(stack.data.tables.webhookEvents));
  });
});

describe('SQS and alarms', () => {
  for (const [label, context] of [
    ['AWS', AWS],
    ['LocalStack', LOCAL],
  ] as const) {
    it(`${label}: every queue has a DLQ, every DLQ has a depth alarm, all are encrypted`, () => {
      const { template } = synth(context);
      const queues = resourcesOf(template, 'AWS::SQS::Queue');
      const alarms = resourcesOf(template, 'AWS::CloudWatch::Alarm');
      const hasDepthAlarm = (queueId: string) =>
        alarms.some(
          ([, a]) =>
            a.Properties.MetricName === 'ApproximateNumberOfMessagesVisible' &&
            a.Properties.Namespace === 'AWS/SQS' &&
            a.Properties.Threshold === 0 &&
            a.Properties.ComparisonOperator === 'GreaterThanThreshold' &&
            a.Properties.AlarmActions?.length === 1 &&
            JSON.stringify(a.Properties.Dimensions) ===
              JSON.stringify([{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }]),
        );
      const dlqIds = new Set<string>();
      for (const [, q] of queues) {
        const target = q.Properties.RedrivePolicy?.deadLetterTargetArn?.['Fn::GetAtt']?.[0];
        if (target) dlqIds.add(target);
      }
      assert.equal(queues.length, 5);
      for (const [id, q] of queues) {
        assert.equal(q.Properties.SqsManagedSseEnabled, true, `${id} SSE`);
        if (q.Properties.RedrivePolicy) {
          const target = q.Properties.RedrivePolicy.deadLetterTargetArn['Fn::GetAtt'][0];
          assert.ok(queues.some(([qid]) => qid === target), `${id} DLQ in stack`);
          assert.equal(q.Properties.RedrivePolicy.maxReceiveCount, 5);
        } else {
          // A queue without a redrive policy is itself a dead-letter queue (the events and
          // repair DLQs, or the saga DLQ that the state machine sends failed compensations to).
          dlqIds.add(id);
        }
      }
      assert.equal(dlqIds.size, 3);
      for (const id of dlqIds) {
        assert.ok(hasDepthAlarm(id), `depth alarm on DLQ ${id}`);
        const dlq = queues.find(([qid]) => qid === id)![1];
        assert.equal(dlq.Properties.MessageRetentionPeriod, 14 * 24 * 3600, `${id} keeps messages 14 days`);
      }
    });
  }

  it('queue URLs reach the functions as EVENTS_QUEUE_URL and SAGA_DLQ_URL', () => {
    const { stack } = synth(AWS);
    assert.deepEqual(stack.resolve(stack.functionEnv.EVENTS_QUEUE_URL), stack.resolve(stack.data.queues.events.queueUrl));
    assert.deepEqual(stack.resolve(stack.functionEnv.SAGA_DLQ_URL), stack.resolve(stack.data.queues.sagaDlq.queueUrl));
  });

  it('alarms notify the alarm topic', () => {
    const { template } = synth(AWS);
    const [topicId] = only(template, 'AWS::SNS::Topic');
    for (const [, a] of resourcesOf(template, 'AWS::CloudWatch::Alarm')) {
      assert.deepEqual(a.Properties.AlarmActions, [{ Ref: topicId }]);
    }
  });
});

describe('network', () => {
  it('LocalStack: no VPC, no ElastiCache, REDIS_URL from context', () => {
    const { template } = synth(LOCAL);
    const types = new Set(Object.values(template.toJSON().Resources).map((r: any) => r.Type as string));
    for (const t of types) {
      assert.ok(!t.startsWith('AWS::EC2::'), `unexpected ${t}`);
      assert.ok(!t.startsWith('AWS::ElastiCache::'), `unexpected ${t}`);
    }
    const [, fn] = healthFunction(LOCAL);
    assert.equal(fn.Properties.VpcConfig, undefined);
    assert.equal(fn.Properties.Environment.Variables.REDIS_URL, 'redis://127.0.0.1:7777');
  });

  it('LocalStack with awsFaultProxyUrl: every function reaches DynamoDB and Step Functions through it, nothing else', () => {
    const { template } = synth({ ...LOCAL, awsFaultProxyUrl: 'http://127.0.0.1:4567' });
    const fns = resourcesOf(template, 'AWS::Lambda::Function');
    assert.ok(fns.length >= 10);
    for (const [id, fn] of fns) {
      const vars = fn.Properties.Environment.Variables;
      assert.equal(vars.AWS_ENDPOINT_URL_DYNAMODB, 'http://127.0.0.1:4567', id);
      assert.equal(vars.AWS_ENDPOINT_URL_SFN, 'http://127.0.0.1:4567', id);
      const endpoints = Object.keys(vars).filter((k) => k.startsWith('AWS_ENDPOINT_URL'));
      assert.deepEqual(endpoints.sort(), ['AWS_ENDPOINT_URL_DYNAMODB', 'AWS_ENDPOINT_URL_SFN'], id);
    }
    const [, plain] = healthFunction(LOCAL);
    assert.equal(plain.Properties.Environment.Variables.AWS_ENDPOINT_URL_DYNAMODB, undefined);
    const [, onAws] = healthFunction({ ...AWS, awsFaultProxyUrl: 'http://127.0.0.1:4567' });
    assert.equal(onAws.Properties.Environment.Variables.AWS_ENDPOINT_URL_DYNAMODB, undefined, 'ignored on AWS');
  });

  it('LocalStack: REDIS_URL defaults to redis://127.0.0.1:6379', () => {
    const [, fn] = healthFunction({ local: 'true' });
    assert.equal(fn.Properties.Environment.Variables.REDIS_URL, 'redis://127.0.0.1:6379');
  });

  it('AWS: VPC over 2 AZs with endpoints and no NAT by default', () => {
    const { template } = synth(AWS);
    only(template, 'AWS::EC2::VPC');
    assert.equal(resourcesOf(template, 'AWS::EC2::Subnet').length, 2);
    assert.equal(resourcesOf(template, 'AWS::EC2::NatGateway').length, 0);
    assert.equal(resourcesOf(template, 'AWS::EC2::InternetGateway').length, 0);
    const services = resourcesOf(template, 'AWS::EC2::VPCEndpoint').map(([, e]) =>
      JSON.stringify(e.Properties.ServiceName),
    );
    for (const svc of ['dynamodb', 'sqs', 'states']) {
      assert.ok(services.some((s) => s.includes(`.${svc}`)), `endpoint for ${svc}: ${services}`);
    }
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Gateway' });
  });

  it('AWS: natGateways=1 gives private subnets with egress', () => {
    const { template } = synth({ natGateways: '1' });
    assert.equal(resourcesOf(template, 'AWS::EC2::NatGateway').length, 1);
  });

  it('AWS: ElastiCache replication group, cluster mode, failover, Multi-AZ, TLS', () => {
    const { template } = synth(AWS);
    const [rgId, rg] = only(template, 'AWS::ElastiCache::ReplicationGroup');
    const p = rg.Properties;
    assert.equal(p.AutomaticFailoverEnabled, true);
    assert.equal(p.MultiAZEnabled, true);
    assert.equal(p.ClusterMode, 'enabled');
    assert.equal(p.CacheParameterGroupName, 'default.redis7.cluster.on');
    assert.equal(p.NumNodeGroups, 3);
    assert.equal(p.ReplicasPerNodeGroup, 1);
    assert.equal(p.TransitEncryptionEnabled, true);
    assert.equal(p.AtRestEncryptionEnabled, true);
    assert.equal(p.Port, 6379);

    // Security group: 6379 from the Lambdas' security group only.
    const [, fn] = healthFunction(AWS);
    const lambdaSgs = fn.Properties.VpcConfig.SecurityGroupIds;
    assert.equal(lambdaSgs.length, 1);
    const lambdaSgId = lambdaSgs[0]['Fn::GetAtt'][0];
    assert.equal(p.SecurityGroupIds.length, 1);
    const redisSgId = p.SecurityGroupIds[0]['Fn::GetAtt'][0];
    const redisSg = template.toJSON().Resources[redisSgId];
    assert.equal(redisSg.Properties.SecurityGroupIngress, undefined, 'no inline ingress');
    const ingress = resourcesOf(template, 'AWS::EC2::SecurityGroupIngress').filter(
      ([, r]) => r.Properties.GroupId['Fn::GetAtt'][0] === redisSgId,
    );
    assert.equal(ingress.length, 1);
    assert.deepEqual(ingress[0][1].Properties, {
      Description: ingress[0][1].Properties.Description,
      GroupId: { 'Fn::GetAtt': [redisSgId, 'GroupId'] },
      IpProtocol: 'tcp',
      FromPort: 6379,
      ToPort: 6379,
      SourceSecurityGroupId: { 'Fn::GetAtt': [lambdaSgId, 'GroupId'] },
    });

    // Subnet group: the VPC's private subnets.
    const [, subnetGroup] = only(template, 'AWS::ElastiCache::SubnetGroup');
    assert.equal(subnetGroup.Properties.SubnetIds.length, 2);

    // Functions run in the VPC and get the TLS configuration endpoint.
    assert.equal(fn.Properties.VpcConfig.SubnetIds.length, 2);
    assert.deepEqual(fn.Properties.Environment.Variables.REDIS_URL, {
      'Fn::Join': ['', ['rediss://', { 'Fn::GetAtt': [rgId, 'ConfigurationEndPoint.Address'] }, ':6379']],
    });
  });
});

describe('IAM', () => {
  it('no wildcard action in any policy statement, no managed policies', () => {
    for (const context of [AWS, LOCAL, { natGateways: '1' }]) {
      const { template } = synth(context);
      const actions = allActions(template);
      assert.ok(actions.length > 0);
      for (const a of actions) assert.ok(!a.includes('*'), `wildcard action ${a}`);
      for (const [id, role] of resourcesOf(template, 'AWS::IAM::Role')) {
        assert.equal(role.Properties.ManagedPolicyArns, undefined, `${id} has managed policies`);
      }
      assert.equal(resourcesOf(template, 'AWS::IAM::ManagedPolicy').length, 0);
    }
  });

  it('health may only GetItem on the sales table (plus write its own logs)', () => {
    for (const context of [AWS, LOCAL]) {
      const { template, stack } = synth(context);
      const [fnId, fn] = healthFunction(context);
      const roleId = fn.Properties.Role['Fn::GetAtt'][0];
      const salesId = stack.getLogicalId(stack.data.tables.sales.node.defaultChild as never);
      const logsId = fn.Properties.LoggingConfig.LogGroup.Ref;
      const statements = statementsOfRole(template, roleId);
      assert.ok(statements.length > 0, `policies of ${fnId}`);
      for (const s of statements) {
        assert.equal(s.Effect, 'Allow');
        const actions = asArray(s.Action);
        const services = new Set(actions.map((a: string) => a.split(':')[0]));
        assert.equal(services.size, 1, `one service per statement: ${actions}`);
        const [service] = services;
        if (service === 'dynamodb') {
          assert.deepEqual(actions, ['dynamodb:GetItem']);
          assert.deepEqual(s.Resource, { 'Fn::GetAtt': [salesId, 'Arn'] });
        } else if (service === 'logs') {
          assert.deepEqual([...actions].sort(), ['logs:CreateLogStream', 'logs:PutLogEvents']);
          assert.deepEqual(s.Resource, { 'Fn::GetAtt': [logsId, 'Arn'] });
        } else if (service === 'ec2') {
          assert.ok(context === AWS, 'ENI permissions only in the VPC');
          assert.equal(s.Sid, 'VpcNetworkInterfaces');
        } else {
          assert.fail(`unexpected statement ${JSON.stringify(s)}`);
        }
      }
      assert.ok(statements.some((s) => asArray(s.Action).includes('dynamodb:GetItem')));
      // Nothing else attaches to the role (no inline Policies on the role itself).
      const role = template.toJSON().Resources[roleId];
      assert.equal(role.Properties.Policies, undefined);
    }
  });
});

describe('defaults', () => {
  it('creates exactly one state machine, the Standard checkout saga, in either mode', () => {
    for (const context of [AWS, LOCAL]) {
      const { template, stack } = synth(context);
      const [smId, sm] = only(template, 'AWS::StepFunctions::StateMachine');
      assert.equal(sm.Properties.StateMachineType, 'STANDARD');
      assert.equal(smId, stack.getLogicalId(stack.node.findChild('CheckoutSaga').node.findChild('StateMachine').node.defaultChild as never));
    }
  });

  it('creates exactly one EventBridge rule, the expiry schedule', () => {
    for (const context of [AWS, LOCAL]) {
      const [, rule] = only(synth(context).template, 'AWS::Events::Rule');
      assert.equal(rule.Properties.ScheduleExpression, 'rate(1 minute)');
    }
  });

  it('stack name follows the stage', () => {
    assert.equal(synth(AWS).stack.stackName, 'Flashsale-dev');
    assert.equal(synth({ stage: 'prod', throttleRateLimit: '100', throttleBurstLimit: '50' }).stack.stackName, 'Flashsale-prod');
  });
});
