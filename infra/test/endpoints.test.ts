// The flash-sale endpoints (reserve, get-reservation, get-sale, put-sale), the stream-driven
// event-publisher, and identity (Cognito on AWS, the JWT TOKEN authorizer on LocalStack).
// CloudFormation validation of these same templates runs in stack.test.ts (the default synth).
process.env.CDK_VALIDATION = 'false';

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { INFRA_DIR } from '../lib/config';
import { INDEXES } from '../lib/data';
import { FUNCTIONS } from '../lib/functions';
import { allActions, asArray, only, resourcesOf, statementsOfRole, synth, testKeyPair } from './helpers';

const AWS = {};
const LOCAL = { local: 'true', arch: 'x86_64' };
const MODES = [
  ['AWS', AWS],
  ['LocalStack', LOCAL],
] as const;

function fnByName(context: Record<string, string>, name: string): [string, any] {
  const { template } = synth(context);
  const found = resourcesOf(template, 'AWS::Lambda::Function').filter(
    ([, f]) => f.Properties.FunctionName === `Flashsale-dev-${name}`,
  );
  assert.equal(found.length, 1, `one ${name} function`);
  return found[0];
}

/**
 * Every (action, resource) pair the function's role is allowed, with resources named after the
 * stack's tables/queues ("sales", "reservations/stream", "reservations/index/by-sale",
 * "eventsDlq", "logs" = its own log group, "checkoutSaga" = the saga's state machine,
 * "checkoutSaga/executions" = its executions, "*"). The VPC ENI statement is left out (checked
 * separately).
 */
function grants(context: Record<string, string>, name: string): string[] {
  const { template, stack } = synth(context);
  const [, fn] = fnByName(context, name);
  const names = new Map<string, string>();
  const key = (v: unknown) => JSON.stringify(stack.resolve(v));
  for (const [k, t] of Object.entries(stack.data.tables)) {
    names.set(key(t.tableArn), k);
    if (t.tableStreamArn) names.set(key(t.tableStreamArn), `${k}/stream`);
    for (const index of INDEXES[k as keyof typeof INDEXES]) names.set(key(`${t.tableArn}/index/${index}`), `${k}/index/${index}`);
  }
  const [smId] = only(template, 'AWS::StepFunctions::StateMachine');
  names.set(JSON.stringify({ Ref: smId }), 'checkoutSaga');
  // Written out, not derived: the ARN of the saga's executions, arn:...:execution:<name>:*.
  names.set(
    JSON.stringify({
      'Fn::Join': [
        '',
        [
          'arn:',
          { Ref: 'AWS::Partition' },
          ':states:',
          { Ref: 'AWS::Region' },
          ':',
          { Ref: 'AWS::AccountId' },
          ':execution:',
          { 'Fn::GetAtt': [smId, 'Name'] },
          ':*',
        ],
      ],
    }),
    'checkoutSaga/executions',
  );
  for (const [k, q] of Object.entries(stack.data.queues)) names.set(key(q.queueArn), k);
  names.set(JSON.stringify({ 'Fn::GetAtt': [fn.Properties.LoggingConfig.LogGroup.Ref, 'Arn'] }), 'logs');
  names.set('"*"', '*');
  const out: string[] = [];
  for (const s of statementsOfRole(template, fn.Properties.Role['Fn::GetAtt'][0])) {
    assert.equal(s.Effect, 'Allow');
    assert.equal(s.Condition, undefined);
    if (s.Sid === 'VpcNetworkInterfaces') continue;
    for (const a of asArray(s.Action)) {
      for (const r of asArray(s.Resource)) {
        // The mail sender's SES identities (its address and its domain), by shape.
        const text = JSON.stringify(r);
        const label = names.get(text) ?? (text.includes(':ses:') && text.includes(':identity/') ? 'sesIdentity' : undefined);
        assert.ok(label, `unknown resource ${JSON.stringify(r)} in ${name}'s policy`);
        out.push(`${a} ${label}`);
      }
    }
  }
  return out.sort();
}

const LOGS = ['logs:CreateLogStream logs', 'logs:PutLogEvents logs'];

