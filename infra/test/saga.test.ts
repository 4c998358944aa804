// The checkout saga (statemachines/checkout-saga.asl.json) as the stack deploys it, the expiry
// schedule, and the payment provider's settings and secrets. CloudFormation validation of the
// default templates runs in stack.test.ts.
process.env.CDK_VALIDATION = 'false';

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import aslValidator from 'asl-validator';
import { REPO_DIR } from '../lib/config';
import { asArray, makeStack, only, resourcesOf, statementsOfRole, synth } from './helpers';

const AWS = {};
const LOCAL = { local: 'true', arch: 'x86_64' };
const MODES = [
  ['AWS', AWS],
  ['LocalStack', LOCAL],
] as const;
/** Every knob of the saga, the schedule and the provider away from its default, on AWS. */
const CUSTOM = {
  chargeTimeoutSeconds: '30',
  chargeHeartbeatSeconds: '15',
  breakerFailureThreshold: '3',
  breakerCooldownMs: '5000',
  stripeSecretName: 'shop/stripe-live',
  expiryEveryMinutes: '5',
  expiryConcurrency: '4',
  expiryPageSize: '50',
  expiryBudgetMs: '20000',
  holdGraceMs: '1000',
};

const ASL_FILE = path.join(REPO_DIR, 'statemachines', 'checkout-saga.asl.json');
const REGION = 'eu-west-1';
const ACCOUNT = '123456789012';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

function fnByName(context: Record<string, string>, name: string): [string, Json] {
  const found = resourcesOf(synth(context).template, 'AWS::Lambda::Function').filter(
    ([, f]) => f.Properties.FunctionName === `Flashsale-dev-${name}`,
  );
  assert.equal(found.length, 1, `one ${name} function`);
  return found[0];
}

/** Function name (without the stack prefix) of each function role's logical id. */
function functionOfRole(context: Record<string, string>): Map<string, string> {
  return new Map(
    resourcesOf(synth(context).template, 'AWS::Lambda::Function').map(([, f]) => [
      f.Properties.Role['Fn::GetAtt'][0],
      f.Properties.FunctionName.replace(/^Flashsale-dev-/, ''),
    ]),
  );
}

function logicalId(context: Record<string, string>, construct: { node: { defaultChild?: unknown } }): string {
  const { stack } = synth(context);
  return stack.getLogicalId(construct.node.defaultChild as never);
}

/** `${Key}` -> value, as CloudFormation applies DefinitionSubstitutions. */
function substitute(text: string, values: Record<string, string>): string {
  return text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (whole, key: string) => (key in values ? values[key] : whole));
}

/** What CloudFormation would put in for a substitution value: a made-up but well-formed value. */
function concrete(context: Record<string, string>, value: Json): string {
  if (typeof value === 'string') return value;
  const resources = synth(context).template.toJSON().Resources;
  const ref = value.Ref as string | undefined;
  if (ref && resources[ref]?.Type === 'AWS::SQS::Queue') return `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${ref}`;
  if (ref && resources[ref]?.Type === 'AWS::DynamoDB::Table') return ref;
  const [id, attr] = value['Fn::GetAtt'] ?? [];
  if (attr === 'Arn' && resources[id]?.Type === 'AWS::Lambda::Function') {
    return `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${id}`;
  }
  throw new Error(`no concrete value for ${JSON.stringify(value)}`);
}

/** The checkout saga's resource, its logical id and its role's. */
function saga(context: Record<string, string>): { smId: string; sm: Json; roleId: string } {
  const [smId, sm] = only(synth(context).template, 'AWS::StepFunctions::StateMachine');
  return { smId, sm, roleId: sm.Properties.RoleArn['Fn::GetAtt'][0] };
}

/** The ARN of the saga's executions, written out: arn:<partition>:states:<region>:<account>:execution:<name>:*. */
const executionsArn = (smId: string) => ({
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
});

