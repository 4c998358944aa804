// The extension points later issues use: one FunctionSpec entry per function, and
// addStateMachine() for an ASL file with definitionSubstitutions.
// The built-in CloudFormation validation (a WASM module, ~4 s to load per process) already runs
// in stack.test.ts and cli.test.ts; these tests are about construct wiring.
process.env.CDK_VALIDATION = 'false';

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { REPO_DIR } from '../lib/config';
import { FUNCTIONS, type FunctionSpec } from '../lib/functions';
import {
  ALL_FUNCTION_NAMES,
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
const CANCEL: FunctionSpec = {
  name: 'cancel-reservation',
  description: 'test spec',
  env: ['REDIS_URL', 'RESERVATIONS_TABLE'],
  tables: [{ table: 'reservations', actions: ['dynamodb:UpdateItem'] }],
  routes: [
    { method: 'DELETE', path: '/reservations/{reservationId}', authorized: true },
    { method: 'POST', path: '/reservations/{reservationId}/cancel' },
  ],
};

function fnByName(template: any, name: string) {
  const found = resourcesOf(template, 'AWS::Lambda::Function').find(([, f]) => f.Properties.FunctionName === name);
  assert.ok(found, name);
  return found;
}

describe('function specs', () => {
  it('one entry adds a function with exactly its env, grants, route and log group', () => {
    const lambdaDir = fakeLambdaDir([...ALL_FUNCTION_NAMES, 'expire-reservations', 'cancel-reservation']);
    for (const local of ['true', 'false']) {
      const { template, stack } = buildStack(
        { lambdaDir, local },
        { functions: [...FUNCTIONS, SWEEPER, CANCEL] },
      );
      const base = FUNCTIONS.filter((f) => local === 'true' || !f.localOnly).length;
      assert.equal(resourcesOf(template, 'AWS::Lambda::Function').length, base + 2);
      assert.equal(resourcesOf(template, 'AWS::Logs::LogGroup').length, base + 2);

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

      // The routes of `cancel-reservation` are wired with a proxy integration; the authorized
      // one goes through the API's authorizer, the other is public.
      const [cancelId] = fnByName(template, 'Flashsale-dev-cancel-reservation');
      const mine = resourcesOf(template, 'AWS::ApiGateway::Method').filter(([, m]) =>
        JSON.stringify(m.Properties.Integration.Uri).includes(cancelId),
      );
      assert.deepEqual(mine.map(([, m]) => m.Properties.HttpMethod).sort(), ['DELETE', 'POST']);
      const [authorizerId] = resourcesOf(template, 'AWS::ApiGateway::Authorizer')[0];
      for (const [, m] of mine) {
        assert.equal(m.Properties.Integration.Type, 'AWS_PROXY');
        if (m.Properties.HttpMethod === 'DELETE') {
          assert.equal(m.Properties.AuthorizationType, local === 'true' ? 'CUSTOM' : 'COGNITO_USER_POOLS');
          assert.deepEqual(m.Properties.AuthorizerId, { Ref: authorizerId });
        } else {
          assert.equal(m.Properties.AuthorizationType, 'NONE');
          assert.equal(m.Properties.AuthorizerId, undefined);
        }
      }
      template.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: 'cancel' });

      for (const a of allActions(template)) assert.ok(!a.includes('*'), a);
    }
  });

  it('rejects an unknown index, a non-kebab name, a missing build output and unavailable env', () => {
    const lambdaDir = fakeLambdaDir([...ALL_FUNCTION_NAMES, 'expire-reservations']);
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
      () => buildStack({ lambdaDir }, { functions: [...FUNCTIONS, CANCEL] }),
      /missing .*cancel-reservation\/bootstrap/,
    );
    // JWT_* exist only in local mode (on AWS, Cognito checks the tokens).
    assert.throws(
      () => buildStack({ lambdaDir }, { functions: [{ ...SWEEPER, env: ['JWT_PUBLIC_KEY'] }] }),
      /"expire-reservations" reads JWT_PUBLIC_KEY, which this deployment does not provide/,
    );
  });

  it('localOnly specs are deployed with local=true only', () => {
    const lambdaDir = fakeLambdaDir([...ALL_FUNCTION_NAMES, 'expire-reservations']);
    const spec: FunctionSpec = { ...SWEEPER, localOnly: true };
    const names = (local: string) =>
      resourcesOf(buildStack({ lambdaDir, local }, { functions: [FUNCTIONS[0], spec] }).template, 'AWS::Lambda::Function')
        .map(([, f]) => f.Properties.FunctionName)
        .sort();
    assert.deepEqual(names('true'), ['Flashsale-dev-expire-reservations', 'Flashsale-dev-health']);
    assert.deepEqual(names('false'), ['Flashsale-dev-health']);
  });

  it('an authorized route needs an authorizer: locally, the "authorizer" spec', () => {
    const lambdaDir = fakeLambdaDir([...ALL_FUNCTION_NAMES, 'cancel-reservation']);
    assert.throws(
      () => buildStack({ lambdaDir, local: 'true' }, { functions: [CANCEL] }),
      /DELETE \/reservations\/\{reservationId\} of "cancel-reservation" is authorized but the API has no authorizer/,
    );
    // Without authorized routes no authorizer is needed, and none is created.
    const { template } = buildStack({ lambdaDir, local: 'true' }, { functions: [{ ...CANCEL, routes: [CANCEL.routes![1]] }] });
    assert.equal(resourcesOf(template, 'AWS::ApiGateway::Authorizer').length, 0);
    assert.equal(resourcesOf(template, 'AWS::Cognito::UserPool').length, 0);
  });

  it('fails synthesis when the binary is built for the other architecture', () => {
    const x86Dir = fakeLambdaDir(ALL_FUNCTION_NAMES, elfHeader(0x3e));
    const armDir = fakeLambdaDir(ALL_FUNCTION_NAMES, elfHeader(0xb7));
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

  /** A statemachines/ folder: the real checkout saga (the stack always adds it) plus `files`. */
  const aslDir = (files: Record<string, string>): string => {
    const dir = tempDir('asl');
    fs.copyFileSync(path.join(REPO_DIR, 'statemachines', 'checkout-saga.asl.json'), path.join(dir, 'checkout-saga.asl.json'));
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
    return dir;
  };

  it('addStateMachine: ASL file + substitutions, exact grants, ExecutionsFailed alarm', () => {
    const dir = aslDir({ 'saga.asl.json': JSON.stringify(asl, null, 2) });
    const { template, stack } = buildStack({ local: 'true' }, { stateMachinesDir: dir }, (s) => {
      s.addStateMachine('TestSaga', 'saga.asl.json', {
        substitutions: {
          HealthFunctionArn: s.functions.get('health').functionArn,
          SagaDlqUrl: s.data.queues.sagaDlq.queueUrl,
        },
        invokes: [s.functions.get('health')],
        sendsTo: [s.data.queues.sagaDlq],
      });
    });
    // Next to the checkout saga the stack always has.
    const machines = resourcesOf(template, 'AWS::StepFunctions::StateMachine');
    assert.equal(machines.length, 2);
    const testSmId = stack.getLogicalId(stack.node.findChild('TestSaga').node.findChild('StateMachine').node.defaultChild as never);
    const [smId, sm] = machines.find(([id]) => id === testSmId)!;
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
    template.hasOutput('TestSagaArn', { Value: { Ref: smId } });
    assert.ok(stack.node.tryFindChild('CheckoutSaga'));
    assert.ok(stack.node.tryFindChild('TestSaga'));
    for (const a of allActions(template)) assert.ok(!a.includes('*'), a);
  });

  it('addStateMachine: placeholders and substitutions must match', () => {
    const dir = aslDir({ 'saga.asl.json': JSON.stringify(asl) });
    assert.throws(
      () =>
        buildStack({ local: 'true' }, { stateMachinesDir: dir }, (s) => {
          s.addStateMachine('Saga', 'saga.asl.json', { substitutions: { HealthFunctionArn: 'x', Extra: 'y' } });
        }),
      /without a value: \[SagaDlqUrl\].*without a placeholder: \[Extra\]/,
    );
  });

  it('addStateMachine: refuses a "${" that is no placeholder (CloudFormation substitutes the whole definition)', () => {
    // E.g. in a Comment: the CDK's CloudFormation validation (E1029) fails `cdk synth` on it.
    const withStray = { ...asl, Comment: 'Substitutions: ${...} from the CDK app.' };
    const dir = aslDir({ 'saga.asl.json': JSON.stringify(withStray) });
    assert.throws(
      () =>
        buildStack({ local: 'true' }, { stateMachinesDir: dir }, (s) => {
          s.addStateMachine('Saga', 'saga.asl.json', { substitutions: { HealthFunctionArn: 'x', SagaDlqUrl: 'y' } });
        }),
      /saga\.asl\.json: "\$\{" that is not a \$\{Name\} placeholder: \[\$\{\.\.\.\}\]/,
    );
  });
});