/** `METHOD /full/path` -> method resource, from the AWS::ApiGateway::Resource tree. */
function methods(context: Record<string, string>): Map<string, any> {
  const { template } = synth(context);
  const resources = Object.fromEntries(resourcesOf(template, 'AWS::ApiGateway::Resource'));
  const pathOf = (ref: any): string => {
    if (ref['Fn::GetAtt']) return ''; // the RestApi's RootResourceId
    const r = resources[ref.Ref];
    return `${pathOf(r.Properties.ParentId)}/${r.Properties.PathPart}`;
  };
  return new Map(
    resourcesOf(template, 'AWS::ApiGateway::Method').map(([, m]) => [
      `${m.Properties.HttpMethod} ${pathOf(m.Properties.ResourceId)}`,
      m,
    ]),
  );
}

describe('function specs of the endpoints', () => {
  const expected: Record<string, { env: string[]; grants: string[] }> = {
    reserve: {
      env: [
        'BOT_BLOCK_ADDRESSES',
        'BOT_CHALLENGE_AT',
        'BOT_CHALLENGE_KEY_SECRET',
        'BOT_CHALLENGE_PROVIDER',
        'BOT_CHALLENGE_SIGNATURE_SECRET',
        'BOT_DEFENCE',
        'RATE_IP_CAPACITY',
        'RATE_IP_REFILL_PER_SEC',
        'RATE_USER_CAPACITY',
        'RATE_USER_REFILL_PER_SEC',
        'REDIS_MODE',
        'REDIS_URL',
        'REPAIR_QUEUE_URL',
        'RESERVATIONS_TABLE',
        'SALES_TABLE',
        'SOLD_OUT_CACHE_MS',
        'WAITING_ROOM_KEY',
      ],
      grants: [
        'dynamodb:GetItem reservations',
        'dynamodb:GetItem sales',
        'dynamodb:PutItem reservations',
        // A fenced shard (Redis failover) asks for a rebuild at once.
        'sqs:SendMessage repair',
      ],
    },
    'get-reservation': {
      env: ['RESERVATIONS_TABLE'],
      grants: ['dynamodb:GetItem reservations'],
    },
    'get-sale': {
      env: ['REDIS_MODE', 'REDIS_URL', 'SALES_TABLE'],
      grants: ['dynamodb:GetItem sales'],
    },
    'put-sale': {
      env: ['REDIS_MODE', 'REDIS_URL', 'SALES_TABLE'],
      grants: ['dynamodb:GetItem sales', 'dynamodb:PutItem sales'],
    },
    'event-publisher': {
      env: ['EVENTS_QUEUE_URL'],
      grants: [
        // What the stream event source mapping needs (granted by DynamoEventSource: exact
        // actions; ListStreams has no resource-level permissions, hence "*").
        'dynamodb:DescribeStream reservations/stream',
        'dynamodb:GetRecords reservations/stream',
        'dynamodb:GetShardIterator reservations/stream',
        'dynamodb:ListStreams *',
        // Its own messages (SendMessageBatch is authorised by SendMessage).
        'sqs:SendMessage events',
        // The mapping's on-failure destination (SqsDlq).
        'sqs:GetQueueAttributes eventsDlq',
        'sqs:GetQueueUrl eventsDlq',
        'sqs:SendMessage eventsDlq',
      ],
    },
    pay: {
      // ORDERS_TABLE names the checkout records' order table; pay itself never touches it.
      env: ['ORDERS_TABLE', 'RESERVATIONS_TABLE', 'SAGA_STATE_MACHINE_ARN'],
      grants: [
        'dynamodb:GetItem reservations',
        'dynamodb:UpdateItem reservations',
        'states:DescribeExecution checkoutSaga/executions',
        'states:StartExecution checkoutSaga',
      ],
    },
    'payment-webhook': {
      env: [
        'ORDERS_TABLE',
        'RESERVATIONS_TABLE',
        'SAGA_STATE_MACHINE_ARN',
        'STRIPE_API_BASE',
        'STRIPE_SECRET_KEY',
        'STRIPE_WEBHOOK_SECRETS',
        'WEBHOOK_EVENTS_TABLE',
      ],
      grants: [
        'dynamodb:GetItem reservations',
        'dynamodb:GetItem webhookEvents',
        'dynamodb:PutItem webhookEvents',
        'dynamodb:UpdateItem webhookEvents',
        'states:SendTaskFailure checkoutSaga',
        'states:SendTaskHeartbeat checkoutSaga',
        'states:SendTaskSuccess checkoutSaga',
      ],
    },
    'saga-steps': {
      env: [
        'BREAKER_COOLDOWN_MS',
        'BREAKER_FAILURE_THRESHOLD',
        'ORDERS_TABLE',
        'REDIS_MODE',
        'REDIS_URL',
        'REPAIR_QUEUE_URL',
        'RESERVATIONS_TABLE',
        'SALES_TABLE',
        'STRIPE_API_BASE',
        'STRIPE_SECRET_KEY',
      ],
      grants: [
        'dynamodb:GetItem reservations',
        'dynamodb:GetItem sales',
        'dynamodb:PutItem orders',
        'dynamodb:UpdateItem reservations',
        // A payment that finds its sale lost or fenced asks for the rebuild it waits for.
        'sqs:SendMessage repair',
      ],
    },
    'expiry-cleanup': {
      env: [
        'EXPIRY_BUDGET_MS',
        'EXPIRY_CONCURRENCY',
        'EXPIRY_PAGE_SIZE',
        'HOLD_GRACE_MS',
        'ORDERS_TABLE',
        'REDIS_MODE',
        'REDIS_URL',
        'RESERVATIONS_TABLE',
        'SAGA_STATE_MACHINE_ARN',
        'SALES_TABLE',
      ],
      grants: [
        'dynamodb:BatchGetItem reservations',
        'dynamodb:GetItem reservations',
        'dynamodb:GetItem sales',
        'dynamodb:PartiQLUpdate reservations',
        'dynamodb:PutItem reservations',
        'dynamodb:Query orders/index/by-sale',
        'dynamodb:Query reservations/index/by-sale-bucketed',
        'dynamodb:Query reservations/index/pending-by-expiry',
        'dynamodb:Scan sales',
        'dynamodb:UpdateItem reservations',
        // The repair queue's event source mapping (granted by SqsEventSource).
        'sqs:ChangeMessageVisibility repair',
        'sqs:DeleteMessage repair',
        'sqs:GetQueueAttributes repair',
        'sqs:GetQueueUrl repair',
        'sqs:ReceiveMessage repair',
        // Payments with no running saga get one.
        'states:DescribeExecution checkoutSaga/executions',
        'states:StartExecution checkoutSaga',
      ],
    },
    'waiting-room': {
      env: [
        'BOT_BLOCK_ADDRESSES',
        'BOT_CHALLENGE_AT',
        'BOT_CHALLENGE_KEY_SECRET',
        'BOT_CHALLENGE_PROVIDER',
        'BOT_CHALLENGE_SIGNATURE_SECRET',
        'BOT_DEFENCE',
        'REDIS_MODE',
        'REDIS_URL',
        'SALES_TABLE',
        'WAITING_ROOM_KEY',
      ],
      grants: ['dynamodb:GetItem sales'],
    },
    notifier: {
      env: ['DEVICES_TABLE', 'MAIL_SENDER', 'NOTIFICATIONS_TABLE'],
      grants: [
        'dynamodb:GetItem notifications',
        'dynamodb:PutItem notifications',
        'dynamodb:Query devices',
        'dynamodb:UpdateItem notifications',
        // The events queue's event source mapping (granted by SqsEventSource).
        'sqs:ChangeMessageVisibility events',
        'sqs:DeleteMessage events',
        'sqs:GetQueueAttributes events',
        'sqs:GetQueueUrl events',
        'sqs:ReceiveMessage events',
        'ses:SendEmail sesIdentity',
        'ses:SendEmail sesIdentity',
      ],
    },
    devices: {
      env: ['DEVICES_TABLE'],
      grants: ['dynamodb:PutItem devices'],
    },
    'bot-blocks': {
      env: ['REDIS_MODE', 'REDIS_URL'],
      grants: [],
    },
    'rebuild-stock': {
      env: ['ORDERS_TABLE', 'REDIS_MODE', 'REDIS_URL', 'RESERVATIONS_TABLE', 'SALES_TABLE'],
      grants: [
        'dynamodb:BatchGetItem reservations',
        'dynamodb:GetItem sales',
        'dynamodb:Query orders/index/by-sale',
        'dynamodb:Query reservations/index/by-sale-bucketed',
      ],
    },
  };

  for (const [label, context] of MODES) {
    for (const [name, want] of Object.entries(expected)) {
      it(`${label}: ${name} gets exactly its env vars and grants`, () => {
        const [, fn] = fnByName(context, name);
        assert.deepEqual(Object.keys(fn.Properties.Environment.Variables).sort(), [...want.env, 'RUST_LOG'].sort());
        assert.deepEqual(grants(context, name), [...want.grants, ...LOGS].sort());
        // Same network design for every function: in the VPC on AWS, none locally.
        if (context === AWS) assert.equal(fn.Properties.VpcConfig.SubnetIds.length, 2);
        else assert.equal(fn.Properties.VpcConfig, undefined);
      });
    }
  }

  it('every function of FUNCTIONS has an expectation here (or is health/authorizer)', () => {
    const covered = new Set([...Object.keys(expected), 'health', 'authorizer']);
    for (const f of FUNCTIONS) assert.ok(covered.has(f.name), `untested function ${f.name}`);
  });

  it('reserve: rate limits and sold-out cache from context, with defaults', () => {
    const vars = (context: Record<string, string>) => fnByName(context, 'reserve')[1].Properties.Environment.Variables;
    const d = vars(AWS);
    assert.equal(d.RATE_USER_CAPACITY, '5');
    assert.equal(d.RATE_USER_REFILL_PER_SEC, '1');
    assert.equal(d.RATE_IP_CAPACITY, '50');
    assert.equal(d.RATE_IP_REFILL_PER_SEC, '10');
    assert.equal(d.SOLD_OUT_CACHE_MS, '500');
    assert.equal(d.REDIS_MODE, 'cluster');
    const l = vars({ ...LOCAL, rateIpCapacity: '100000', rateIpRefillPerSec: '10000', rateUserRefillPerSec: '0.5', soldOutCacheMs: '250' });
    assert.equal(l.RATE_IP_CAPACITY, '100000');
    assert.equal(l.RATE_IP_REFILL_PER_SEC, '10000');
    assert.equal(l.RATE_USER_REFILL_PER_SEC, '0.5');
    assert.equal(l.SOLD_OUT_CACHE_MS, '250');
    assert.equal(l.REDIS_MODE, 'standalone');
  });

  it('no wildcard action anywhere, in either mode', () => {
    for (const [, context] of MODES) {
      for (const a of allActions(synth(context).template)) assert.ok(!a.includes('*'), `wildcard action ${a}`);
    }
  });
});