/** All (action, resource) pairs of the saga's role, resources named after tables/queues/functions. */
function sagaGrants(context: Record<string, string>): string[] {
  const { template, stack } = synth(context);
  const { roleId } = saga(context);
  const names = new Map<string, string>();
  const key = (v: unknown) => JSON.stringify(stack.resolve(v));
  for (const [k, t] of Object.entries(stack.data.tables)) names.set(key(t.tableArn), k);
  for (const [k, q] of Object.entries(stack.data.queues)) names.set(key(q.queueArn), k);
  for (const [name, fn] of stack.functions.byName) {
    names.set(key(fn.functionArn), name);
    names.set(key(`${fn.functionArn}:*`), `${name}:*`);
  }
  const out: string[] = [];
  for (const s of statementsOfRole(template, roleId)) {
    assert.equal(s.Effect, 'Allow');
    assert.equal(s.Condition, undefined);
    for (const a of asArray(s.Action)) {
      for (const r of asArray(s.Resource)) {
        const label = names.get(JSON.stringify(r));
        assert.ok(label, `unknown resource ${JSON.stringify(r)} in the saga's policy`);
        out.push(`${a} ${label}`);
      }
    }
  }
  return out.sort();
}

/** What the definition's Task states call, as IAM (action, resource) pairs of the substitutions. */
function neededByDefinition(definition: Json): string[] {
  const byPlaceholder: Record<string, string> = {
    '${SagaStepsFunctionArn}': 'saga-steps',
    '${ReservationsTable}': 'reservations',
    '${EventsQueueUrl}': 'events',
    '${SagaDlqUrl}': 'sagaDlq',
  };
  const target = (state: string, v: unknown) => {
    const label = byPlaceholder[String(v)];
    assert.ok(label, `${state}: unexpected target ${JSON.stringify(v)}`);
    return label;
  };
  const needed = new Set<string>();
  for (const [name, state] of Object.entries<Json>(definition.States)) {
    if (state.Type !== 'Task') continue;
    const p = state.Parameters;
    switch (state.Resource) {
      case 'arn:aws:states:::lambda:invoke':
      case 'arn:aws:states:::lambda:invoke.waitForTaskToken':
        needed.add(`lambda:InvokeFunction ${target(name, p.FunctionName)}`);
        break;
      case 'arn:aws:states:::dynamodb:getItem':
        needed.add(`dynamodb:GetItem ${target(name, p.TableName)}`);
        break;
      case 'arn:aws:states:::dynamodb:updateItem':
        needed.add(`dynamodb:UpdateItem ${target(name, p.TableName)}`);
        break;
      case 'arn:aws:states:::sqs:sendMessage':
        needed.add(`sqs:SendMessage ${target(name, p.QueueUrl)}`);
        break;
      default:
        assert.fail(`${name}: integration ${state.Resource} is not covered by this test`);
    }
  }
  return [...needed].sort();
}

