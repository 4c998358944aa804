// The extension points later issues use: one FunctionSpec entry per function, and
// addStateMachine() for an ASL file with definitionSubstitutions.
// The built-in CloudFormation validation (a WASM module, ~4 s to load per process) already runs
// in stack.test.ts and cli.test.ts; these tests are about construct wiring.
process.env.CDK_VALIDATION = 'false';

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { FUNCTIONS, type FunctionSpec } from '../lib/functions';
import {
  allActions,
  asArray,
  buildStack,
  elfHeader,
  errorsOf,
  fakeLambdaDir,
  makeStack,
  resourcesOf,
  statementsOfRole,
  tempDir,
} from './helpers';

const SWEEPER: FunctionSpec = {
  name: 'expire-reservations',
  description: 'test spec',
  env: ['REDIS_URL', 'RESERVATIONS_TABLE', 'EVENTS_QUEUE_URL'],
  tables: [
    { table: 'reservations', index: 'pending-by-expiry', actions: ['dynamodb:Query'] },
    { table: 'reservations', actions: ['dynamodb:UpdateItem'] },
  ],
  queues: [{ queue: 'events', actions: ['sqs:SendMessage'] }],
  memoryMb: 512,
};
const RESERVE: FunctionSpec = {
  name: 'reserve',
  description: 'test spec',
  env: ['REDIS_URL', 'RESERVATIONS_TABLE'],
  tables: [{ table: 'reservations', actions: ['dynamodb:PutItem'] }],
  routes: [{ method: 'POST', path: '/sales/{sale_id}/reservations' }],
};

function fnByName(template: any, name: string) {
  const found = resourcesOf(template, 'AWS::Lambda::Function').find(([, f]) => f.Properties.FunctionName === name);
  assert.ok(found, name);
  return found;
}

describe('function specs', () => {
  it('one entry adds a function with exactly its env, grants, route and log group', () => {
    const lambdaDir = fakeLambdaDir(['health', 'expire-reservations', 'reserve']);
    for (const local of ['true', 'false']) {
      const { template, stack } = buildStack(
        { lambdaDir, local },
        { functions: [...FUNCTIONS, SWEEPER, RESERVE] },
      );
      assert.equal(resourcesOf(template, 'AWS::Lambda::Function').length, 3);
      assert.equal(resourcesOf(template, 'AWS::Logs::LogGroup').length, 3);

      const [, fn] = fnByName(template, 'Flashsale-dev-expire-reservations');
      assert.deepEqual(Object.keys(fn.Properties.Environment.Variables).sort(), [
        'EVENTS_QUEUE_URL',
        'REDIS_URL',
        'RESERVATIONS_TABLE',
        'RUST_LOG',
      ]);
      assert.equal(fn.Properties.MemorySize, 512);

      const reservationsId = stack.getLogicalId(stack.data.tables.reservations.node.defaultChild as never);
      const eventsId = stack.getLogicalId(stack.data.queues.events.node.defaultChild as never);
      const data = statementsOfRole(template, fn.Properties.Role['Fn::GetAtt'][0]).filter((s) =>
        /^(dynamodb|sqs):/.test(asArray(s.Action)[0]),
      );
      const summary = data
        .map((s) => `${asArray(s.Action).join(',')} ${JSON.stringify(s.Resource)}`)
        .sort();
      assert.deepEqual(summary, [
        `dynamodb:Query ${JSON.stringify({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [reservationsId, 'Arn'] }, '/index/pending-by-expiry']] })}`,
        `dynamodb:UpdateItem ${JSON.stringify({ 'Fn::GetAtt': [reservationsId, 'Arn'] })}`,
        `sqs:SendMessage ${JSON.stringify({ 'Fn::GetAtt': [eventsId, 'Arn'] })}`,
      ]);

      // The route of `reserve` is wired with a proxy integration.
      const [reserveId] = fnByName(template, 'Flashsale-dev-reserve');
      const post = resourcesOf(template, 'AWS::ApiGateway::Method').filter(([, m]) => m.Properties.HttpMethod === 'POST');
      assert.equal(post.length, 1);
      assert.equal(post[0][1].Properties.Integration.Type, 'AWS_PROXY');
      assert.ok(JSON.stringify(post[0][1].Properties.Integration.Uri).includes(reserveId));
      template.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: '{sale_id}' });

      for (const a of allActions(template)) assert.ok(!a.includes('*'), a);
    }
  });

  it('rejects an unknown index, a non-kebab name and a missing build output', () => {
    const lambdaDir = fakeLambdaDir(['health', 'expire-reservations']);
    assert.throws(
      () =>
        buildStack(
          { lambdaDir },
          { functions: [{ ...SWEEPER, tables: [{ table: 'orders', index: 'pending-by-expiry', actions: ['dynamodb:Query'] }] }] },
        ),
      /no index "pending-by-expiry"/,
    );
    assert.throws(() => buildStack({ lambdaDir }, { functions: [{ ...SWEEPER, name: 'Expire_Reservations' }] }), /kebab-case/);
    assert.throws(
      () => buildStack({ lambdaDir }, { functions: [...FUNCTIONS, RESERVE] }),
      /missing .*reserve\/bootstrap/,
    );
  });

  it('fails synthesis when the binary is built for the other architecture', () => {
    const x86Dir = fakeLambdaDir(['health'], elfHeader(0x3e));
    const armDir = fakeLambdaDir(['health'], elfHeader(0xb7));
    const errors = (context: Record<string, string>) => errorsOf(makeStack(context).stack);
    assert.match(errors({ lambdaDir: x86Dir }).join('\n'), /built for x86_64 but the stack deploys arm64/);
    assert.match(errors({ lambdaDir: armDir, arch: 'x86_64' }).join('\n'), /built for arm64 but the stack deploys x86_64/);
    assert.deepEqual(errors({ lambdaDir: x86Dir, arch: 'x86_64', local: 'true' }), []);
    assert.deepEqual(errors({ lambdaDir: armDir }), []);
    // ...and synthesis (what `cdk synth`/`cdk deploy` run) refuses it.
    assert.throws(() => buildStack({ lambdaDir: x86Dir }), /Validation failed/);
  });
});