describe('routes and authorization', () => {
  const ROUTES: [string, string, boolean][] = [
    ['GET /health', 'health', false],
    ['GET /health/live', 'health', false],
    ['GET /sales/{saleId}', 'get-sale', false],
    ['PUT /sales/{saleId}', 'put-sale', true],
    ['POST /sales/{saleId}/reservations', 'reserve', true],
    ['POST /sales/{saleId}/queue', 'waiting-room', true],
    ['POST /me/devices', 'devices', true],
    ['GET /sales/{saleId}/queue', 'waiting-room', false],
    ['GET /reservations/{reservationId}', 'get-reservation', true],
    ['POST /reservations/{reservationId}/payment', 'pay', true],
    // The caller is the payment provider, authenticated by the Stripe-Signature header.
    ['POST /webhooks/payments', 'payment-webhook', false],
    ['POST /sales/{saleId}/stock/rebuild', 'rebuild-stock', true],
    ['GET /admin/bot/blocks', 'bot-blocks', true],
    ['DELETE /admin/bot/blocks', 'bot-blocks', true],
  ];

  for (const [label, context, authType] of [
    ['AWS', AWS, 'COGNITO_USER_POOLS'],
    ['LocalStack', LOCAL, 'CUSTOM'],
  ] as const) {
    it(`${label}: exactly these routes; authorized ones use the ${authType} authorizer, the rest are public`, () => {
      const { template } = synth(context);
      const all = methods(context);
      assert.deepEqual([...all.keys()].sort(), ROUTES.map(([r]) => r).sort());
      const [authorizerId, authorizer] = only(template, 'AWS::ApiGateway::Authorizer');
      assert.equal(authorizer.Properties.Type, context === AWS ? 'COGNITO_USER_POOLS' : 'TOKEN');
      for (const [route, fnName, authorized] of ROUTES) {
        const m = all.get(route).Properties;
        const [fnId] = fnByName(context, fnName);
        assert.equal(m.Integration.Type, 'AWS_PROXY', route);
        assert.ok(JSON.stringify(m.Integration.Uri).includes(JSON.stringify({ 'Fn::GetAtt': [fnId, 'Arn'] })), route);
        if (authorized) {
          assert.equal(m.AuthorizationType, authType, route);
          assert.deepEqual(m.AuthorizerId, { Ref: authorizerId }, route);
        } else {
          assert.equal(m.AuthorizationType, 'NONE', route);
          assert.equal(m.AuthorizerId, undefined, route);
        }
      }
    });
  }

  it('the function specs mark exactly the non-public routes as authorized', () => {
    const marked = FUNCTIONS.flatMap((f) => (f.routes ?? []).map((r) => `${r.method} ${r.path} ${r.authorized === true}`));
    assert.deepEqual(marked.sort(), ROUTES.map(([r, , a]) => `${r} ${a}`).sort());
  });
});