describe('checkout saga: state machine', () => {
  for (const [label, context] of MODES) {
    it(`${label}: Standard, the ASL file with every placeholder substituted (no "\${" left), valid ASL`, () => {
      const { smId, sm } = saga(context);
      const { stack } = synth(context);
      assert.equal(sm.Properties.StateMachineType, 'STANDARD');
      const text: string = sm.Properties.DefinitionString;
      assert.equal(typeof text, 'string', 'inlined definition, no S3 asset');
      assert.deepEqual(JSON.parse(text), JSON.parse(fs.readFileSync(ASL_FILE, 'utf8')));

      const subs = sm.Properties.DefinitionSubstitutions;
      assert.deepEqual(subs, {
        SagaStepsFunctionArn: { 'Fn::GetAtt': [fnByName(context, 'saga-steps')[0], 'Arn'] },
        ReservationsTable: { Ref: logicalId(context, stack.data.tables.reservations) },
        EventsQueueUrl: { Ref: logicalId(context, stack.data.queues.events) },
        SagaDlqUrl: { Ref: logicalId(context, stack.data.queues.sagaDlq) },
        ChargeTimeoutSeconds: '600',
        ChargeHeartbeatSeconds: '300',
        RefundRecheckSeconds: '300',
      });
      const placeholders = new Set([...text.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]));
      assert.deepEqual([...placeholders].sort(), Object.keys(subs).sort());

      const values = Object.fromEntries(Object.entries<Json>(subs).map(([k, v]) => [k, concrete(context, v)]));
      const deployed = substitute(text, values);
      assert.ok(!deployed.includes('${'), `unsubstituted: ${deployed.match(/\$\{[^}]*\}?/g)}`);
      const definition = JSON.parse(deployed);
      assert.equal(
        definition.States.Configure.Parameters['charge_timeout.$'],
        "States.StringToJson('600')",
        'the timeouts reach the definition as numbers',
      );
      const result = aslValidator(structuredClone(definition));
      assert.equal(result.errorsText('\n'), '');
      assert.equal(result.isValid, true);

      template(context).hasOutput('CheckoutSagaArn', { Value: { Ref: smId } });
      template(context).hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/States',
        MetricName: 'ExecutionsFailed',
        Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: smId } }],
      });
    });

    it(`${label}: its role may invoke saga-steps, send to the events queue and saga DLQ, read/mark reservations; nothing else`, () => {
      const { roleId } = saga(context);
      const role = synth(context).template.toJSON().Resources[roleId];
      assert.deepEqual(
        role.Properties.AssumeRolePolicyDocument.Statement.map((s: Json) => [s.Action, s.Effect, s.Principal]),
        [['sts:AssumeRole', 'Allow', { Service: 'states.amazonaws.com' }]],
      );
      assert.equal(role.Properties.Policies, undefined);
      assert.equal(role.Properties.ManagedPolicyArns, undefined);
      const grants = sagaGrants(context);
      assert.deepEqual(grants, [
        'dynamodb:GetItem reservations',
        'dynamodb:UpdateItem reservations',
        'lambda:InvokeFunction saga-steps',
        'lambda:InvokeFunction saga-steps:*',
        // grantSendMessages: SendMessage plus the two reads SDK clients make first.
        'sqs:GetQueueAttributes events',
        'sqs:GetQueueAttributes sagaDlq',
        'sqs:GetQueueUrl events',
        'sqs:GetQueueUrl sagaDlq',
        'sqs:SendMessage events',
        'sqs:SendMessage sagaDlq',
      ]);
      // ...which is what the definition's tasks call: no task lacks a grant.
      const needed = neededByDefinition(JSON.parse(saga(context).sm.Properties.DefinitionString));
      assert.deepEqual(needed, [
        'dynamodb:GetItem reservations',
        'dynamodb:UpdateItem reservations',
        'lambda:InvokeFunction saga-steps',
        'sqs:SendMessage events',
        'sqs:SendMessage sagaDlq',
      ]);
      for (const n of needed) assert.ok(grants.includes(n), n);
    });

    it(`${label}: only pay and the sweep (stuck payments) may start and describe executions, only payment-webhook may answer tasks`, () => {
      const { template } = synth(context);
      const { smId, roleId } = saga(context);
      const roles = functionOfRole(context);
      const found: string[] = [];
      for (const [, policy] of resourcesOf(template, 'AWS::IAM::Policy')) {
        for (const s of policy.Properties.PolicyDocument.Statement) {
          for (const a of asArray<string>(s.Action)) {
            if (!a.startsWith('states:')) continue;
            const owners = policy.Properties.Roles.map((r: Json) => roles.get(r.Ref) ?? r.Ref);
            for (const r of asArray(s.Resource)) {
              const res = JSON.stringify(r);
              const label =
                res === JSON.stringify({ Ref: smId }) ? 'stateMachine'
                : res === JSON.stringify(executionsArn(smId)) ? 'executions'
                : res;
              for (const owner of owners) found.push(`${owner} ${a} ${label}`);
            }
          }
        }
      }
      assert.deepEqual(found.sort(), [
        'expiry-cleanup states:DescribeExecution executions',
        'expiry-cleanup states:StartExecution stateMachine',
        'pay states:DescribeExecution executions',
        'pay states:StartExecution stateMachine',
        'payment-webhook states:SendTaskFailure stateMachine',
        'payment-webhook states:SendTaskHeartbeat stateMachine',
        'payment-webhook states:SendTaskSuccess stateMachine',
      ]);
      // lambda:InvokeFunction in IAM: the saga's role only (API Gateway and EventBridge invoke
      // through resource policies).
      const invokers = resourcesOf(template, 'AWS::IAM::Policy')
        .filter(([, p]) =>
          p.Properties.PolicyDocument.Statement.some((s: Json) => asArray(s.Action).includes('lambda:InvokeFunction')),
        )
        .flatMap(([, p]) => p.Properties.Roles.map((r: Json) => r.Ref));
      assert.deepEqual(invokers, [roleId]);
    });

    it(`${label}: SAGA_STATE_MACHINE_ARN reaches pay, payment-webhook and expiry-cleanup only`, () => {
      const { smId } = saga(context);
      const withArn = resourcesOf(synth(context).template, 'AWS::Lambda::Function')
        .filter(([, f]) => 'SAGA_STATE_MACHINE_ARN' in f.Properties.Environment.Variables)
        .map(([, f]) => [f.Properties.FunctionName, f.Properties.Environment.Variables.SAGA_STATE_MACHINE_ARN]);
      assert.deepEqual(withArn.sort(), [
        ['Flashsale-dev-expiry-cleanup', { Ref: smId }],
        ['Flashsale-dev-pay', { Ref: smId }],
        ['Flashsale-dev-payment-webhook', { Ref: smId }],
      ]);
    });
  }

  it('charge timeout and heartbeat come from context', () => {
    const { sm } = saga(CUSTOM);
    assert.equal(sm.Properties.DefinitionSubstitutions.ChargeTimeoutSeconds, '30');
    assert.equal(sm.Properties.DefinitionSubstitutions.ChargeHeartbeatSeconds, '15');
    const definition = JSON.parse(substitute(sm.Properties.DefinitionString, sm.Properties.DefinitionSubstitutions));
    assert.deepEqual(definition.States.Configure.Parameters, {
      'charge_timeout.$': "States.StringToJson('30')",
      'charge_heartbeat.$': "States.StringToJson('15')",
      'refund_recheck.$': "States.StringToJson('300')",
    });
  });
});