describe('state machines', () => {
  const asl = {
    Comment: 'test saga',
    StartAt: 'Reserve',
    States: {
      Reserve: {
        Type: 'Task',
        Resource: 'arn:aws:states:::lambda:invoke',
        Parameters: { FunctionName: '${HealthFunctionArn}', 'Payload.$': '$' },
        Catch: [{ ErrorEquals: ['States.ALL'], Next: 'ToDlq' }],
        End: true,
      },
      ToDlq: {
        Type: 'Task',
        Resource: 'arn:aws:states:::sqs:sendMessage',
        Parameters: { QueueUrl: '${SagaDlqUrl}', 'MessageBody.$': '$' },
        End: true,
      },
    },
  };

  it('addStateMachine: ASL file + substitutions, exact grants, ExecutionsFailed alarm', () => {
    const dir = tempDir('asl');
    fs.writeFileSync(path.join(dir, 'saga.asl.json'), JSON.stringify(asl, null, 2));
    const { template, stack } = buildStack({ local: 'true' }, { stateMachinesDir: dir }, (s) => {
      s.addStateMachine('CheckoutSaga', 'saga.asl.json', {
        substitutions: {
          HealthFunctionArn: s.functions.get('health').functionArn,
          SagaDlqUrl: s.data.queues.sagaDlq.queueUrl,
        },
        invokes: [s.functions.get('health')],
        sendsTo: [s.data.queues.sagaDlq],
      });
    });
    const [smId, sm] = resourcesOf(template, 'AWS::StepFunctions::StateMachine')[0];
    assert.equal(sm.Properties.StateMachineType, 'STANDARD');
    assert.deepEqual(Object.keys(sm.Properties.DefinitionSubstitutions).sort(), ['HealthFunctionArn', 'SagaDlqUrl']);
    assert.ok(JSON.stringify(sm.Properties.DefinitionString).includes('${HealthFunctionArn}'));

    const roleId = sm.Properties.RoleArn['Fn::GetAtt'][0];
    const actions = statementsOfRole(template, roleId).flatMap((s) => asArray(s.Action)).sort();
    assert.deepEqual(actions, ['lambda:InvokeFunction', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage']);

    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/States',
      MetricName: 'ExecutionsFailed',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: smId } }],
    });
    template.hasOutput('CheckoutSagaArn', { Value: { Ref: smId } });
    assert.ok(stack.node.tryFindChild('CheckoutSaga'));
    for (const a of allActions(template)) assert.ok(!a.includes('*'), a);
  });

  it('addStateMachine: placeholders and substitutions must match', () => {
    const dir = tempDir('asl');
    fs.writeFileSync(path.join(dir, 'saga.asl.json'), JSON.stringify(asl));
    assert.throws(
      () =>
        buildStack({ local: 'true' }, { stateMachinesDir: dir }, (s) => {
          s.addStateMachine('Saga', 'saga.asl.json', { substitutions: { HealthFunctionArn: 'x', Extra: 'y' } });
        }),
      /without a value: \[SagaDlqUrl\].*without a placeholder: \[Extra\]/,
    );
  });
});