describe('identity: LocalStack JWT authorizer', () => {
  it('the authorizer function exists only locally, gets the PEM, issuer and audience, and no data access', () => {
    assert.equal(
      resourcesOf(synth(AWS).template, 'AWS::Lambda::Function').filter(([, f]) =>
        f.Properties.FunctionName.endsWith('-authorizer'),
      ).length,
      0,
    );
    const [, fn] = fnByName(LOCAL, 'authorizer');
    const vars = fn.Properties.Environment.Variables;
    assert.deepEqual(Object.keys(vars).sort(), ['JWT_AUDIENCE', 'JWT_ISSUER', 'JWT_PUBLIC_KEY', 'RUST_LOG']);
    assert.equal(vars.JWT_PUBLIC_KEY, testKeyPair().publicPem);
    assert.match(vars.JWT_PUBLIC_KEY, /^-----BEGIN PUBLIC KEY-----\n/);
    assert.equal(vars.JWT_ISSUER, 'flashsale-local');
    assert.equal(vars.JWT_AUDIENCE, 'flashsale-api');
    assert.deepEqual(grants(LOCAL, 'authorizer'), LOGS);
    // No JWT settings reach any other function, and none exist on AWS.
    for (const [, context] of MODES) {
      for (const [, f] of resourcesOf(synth(context).template, 'AWS::Lambda::Function')) {
        if (f.Properties.FunctionName === 'Flashsale-dev-authorizer') continue;
        assert.ok(!Object.keys(f.Properties.Environment.Variables).some((k) => k.startsWith('JWT_')), f.Properties.FunctionName);
      }
    }
  });

  it('issuer and audience come from context', () => {
    const [, fn] = fnByName({ ...LOCAL, jwtIssuer: 'https://issuer.test', jwtAudience: 'shop' }, 'authorizer');
    assert.equal(fn.Properties.Environment.Variables.JWT_ISSUER, 'https://issuer.test');
    assert.equal(fn.Properties.Environment.Variables.JWT_AUDIENCE, 'shop');
  });

  it('TOKEN authorizer on the Authorization header, results cached 300 s per token, invoked by API Gateway only', () => {
    const { template } = synth(LOCAL);
    const [fnId] = fnByName(LOCAL, 'authorizer');
    const [authorizerId, a] = only(template, 'AWS::ApiGateway::Authorizer');
    assert.equal(a.Properties.Type, 'TOKEN');
    assert.equal(a.Properties.IdentitySource, 'method.request.header.Authorization');
    assert.equal(a.Properties.AuthorizerResultTtlInSeconds, 300);
    const [, uncached] = only(synth({ ...LOCAL, authorizerCacheSeconds: '0' }).template, 'AWS::ApiGateway::Authorizer');
    assert.equal(uncached.Properties.AuthorizerResultTtlInSeconds, 0);
    assert.ok(JSON.stringify(a.Properties.AuthorizerUri).includes(JSON.stringify({ 'Fn::GetAtt': [fnId, 'Arn'] })));
    const perms = resourcesOf(template, 'AWS::Lambda::Permission').filter(([, p]) =>
      JSON.stringify(p.Properties.FunctionName).includes(fnId),
    );
    assert.equal(perms.length, 1);
    assert.equal(perms[0][1].Properties.Principal, 'apigateway.amazonaws.com');
    assert.equal(perms[0][1].Properties.Action, 'lambda:InvokeFunction');
    assert.ok(JSON.stringify(perms[0][1].Properties.SourceArn).includes(JSON.stringify({ Ref: authorizerId })));
  });

  it('LocalStack: no Cognito, and the issuer/audience are outputs', () => {
    const { template } = synth(LOCAL);
    const types = Object.values<any>(template.toJSON().Resources).map((r) => r.Type as string);
    assert.ok(!types.some((t) => t.startsWith('AWS::Cognito::')), 'no Cognito locally');
    const outputs = template.toJSON().Outputs;
    assert.equal(outputs.UserPoolId, undefined);
    assert.equal(outputs.UserPoolClientId, undefined);
    assert.equal(outputs.JwtIssuer.Value, 'flashsale-local');
    assert.equal(outputs.JwtAudience.Value, 'flashsale-api');
  });
});