function template(context: Record<string, string>) {
  return synth(context).template;
}

describe('expiry schedule', () => {
  for (const [label, context] of MODES) {
    it(`${label}: one rule, rate(1 minute), targeting expiry-cleanup without retries`, () => {
      const [ruleId, rule] = only(template(context), 'AWS::Events::Rule');
      const [fnId] = fnByName(context, 'expiry-cleanup');
      assert.equal(rule.Properties.ScheduleExpression, 'rate(1 minute)');
      assert.equal(rule.Properties.State, 'ENABLED');
      assert.equal(rule.Properties.EventPattern, undefined);
      assert.deepEqual(rule.Properties.Targets, [
        { Arn: { 'Fn::GetAtt': [fnId, 'Arn'] }, Id: 'Target0', RetryPolicy: { MaximumRetryAttempts: 0 } },
      ]);
      // EventBridge may invoke it, from this rule only; no other function is invoked by events.
      const perms = resourcesOf(template(context), 'AWS::Lambda::Permission').filter(
        ([, p]) => p.Properties.Principal === 'events.amazonaws.com',
      );
      assert.deepEqual(
        perms.map(([, p]) => p.Properties),
        [
          {
            Action: 'lambda:InvokeFunction',
            FunctionName: { 'Fn::GetAtt': [fnId, 'Arn'] },
            Principal: 'events.amazonaws.com',
            SourceArn: { 'Fn::GetAtt': [ruleId, 'Arn'] },
          },
        ],
      );
    });

    it(`${label}: expiry-cleanup gets the run's bounds, and its timeout leaves a margin above the budget`, () => {
      const [, fn] = fnByName(context, 'expiry-cleanup');
      const vars = fn.Properties.Environment.Variables;
      assert.equal(vars.EXPIRY_CONCURRENCY, '32');
      assert.equal(vars.EXPIRY_PAGE_SIZE, '500');
      assert.equal(vars.EXPIRY_BUDGET_MS, '45000');
      assert.equal(vars.HOLD_GRACE_MS, '60000');
      assert.equal(fn.Properties.MemorySize, 512);
      assert.equal(fn.Properties.Timeout, 60);
      assert.ok(fn.Properties.Timeout * 1000 >= Number(vars.EXPIRY_BUDGET_MS) + 10_000);
    });
  }

  it('expiryEveryMinutes=5 gives rate(5 minutes); the run bounds come from context', () => {
    const [, rule] = only(template(CUSTOM), 'AWS::Events::Rule');
    assert.equal(rule.Properties.ScheduleExpression, 'rate(5 minutes)');
    const vars = fnByName(CUSTOM, 'expiry-cleanup')[1].Properties.Environment.Variables;
    assert.equal(vars.EXPIRY_CONCURRENCY, '4');
    assert.equal(vars.EXPIRY_PAGE_SIZE, '50');
    assert.equal(vars.EXPIRY_BUDGET_MS, '20000');
    assert.equal(vars.HOLD_GRACE_MS, '1000');
  });
});

