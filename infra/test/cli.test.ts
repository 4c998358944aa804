// End to end through the pinned CDK CLI and cdk.json, with the context deploy-local.sh passes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { INFRA_DIR } from '../lib/config';
import { FUNCTIONS } from '../lib/functions';
import { fakeLambdaDir, tempDir, testKeyPair, testPublicKeyFile } from './helpers';

describe('cdk synth (CLI)', () => {
  it('synthesises the LocalStack stack offline from cdk.json with the context of deploy-local.sh', () => {
    const lambdaDir = fakeLambdaDir();
    const out = tempDir('cdkout');
    execFileSync(
      path.join(INFRA_DIR, 'node_modules', '.bin', 'cdk'),
      ['synth', '--quiet', '--no-notices', '--no-version-reporting', '-o', out,
        '-c', 'local=true', '-c', 'arch=x86_64', '-c', `lambdaDir=${lambdaDir}`,
        '-c', `jwtPublicKeyFile=${testPublicKeyFile()}`,
        '-c', 'rateIpCapacity=100000', '-c', 'rateIpRefillPerSec=10000',
        '-c', 'chargeTimeoutSeconds=50', '-c', 'chargeHeartbeatSeconds=25', '-c', 'refundRecheckSeconds=5',
        '-c', 'breakerFailureThreshold=3', '-c', 'breakerCooldownMs=5000'],
      {
        cwd: INFRA_DIR,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, CDK_DISABLE_CLI_TELEMETRY: 'true' },
        timeout: 60_000,
      },
    );
    const template = JSON.parse(fs.readFileSync(path.join(out, 'Flashsale-dev.template.json'), 'utf8'));
    const fns = Object.values<any>(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
    // Locally every function of FUNCTIONS is deployed, the local-only authorizer included.
    assert.equal(fns.length, FUNCTIONS.length);
    const byName = new Map(fns.map((f) => [f.Properties.FunctionName.replace(/^Flashsale-dev-/, ''), f]));
    assert.deepEqual([...byName.keys()].sort(), FUNCTIONS.map((f) => f.name).sort());
    for (const fn of fns) assert.deepEqual(fn.Properties.Architectures, ['x86_64']);
    assert.equal(byName.get('health').Properties.Environment.Variables.REDIS_URL, 'redis://127.0.0.1:6379');
    const reserveEnv = byName.get('reserve').Properties.Environment.Variables;
    assert.equal(reserveEnv.RATE_IP_CAPACITY, '100000');
    assert.equal(reserveEnv.RATE_IP_REFILL_PER_SEC, '10000');
    assert.equal(reserveEnv.RATE_USER_CAPACITY, '5');
    assert.equal(byName.get('authorizer').Properties.Environment.Variables.JWT_PUBLIC_KEY, testKeyPair().publicPem);
    // The checkout saga with the short local waits, and the expiry schedule.
    const machines = Object.values<any>(template.Resources).filter((r) => r.Type === 'AWS::StepFunctions::StateMachine');
    assert.equal(machines.length, 1);
    assert.equal(machines[0].Properties.StateMachineType, 'STANDARD');
    assert.equal(machines[0].Properties.DefinitionSubstitutions.ChargeTimeoutSeconds, '50');
    assert.equal(machines[0].Properties.DefinitionSubstitutions.ChargeHeartbeatSeconds, '25');
    assert.equal(machines[0].Properties.DefinitionSubstitutions.RefundRecheckSeconds, '5');
    const rules = Object.values<any>(template.Resources).filter((r) => r.Type === 'AWS::Events::Rule');
    assert.deepEqual(rules.map((r) => r.Properties.ScheduleExpression), ['rate(1 minute)']);
    const sagaStepsEnv = byName.get('saga-steps').Properties.Environment.Variables;
    assert.equal(sagaStepsEnv.BREAKER_FAILURE_THRESHOLD, '3');
    assert.equal(sagaStepsEnv.BREAKER_COOLDOWN_MS, '5000');
    assert.equal(sagaStepsEnv.STRIPE_API_BASE, 'http://127.0.0.1:12111');
    assert.equal(sagaStepsEnv.STRIPE_SECRET_KEY, 'sk_test_sandbox');
    assert.ok(!Object.values<any>(template.Resources).some((r) => r.Type.startsWith('AWS::EC2::')));
    assert.ok(!Object.values<any>(template.Resources).some((r) => r.Type.startsWith('AWS::Cognito::')));
    // The function code is the build output, zipped as one asset per function.
    const assets = JSON.parse(fs.readFileSync(path.join(out, 'Flashsale-dev.assets.json'), 'utf8'));
    const zips = Object.values<any>(assets.files).filter((f) => f.source.packaging === 'zip');
    assert.equal(zips.length, FUNCTIONS.length);
    for (const zip of zips) assert.ok(fs.existsSync(path.join(out, zip.source.path, 'bootstrap')));
  });

  it('fails with a clear message when local mode has no jwtPublicKeyFile', () => {
    let stderr = '';
    try {
      execFileSync(
        path.join(INFRA_DIR, 'node_modules', '.bin', 'cdk'),
        ['synth', '--quiet', '--no-notices', '--no-version-reporting', '-o', tempDir('cdkout'),
          '-c', 'local=true', '-c', 'arch=x86_64', '-c', `lambdaDir=${fakeLambdaDir()}`],
        {
          cwd: INFRA_DIR,
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, CDK_DISABLE_CLI_TELEMETRY: 'true' },
          timeout: 60_000,
        },
      );
      assert.fail('synth should have failed');
    } catch (e) {
      stderr = String((e as { stderr?: Buffer }).stderr ?? e);
    }
    assert.match(stderr, /context "jwtPublicKeyFile" is required with local=true/);
  });
});