describe('identity: Cognito on AWS', () => {
  it('user pool: no self sign-up, e-mail sign-in, retained', () => {
    const { template } = synth(AWS);
    const [, pool] = only(template, 'AWS::Cognito::UserPool');
    assert.equal(pool.Properties.AdminCreateUserConfig.AllowAdminCreateUserOnly, true);
    assert.deepEqual(pool.Properties.UsernameAttributes, ['email']);
    assert.equal(pool.DeletionPolicy, 'Retain');
  });

  it('an admin group and an SRP client without secret', () => {
    const { template } = synth(AWS);
    const [poolId] = only(template, 'AWS::Cognito::UserPool');
    const [, group] = only(template, 'AWS::Cognito::UserPoolGroup');
    assert.equal(group.Properties.GroupName, 'admin');
    assert.deepEqual(group.Properties.UserPoolId, { Ref: poolId });
    const [, client] = only(template, 'AWS::Cognito::UserPoolClient');
    assert.deepEqual(client.Properties.UserPoolId, { Ref: poolId });
    assert.equal(client.Properties.GenerateSecret, false);
    assert.ok(client.Properties.ExplicitAuthFlows.includes('ALLOW_USER_SRP_AUTH'));
    assert.ok(!client.Properties.ExplicitAuthFlows.includes('ALLOW_USER_PASSWORD_AUTH'));
    assert.equal(client.Properties.AllowedOAuthFlowsUserPoolClient, false, 'no OAuth / hosted UI flows');
  });

  it('the account creation time: an immutable custom attribute the client reads (into the ID token) but cannot write', () => {
    const { template } = synth(AWS);
    const [, pool] = only(template, 'AWS::Cognito::UserPool');
    const createdAt = pool.Properties.Schema.find((a: { Name: string }) => a.Name === 'created_at');
    assert.deepEqual(
      { type: createdAt.AttributeDataType, mutable: createdAt.Mutable },
      { type: 'Number', mutable: false },
    );
    const [, client] = only(template, 'AWS::Cognito::UserPoolClient');
    assert.ok(client.Properties.ReadAttributes.includes('custom:created_at'));
    assert.ok(!client.Properties.WriteAttributes.includes('custom:created_at'));
  });

  it('a Cognito user-pool authorizer on the pool, reading the Authorization header', () => {
    const { template } = synth(AWS);
    const [poolId] = only(template, 'AWS::Cognito::UserPool');
    const [, a] = only(template, 'AWS::ApiGateway::Authorizer');
    assert.equal(a.Properties.Type, 'COGNITO_USER_POOLS');
    assert.equal(a.Properties.IdentitySource, 'method.request.header.Authorization');
    assert.deepEqual(a.Properties.ProviderARNs, [{ 'Fn::GetAtt': [poolId, 'Arn'] }]);
    assert.equal(a.Properties.AuthorizerResultTtlInSeconds, 300, 'results cached per token for 5 min');
  });

  it('outputs UserPoolId and UserPoolClientId', () => {
    const { template } = synth(AWS);
    const [poolId] = only(template, 'AWS::Cognito::UserPool');
    const [clientId] = only(template, 'AWS::Cognito::UserPoolClient');
    template.hasOutput('UserPoolId', { Value: { Ref: poolId } });
    template.hasOutput('UserPoolClientId', { Value: { Ref: clientId } });
    assert.equal(template.toJSON().Outputs.JwtIssuer, undefined);
  });
});