describe('payment provider settings', () => {
  const secretRef = (name: string, field: string) => `{{resolve:secretsmanager:${name}:SecretString:${field}::}}`;
  /** [function, value] of every function that has the variable. */
  const holders = (context: Record<string, string>, variable: string) =>
    resourcesOf(template(context), 'AWS::Lambda::Function')
      .filter(([, f]) => variable in f.Properties.Environment.Variables)
      .map(([, f]) => [f.Properties.FunctionName.replace(/^Flashsale-dev-/, ''), f.Properties.Environment.Variables[variable]])
      .sort();

  for (const [context, secretName] of [
    [AWS, 'flashsale/stripe'],
    [CUSTOM, 'shop/stripe-live'],
  ] as const) {
    it(`AWS: the Stripe keys are Secrets Manager dynamic references to ${secretName}, never values`, () => {
      assert.deepEqual(holders(context, 'STRIPE_SECRET_KEY'), [
        ['payment-webhook', secretRef(secretName, 'secret_key')],
        ['saga-steps', secretRef(secretName, 'secret_key')],
      ]);
      assert.deepEqual(holders(context, 'STRIPE_WEBHOOK_SECRETS'), [
        ['payment-webhook', secretRef(secretName, 'webhook_secrets')],
      ]);
      assert.deepEqual(holders(context, 'STRIPE_API_BASE'), [
        ['payment-webhook', 'https://api.stripe.com'],
        ['saga-steps', 'https://api.stripe.com'],
      ]);
      // No key material anywhere in the template (the sandbox's or a real one).
      const text = JSON.stringify(template(context).toJSON());
      assert.doesNotMatch(text, /sk_(test|live)_|rk_(test|live)_|whsec_/);
    });
  }

  it('AWS: Stripe keys given as context are refused', () => {
    assert.throws(() => makeStack({ stripeSecretKey: 'sk_live_abc' }), /on AWS the Stripe keys come from Secrets Manager/);
    assert.throws(() => makeStack({ stripeWebhookSecrets: 'whsec_abc' }), /on AWS the Stripe keys come from Secrets Manager/);
  });

  // The functions behind the bot defence: reserve and the waiting room (its join).
  const guarded = (value: string) => [['reserve', value], ['waiting-room', value]];

  it('AWS: the bot challenge keys are dynamic references to flashsale/bot, for the guarded routes only (reserve, the waiting room\'s join)', () => {
    assert.deepEqual(holders(AWS, 'BOT_CHALLENGE_SIGNATURE_SECRET'), guarded(secretRef('flashsale/bot', 'signature_secret')));
    assert.deepEqual(holders(AWS, 'BOT_CHALLENGE_KEY_SECRET'), guarded(secretRef('flashsale/bot', 'key_secret')));
    assert.deepEqual(holders(AWS, 'BOT_DEFENCE'), guarded('on'));
    // Address blocks are opt-in (one account could lock a NAT out): off unless asked for.
    assert.deepEqual(holders(AWS, 'BOT_BLOCK_ADDRESSES'), guarded('off'));
    assert.deepEqual(holders({ ...AWS, botBlockAddresses: 'true' }, 'BOT_BLOCK_ADDRESSES'), guarded('on'));
    assert.deepEqual(holders({ ...AWS, botDefence: 'false', botChallengeAt: '90' }, 'BOT_DEFENCE'), guarded('off'));
    assert.deepEqual(holders({ ...AWS, botChallengeAt: '90' }, 'BOT_CHALLENGE_AT'), guarded('90'));
    assert.doesNotMatch(JSON.stringify(template(AWS).toJSON()), /local-bot-/);
    assert.throws(() => makeStack({ botChallengeAt: '101' }), /botChallengeAt/);
    assert.deepEqual(holders(AWS, 'BOT_CHALLENGE_PROVIDER'), guarded('altcha'));
    assert.deepEqual(holders(AWS, 'TURNSTILE_SECRET_KEY'), []);
  });

  it('AWS: the turnstile provider gets its site key and secret reference instead of the ALTCHA keys, and needs NAT', () => {
    const context = { ...AWS, botChallengeProvider: 'turnstile', turnstileSiteKey: '0x4AAAAAAAsite', natGateways: '1' };
    assert.deepEqual(holders(context, 'BOT_CHALLENGE_PROVIDER'), guarded('turnstile'));
    assert.deepEqual(holders(context, 'TURNSTILE_SITE_KEY'), guarded('0x4AAAAAAAsite'));
    assert.deepEqual(holders(context, 'TURNSTILE_SECRET_KEY'), guarded(secretRef('flashsale/bot', 'turnstile_secret_key')));
    assert.deepEqual(holders(context, 'BOT_CHALLENGE_SIGNATURE_SECRET'), []);
    assert.deepEqual(holders(context, 'BOT_CHALLENGE_KEY_SECRET'), []);
    assert.throws(() => makeStack({ ...context, natGateways: '0' }), /natGateways/);
    assert.throws(() => makeStack({ botChallengeProvider: 'turnstile', natGateways: '1' }), /turnstileSiteKey/);
    assert.throws(() => makeStack({ botChallengeProvider: 'hcaptcha' }), /botChallengeProvider/);
    assert.throws(() => makeStack({ local: 'true', botChallengeProvider: 'turnstile', turnstileSiteKey: 'k' }), /AWS only/);
  });

  it('LocalStack: the payment sandbox on 127.0.0.1:12111 with its test keys; no dynamic references', () => {
    assert.deepEqual(holders(LOCAL, 'STRIPE_SECRET_KEY'), [
      ['payment-webhook', 'sk_test_sandbox'],
      ['saga-steps', 'sk_test_sandbox'],
    ]);
    assert.deepEqual(holders(LOCAL, 'STRIPE_WEBHOOK_SECRETS'), [['payment-webhook', 'whsec_sandbox']]);
    assert.deepEqual(holders(LOCAL, 'STRIPE_API_BASE'), [
      ['payment-webhook', 'http://127.0.0.1:12111'],
      ['saga-steps', 'http://127.0.0.1:12111'],
    ]);
    assert.ok(!JSON.stringify(template(LOCAL).toJSON()).includes('{{resolve:'));
  });

  it('the circuit breaker settings reach saga-steps only, from context', () => {
    assert.deepEqual(holders(AWS, 'BREAKER_FAILURE_THRESHOLD'), [['saga-steps', '5']]);
    assert.deepEqual(holders(AWS, 'BREAKER_COOLDOWN_MS'), [['saga-steps', '30000']]);
    assert.deepEqual(holders(CUSTOM, 'BREAKER_FAILURE_THRESHOLD'), [['saga-steps', '3']]);
    assert.deepEqual(holders(CUSTOM, 'BREAKER_COOLDOWN_MS'), [['saga-steps', '5000']]);
  });
});