describe('reservations stream -> event-publisher', () => {
  for (const [label, context] of MODES) {
    it(`${label}: the stream is on (NEW_AND_OLD_IMAGES) and the mapping is bounded, bisecting, with an on-failure DLQ`, () => {
      const { template, stack } = synth(context);
      const reservationsId = stack.getLogicalId(stack.data.tables.reservations.node.defaultChild as never);
      const eventsDlqId = stack.getLogicalId(stack.data.queues.eventsDlq.node.defaultChild as never);
      const tables = template.toJSON().Resources;
      assert.deepEqual(tables[reservationsId].Properties.StreamSpecification, { StreamViewType: 'NEW_AND_OLD_IMAGES' });
      // Only the reservations table has a stream.
      for (const [id, t] of resourcesOf(template, 'AWS::DynamoDB::Table')) {
        if (id !== reservationsId) assert.equal(t.Properties.StreamSpecification, undefined, id);
      }
      const [fnId] = fnByName(context, 'event-publisher');
      const streams = resourcesOf(template, 'AWS::Lambda::EventSourceMapping').filter(
        ([, m]) => JSON.stringify(m.Properties.EventSourceArn).includes('StreamArn'),
      );
      assert.equal(streams.length, 1, 'one stream mapping');
      const [, esm] = streams[0];
      assert.deepEqual(esm.Properties, {
        FunctionName: { Ref: fnId },
        EventSourceArn: { 'Fn::GetAtt': [reservationsId, 'StreamArn'] },
        StartingPosition: 'TRIM_HORIZON',
        BatchSize: 100,
        BisectBatchOnFunctionError: true,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        MaximumRetryAttempts: 10,
        MaximumRecordAgeInSeconds: 86400,
        DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [eventsDlqId, 'Arn'] } } },
      });
    });
  }
});

describe('repair queue -> expiry-cleanup', () => {
  for (const [label, context] of MODES) {
    it(`${label}: one request per invocation, failures reported per item, a DLQ with an alarm`, () => {
      const { template, stack } = synth(context);
      const repairId = stack.getLogicalId(stack.data.queues.repair.node.defaultChild as never);
      const repairDlqId = stack.getLogicalId(stack.data.queues.repairDlq.node.defaultChild as never);
      const [fnId] = fnByName(context, 'expiry-cleanup');
      const mappings = resourcesOf(template, 'AWS::Lambda::EventSourceMapping').filter(
        ([, m]) => JSON.stringify(m.Properties.EventSourceArn).includes(repairId),
      );
      assert.equal(mappings.length, 1);
      assert.deepEqual(mappings[0][1].Properties, {
        FunctionName: { Ref: fnId },
        EventSourceArn: { 'Fn::GetAtt': [repairId, 'Arn'] },
        BatchSize: 1,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
      });
      const queue = template.toJSON().Resources[repairId];
      assert.deepEqual(queue.Properties.RedrivePolicy, {
        deadLetterTargetArn: { 'Fn::GetAtt': [repairDlqId, 'Arn'] },
        maxReceiveCount: 5,
      });
      // 6x the consumer's 60 s timeout, as AWS recommends for SQS event sources.
      assert.equal(queue.Properties.VisibilityTimeout, 360);
      const alarms = resourcesOf(template, 'AWS::CloudWatch::Alarm').filter(([, a]) =>
        JSON.stringify(a.Properties.Dimensions ?? []).includes(repairDlqId),
      );
      assert.equal(alarms.length, 1, 'the repair DLQ has a depth alarm');
    });
  }
});

describe('capacity: the crowd at reserve cannot starve the payment path', () => {
  for (const [label, context] of MODES) {
    it(`${label}: reserve is throttled below the stage, the payment routes have their own limits`, () => {
      const { template } = synth(context);
      const [, stage] = only(template, 'AWS::ApiGateway::Stage');
      const settings = stage.Properties.MethodSettings as Array<Record<string, unknown>>;
      const byPath = new Map(settings.map((m) => [`${m.HttpMethod} ${m.ResourcePath}`, m]));
      const reserve = byPath.get('POST /~1sales~1{saleId}~1reservations');
      assert.ok(reserve, JSON.stringify([...byPath.keys()]));
      assert.equal(reserve.ThrottlingRateLimit, 4000);
      assert.equal(reserve.ThrottlingBurstLimit, 1500);
      const stageWide = byPath.get('* /*');
      assert.ok((reserve.ThrottlingRateLimit as number) < (stageWide!.ThrottlingRateLimit as number));
      for (const route of ['POST /~1webhooks~1payments', 'POST /~1reservations~1{reservationId}~1payment']) {
        const m = byPath.get(route);
        assert.ok(m, route);
        assert.equal(m.ThrottlingRateLimit, 500, route);
        assert.equal(m.ThrottlingBurstLimit, 200, route);
      }
    });

    it(`${label}: reserved concurrency caps reserve and keeps executions for pay, the webhook and the saga steps`, () => {
      const reserved = (name: string) => fnByName(context, name)[1].Properties.ReservedConcurrentExecutions;
      assert.equal(reserved('reserve'), 400);
      for (const name of ['pay', 'payment-webhook', 'saga-steps']) assert.equal(reserved(name), 50, name);
      for (const name of ['get-sale', 'health', 'expiry-cleanup']) assert.equal(reserved(name), undefined, name);
    });
  }

  it('reserve may not take the whole stage: a reserve limit at or above the stage limit is refused', () => {
    assert.throws(
      () => synth({ ...AWS, throttleRateLimit: '1000', reserveRateLimit: '1000' }),
      /reserveRateLimit.*must stay below/,
    );
  });
});