describe('checkout-saga.asl.json (asl-validator)', () => {
  const text = fs.readFileSync(ASL_FILE, 'utf8');
  /** Placeholder values of the deployed shapes (what CloudFormation substitutes). */
  const PLACEHOLDERS: Record<string, string> = {
    SagaStepsFunctionArn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:Flashsale-dev-saga-steps`,
    ReservationsTable: 'Flashsale-dev-DataReservations-1A2B3C4D5E6F',
    EventsQueueUrl: `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/Flashsale-dev-DataEvents-1A2B3C4D5E6F`,
    SagaDlqUrl: `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/Flashsale-dev-DataSagaDlq-1A2B3C4D5E6F`,
    ChargeTimeoutSeconds: '600',
    ChargeHeartbeatSeconds: '300',
    RefundRecheckSeconds: '300',
  };
  const definition = () => {
    const substituted = substitute(text, PLACEHOLDERS);
    assert.ok(!substituted.includes('${'), `unsubstituted: ${substituted.match(/\$\{[^}]*\}?/g)}`);
    return JSON.parse(substituted);
  };

  /**
   * asl-validator 4.0.0 has no schema for the retrier fields MaxDelaySeconds and JitterStrategy
   * (its Retry schema allows extra properties, so it accepts them without looking): checked
   * here against the Step Functions documentation. IntervalSeconds, MaxAttempts and BackoffRate
   * are only checked for >= 0 there; the ASL spec asks for more.
   */
  function retrierProblems(states: Json, where = ''): string[] {
    const problems: string[] = [];
    const int = (v: unknown, min: number, max: number) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
    for (const [name, state] of Object.entries<Json>(states)) {
      for (const [i, r] of (state.Retry ?? []).entries()) {
        const at = `${where}${name}.Retry[${i}]`;
        if (r.JitterStrategy !== undefined && !['FULL', 'NONE'].includes(r.JitterStrategy)) {
          problems.push(`${at}.JitterStrategy must be FULL or NONE, got ${JSON.stringify(r.JitterStrategy)}`);
        }
        if (r.MaxDelaySeconds !== undefined && !int(r.MaxDelaySeconds, 1, 31622400)) {
          problems.push(`${at}.MaxDelaySeconds must be an integer in 1..31622400, got ${JSON.stringify(r.MaxDelaySeconds)}`);
        }
        if (r.IntervalSeconds !== undefined && !int(r.IntervalSeconds, 1, 99999999)) {
          problems.push(`${at}.IntervalSeconds must be a positive integer, got ${JSON.stringify(r.IntervalSeconds)}`);
        }
        if (r.MaxAttempts !== undefined && !int(r.MaxAttempts, 0, 99999999)) {
          problems.push(`${at}.MaxAttempts must be a non-negative integer, got ${JSON.stringify(r.MaxAttempts)}`);
        }
        if (r.BackoffRate !== undefined && !(typeof r.BackoffRate === 'number' && r.BackoffRate >= 1)) {
          problems.push(`${at}.BackoffRate must be >= 1.0, got ${JSON.stringify(r.BackoffRate)}`);
        }
      }
      for (const [b, branch] of (state.Branches ?? []).entries()) problems.push(...retrierProblems(branch.States, `${where}${name}.Branches[${b}].`));
      const inner = state.ItemProcessor ?? state.Iterator;
      if (inner) problems.push(...retrierProblems(inner.States, `${where}${name}.ItemProcessor.`));
    }
    return problems;
  }

  it('uses exactly the placeholders the stack substitutes', () => {
    const used = new Set([...text.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]));
    assert.deepEqual([...used].sort(), Object.keys(PLACEHOLDERS).sort());
    assert.deepEqual(Object.keys(saga(AWS).sm.Properties.DefinitionSubstitutions).sort(), Object.keys(PLACEHOLDERS).sort());
    // Any other "${" would be taken for a substitution by CloudFormation.
    assert.doesNotMatch(text, /\$\{(?![A-Za-z0-9_]+\})/);
  });

  it('is valid ASL after substitution (asl-validator, with path and ARN checks)', () => {
    const result = aslValidator(definition(), { checkPaths: true, checkArn: true });
    assert.equal(result.errorsText('\n'), '');
    assert.equal(result.isValid, true);
    assert.deepEqual(retrierProblems(definition().States), []);
    // The charge wait is bounded by the configured timeout and heartbeat.
    const d = definition();
    assert.equal(d.States.Configure.ResultPath, '$.config');
    assert.equal(d.States.Charge.TimeoutSecondsPath, '$.config.charge_timeout');
    assert.equal(d.States.Charge.HeartbeatSecondsPath, '$.config.charge_heartbeat');
  });

  it('the validator understands TimeoutSecondsPath/HeartbeatSecondsPath and catches broken definitions', () => {
    const broken = (change: (d: Json) => void) => {
      const d = definition();
      change(d);
      return aslValidator(d).errorsText('\n');
    };
    assert.match(broken((d) => (d.States.Charge.Next = 'Nowhere')), /MISSING_TRANSITION_TARGET.*Nowhere/);
    assert.match(broken((d) => (d.States.Charge.TimeoutSecondsPath = 'not a path')), /TimeoutSecondsPath.*asl_ref_path/);
    assert.match(broken((d) => (d.States.Charge.TimeoutSeconds = 60)), /TASK_TIMEOUT/);
    assert.match(broken((d) => (d.States.Charge.HeartbeatSeconds = 60)), /TASK_HEARTBEAT/);
    assert.match(broken((d) => delete d.States.Confirmed), /MISSING_TRANSITION_TARGET/);
  });

  it('retrier fields the validator does not model are checked here (JitterStrategy, MaxDelaySeconds)', () => {
    const d = definition();
    d.States.Validate.Retry[0].JitterStrategy = 'SOMETIMES';
    d.States.Validate.Retry[0].MaxDelaySeconds = 0;
    // asl-validator 4.0.0 accepts both. (Should this start failing, it models them now.)
    assert.equal(aslValidator(structuredClone(d)).isValid, true);
    assert.deepEqual(retrierProblems(d.States), [
      'Validate.Retry[0].JitterStrategy must be FULL or NONE, got "SOMETIMES"',
      'Validate.Retry[0].MaxDelaySeconds must be an integer in 1..31622400, got 0',
    ]);
  });
});