describe('alarms on faults the functions count (EMF)', () => {
  it('oversold units, rebuild oversells and anomalies page the alarm topic', () => {
    const { template } = synth(AWS);
    const alarms = resourcesOf(template, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    // The notifier's lag alarm is a measurement, tested with the backlog alarms.
    const emf = alarms.filter((a) => a.Namespace === 'Flashsale' && a.MetricName !== 'LagMs');
    const seen = emf.map((a) => `${a.MetricName} ${a.Dimensions[0].Value}`).sort();
    assert.deepEqual(seen, [
      'Anomalies expiry-cleanup',
      'GaveUp notifier',
      'RebuildOversoldUnits expiry-cleanup',
      'UnitsOversold expiry-cleanup',
      'UnitsOversold saga-steps',
    ]);
    for (const a of emf) {
      assert.equal(a.Threshold, 0);
      assert.equal(a.ComparisonOperator, 'GreaterThanThreshold');
      assert.equal(a.Statistic, 'Sum');
      assert.equal(a.AlarmActions.length, 1);
    }
  });
});

describe('deploy-local.sh', () => {
  const script = fs.readFileSync(path.join(INFRA_DIR, 'deploy-local.sh'), 'utf8');

  it('is valid bash', () => {
    execFileSync('bash', ['-n', path.join(INFRA_DIR, 'deploy-local.sh')]);
  });

  it('passes the JWT public key, big per-IP rate limits (every local client is 127.0.0.1) and short charge waits', () => {
    assert.match(script, /-c "jwtPublicKeyFile=\$jwt_public_key"/);
    assert.match(script, /jwt_public_key="\$repo\/\.local\/jwt\/public\.pem"/);
    assert.match(script, /-c rateIpCapacity=100000 -c rateIpRefillPerSec=10000/);
    assert.match(script, /openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048/);
    assert.match(script, /openssl pkey -in .*private\.pem.* -pubout -out .*public\.pem/);
    // The saga and the expiry schedule need LocalStack's Step Functions and EventBridge; the
    // local charge waits are short so timeout tests finish in seconds.
    assert.match(script, /^needed="[^"]*\bstepfunctions\b[^"]*"$/m);
    assert.match(script, /^needed="[^"]*\bevents\b[^"]*"$/m);
    assert.match(script, /-c chargeTimeoutSeconds="\$\{CHARGE_TIMEOUT_SECONDS:-50\}" -c chargeHeartbeatSeconds="\$\{CHARGE_HEARTBEAT_SECONDS:-25\}"/);
    // The post-deploy stage re-deployment stays.
    assert.match(script, /create_deployment\(restApiId=api_id, stageName=stage/);
  });
});

describe('LocalStack: authorizer attached through the API (authorizerViaApi)', () => {
  it('creates no authorizer resource, leaves the authorized routes to deploy-local.sh and outputs them', () => {
    const context = { ...LOCAL, authorizerViaApi: 'true' };
    const { template } = synth(context);
    assert.equal(resourcesOf(template, 'AWS::ApiGateway::Authorizer').length, 0);
    const outputs = template.toJSON().Outputs;
    assert.deepEqual(
      JSON.parse(outputs.AuthorizedRoutes.Value).sort(),
      [
        'DELETE /admin/bot/blocks',
        'GET /admin/bot/blocks',
        'GET /reservations/{reservationId}',
        'POST /me/devices',
        'POST /reservations/{reservationId}/payment',
        'POST /sales/{saleId}/queue',
        'POST /sales/{saleId}/reservations',
        'POST /sales/{saleId}/stock/rebuild',
        'PUT /sales/{saleId}',
      ],
    );
    const [fnId] = fnByName(context, 'authorizer');
    assert.deepEqual(outputs.AuthorizerFunctionArn.Value, { 'Fn::GetAtt': [fnId, 'Arn'] });
    for (const [, m] of resourcesOf(template, 'AWS::ApiGateway::Method')) {
      assert.equal(m.Properties.AuthorizationType, 'NONE');
    }
  });

  it('is ignored on AWS, where Cognito authorizes in the template', () => {
    const { template } = synth({ ...AWS, authorizerViaApi: 'true' });
    assert.equal(only(template, 'AWS::ApiGateway::Authorizer')[1].Properties.Type, 'COGNITO_USER_POOLS');
    assert.equal(template.toJSON().Outputs.AuthorizedRoutes, undefined);
  });
});
