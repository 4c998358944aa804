import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { configFromContext, DEFAULTS, INFRA_DIR } from '../lib/config';
import { tempDir, testKeyPair, testPublicKeyFile } from './helpers';

const cfg = (ctx: Record<string, unknown>) => configFromContext((k) => ctx[k]);

describe('context', () => {
  it('defaults: arm64, AWS mode, stage dev, ../target/lambda', () => {
    const c = cfg({});
    assert.equal(c.arch, 'arm64');
    assert.equal(c.local, false);
    assert.equal(c.stage, 'dev');
    assert.equal(c.redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(c.lambdaDir, path.resolve(INFRA_DIR, '..', 'target', 'lambda'));
    assert.equal(c.throttleRateLimit, DEFAULTS.throttleRateLimit);
    assert.equal(c.throttleBurstLimit, DEFAULTS.throttleBurstLimit);
    assert.equal(c.redisShards, 3);
    assert.equal(c.redisReplicasPerShard, 1);
    assert.equal(c.natGateways, 0);
    assert.equal(c.rateUserCapacity, 5);
    assert.equal(c.rateUserRefillPerSec, 1);
    assert.equal(c.rateIpCapacity, 50);
    assert.equal(c.rateIpRefillPerSec, 10);
    assert.equal(c.soldOutCacheMs, 500);
    assert.equal(c.localJwt, undefined, 'no JWT authorizer on AWS (Cognito)');
  });

  it('reads -c strings (and cdk.json booleans/numbers)', () => {
    const c = cfg({ arch: 'x86_64', local: 'true', jwtPublicKeyFile: testPublicKeyFile(), redisUrl: 'redis://127.0.0.1:7000', stage: 'qa', lambdaDir: '/tmp/x', throttleRateLimit: '10' });
    assert.equal(c.arch, 'x86_64');
    assert.equal(c.local, true);
    assert.equal(c.redisUrl, 'redis://127.0.0.1:7000');
    assert.equal(c.stage, 'qa');
    assert.equal(c.lambdaDir, '/tmp/x');
    assert.equal(c.throttleRateLimit, 10);
    assert.equal(cfg({ local: true, jwtPublicKeyFile: testPublicKeyFile() }).local, true);
    assert.equal(cfg({ local: 'false' }).local, false);
    assert.equal(cfg({ redisShards: 2 }).redisShards, 2);
  });

  it('relative lambdaDir is resolved against infra/, not the working directory', () => {
    assert.equal(cfg({ lambdaDir: 'build' }).lambdaDir, path.join(INFRA_DIR, 'build'));
  });

  it('rejects bad values instead of guessing', () => {
    assert.throws(() => cfg({ arch: 'aarch64' }), /arch/);
    assert.throws(() => cfg({ local: 'yes' }), /local/);
    assert.throws(() => cfg({ stage: 'dev/1' }), /stage/);
    assert.throws(() => cfg({ throttleRateLimit: 'fast' }), /throttleRateLimit/);
    assert.throws(() => cfg({ redisReplicasPerShard: '0' }), /redisReplicasPerShard/);
    assert.throws(() => cfg({ rateUserCapacity: '0' }), /rateUserCapacity/);
    assert.throws(() => cfg({ rateIpCapacity: '1.5' }), /rateIpCapacity/);
    assert.throws(() => cfg({ rateUserRefillPerSec: '0' }), /rateUserRefillPerSec/);
    assert.throws(() => cfg({ rateIpRefillPerSec: 'lots' }), /rateIpRefillPerSec/);
    assert.throws(() => cfg({ soldOutCacheMs: '-1' }), /soldOutCacheMs/);
    const local = { local: 'true', jwtPublicKeyFile: testPublicKeyFile() };
    assert.throws(() => cfg({ ...local, awsFaultProxyUrl: 'http://10.0.0.5:4567' }), /loopback/);
    assert.throws(() => cfg({ ...local, awsFaultProxyUrl: 'https://127.0.0.1:4567' }), /loopback/);
    assert.throws(() => cfg({ ...local, awsFaultProxyUrl: 'proxy' }), /awsFaultProxyUrl/);
  });

  it('awsFaultProxyUrl: a loopback URL in local mode, without its trailing slash; never on AWS', () => {
    const local = { local: 'true', jwtPublicKeyFile: testPublicKeyFile() };
    assert.equal(cfg({ ...local, awsFaultProxyUrl: 'http://127.0.0.1:4567/' }).awsFaultProxyUrl, 'http://127.0.0.1:4567');
    assert.equal(cfg(local).awsFaultProxyUrl, undefined);
    assert.equal(cfg({ awsFaultProxyUrl: 'http://127.0.0.1:4567' }).awsFaultProxyUrl, undefined);
  });

  it('rate limits and the sold-out cache come from context', () => {
    const c = cfg({
      rateUserCapacity: '3',
      rateUserRefillPerSec: '0.5',
      rateIpCapacity: '100000',
      rateIpRefillPerSec: 10000,
      soldOutCacheMs: '0',
    });
    assert.equal(c.rateUserCapacity, 3);
    assert.equal(c.rateUserRefillPerSec, 0.5);
    assert.equal(c.rateIpCapacity, 100000);
    assert.equal(c.rateIpRefillPerSec, 10000);
    assert.equal(c.soldOutCacheMs, 0);
  });
});

describe('context: local JWT authorizer', () => {
  it('local mode requires jwtPublicKeyFile, with a clear message', () => {
    assert.throws(() => cfg({ local: 'true' }), /context "jwtPublicKeyFile" is required with local=true/);
    assert.throws(() => cfg({ local: 'true', jwtPublicKeyFile: '' }), /jwtPublicKeyFile" is required/);
  });

  it('reads the PEM; issuer and audience default to flashsale-local / flashsale-api', () => {
    const c = cfg({ local: 'true', jwtPublicKeyFile: testPublicKeyFile() });
    assert.equal(c.localJwt?.publicKeyPem, testKeyPair().publicPem);
    assert.equal(c.localJwt?.publicKeyFile, testPublicKeyFile());
    assert.equal(c.localJwt?.issuer, 'flashsale-local');
    assert.equal(c.localJwt?.audience, 'flashsale-api');
    const custom = cfg({ local: 'true', jwtPublicKeyFile: testPublicKeyFile(), jwtIssuer: 'me', jwtAudience: 'you' });
    assert.equal(custom.localJwt?.issuer, 'me');
    assert.equal(custom.localJwt?.audience, 'you');
  });

  it('a relative jwtPublicKeyFile is resolved against infra/', () => {
    const rel = path.relative(INFRA_DIR, testPublicKeyFile());
    assert.equal(cfg({ local: 'true', jwtPublicKeyFile: rel }).localJwt?.publicKeyFile, testPublicKeyFile());
  });

  it('is ignored on AWS (Cognito), even when given', () => {
    assert.equal(cfg({ jwtPublicKeyFile: '/nonexistent.pem' }).localJwt, undefined);
  });

  it('refuses a missing file, a private key and a non-key', () => {
    const dir = tempDir('badpem');
    const privateFile = path.join(dir, 'private.pem');
    fs.writeFileSync(privateFile, testKeyPair().privatePem);
    const junkFile = path.join(dir, 'junk.pem');
    fs.writeFileSync(junkFile, '-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n');
    const textFile = path.join(dir, 'text.pem');
    fs.writeFileSync(textFile, 'hello');
    assert.throws(() => cfg({ local: 'true', jwtPublicKeyFile: path.join(dir, 'nope.pem') }), /cannot read .*nope\.pem/);
    assert.throws(() => cfg({ local: 'true', jwtPublicKeyFile: privateFile }), /holds a private key/);
    assert.throws(() => cfg({ local: 'true', jwtPublicKeyFile: textFile }), /not a PEM public key/);
    assert.throws(() => cfg({ local: 'true', jwtPublicKeyFile: junkFile }), /not a valid public key/);
  });

  it('node type: memory-optimised for prod, overridable', () => {
    assert.equal(cfg({ stage: 'prod' }).redisNodeType, 'cache.r7g.large');
    assert.equal(cfg({ redisNodeType: 'cache.r7g.xlarge' }).redisNodeType, 'cache.r7g.xlarge');
  });
});

describe('context: payments and expiry', () => {
  const local = (ctx: Record<string, unknown> = {}) => cfg({ local: 'true', jwtPublicKeyFile: testPublicKeyFile(), ...ctx });

  it('AWS: Stripe API, keys from the Secrets Manager secret flashsale/stripe (no key in the config)', () => {
    const p = cfg({}).payments;
    assert.deepEqual(p, {
      apiBase: 'https://api.stripe.com',
      secretName: 'flashsale/stripe',
      chargeTimeoutSeconds: 600,
      chargeHeartbeatSeconds: 300,
      refundRecheckSeconds: 300,
      breakerFailureThreshold: 5,
      breakerCooldownMs: 30000,
    });
    assert.equal(cfg({ stripeSecretName: 'shop/stripe-live' }).payments.secretName, 'shop/stripe-live');
  });

  it('AWS: refuses Stripe keys from context (they would land in the template)', () => {
    assert.throws(() => cfg({ stripeSecretKey: 'sk_live_123' }), /on AWS the Stripe keys come from Secrets Manager/);
    assert.throws(() => cfg({ stripeWebhookSecrets: 'whsec_123' }), /on AWS the Stripe keys come from Secrets Manager/);
  });

  it('LocalStack: the payment sandbox and its fixed test keys by default, overridable', () => {
    const p = local().payments;
    assert.deepEqual(p, {
      apiBase: 'http://127.0.0.1:12111',
      secretKey: 'sk_test_sandbox',
      webhookSecrets: 'whsec_sandbox',
      chargeTimeoutSeconds: 600,
      chargeHeartbeatSeconds: 300,
      refundRecheckSeconds: 300,
      breakerFailureThreshold: 5,
      breakerCooldownMs: 30000,
    });
    const custom = local({
      stripeApiBase: 'http://127.0.0.1:9999',
      stripeSecretKey: 'sk_test_other',
      stripeWebhookSecrets: 'whsec_a,whsec_b',
      chargeTimeoutSeconds: '30',
      chargeHeartbeatSeconds: '15',
      refundRecheckSeconds: '5',
      breakerFailureThreshold: '3',
      breakerCooldownMs: '5000',
    }).payments;
    assert.equal(custom.apiBase, 'http://127.0.0.1:9999');
    assert.equal(custom.secretKey, 'sk_test_other');
    assert.equal(custom.webhookSecrets, 'whsec_a,whsec_b');
    assert.equal(custom.chargeTimeoutSeconds, 30);
    assert.equal(custom.chargeHeartbeatSeconds, 15);
    assert.equal(custom.refundRecheckSeconds, 5);
    assert.throws(() => local({ refundRecheckSeconds: '0' }), /refundRecheckSeconds/);
    assert.equal(custom.breakerFailureThreshold, 3);
    assert.equal(custom.breakerCooldownMs, 5000);
    assert.equal(custom.secretName, undefined);
  });

  it('refuses a heartbeat that is not below the charge timeout', () => {
    for (const ctx of [
      { chargeTimeoutSeconds: '300', chargeHeartbeatSeconds: '300' },
      { chargeTimeoutSeconds: '30', chargeHeartbeatSeconds: '31' },
      { chargeHeartbeatSeconds: '600' }, // default timeout 600
      { chargeTimeoutSeconds: '300' }, // default heartbeat 300
    ]) {
      assert.throws(() => cfg(ctx), /"chargeHeartbeatSeconds" must be below "chargeTimeoutSeconds"/, JSON.stringify(ctx));
      assert.throws(() => local(ctx), /"chargeHeartbeatSeconds" must be below "chargeTimeoutSeconds"/, JSON.stringify(ctx));
    }
    assert.equal(cfg({ chargeTimeoutSeconds: '30', chargeHeartbeatSeconds: '29' }).payments.chargeHeartbeatSeconds, 29);
  });

  it('rejects bad payment and expiry values', () => {
    assert.throws(() => cfg({ chargeTimeoutSeconds: '0' }), /chargeTimeoutSeconds/);
    assert.throws(() => cfg({ chargeHeartbeatSeconds: '0' }), /chargeHeartbeatSeconds/);
    assert.throws(() => cfg({ breakerFailureThreshold: '0' }), /breakerFailureThreshold/);
    assert.throws(() => cfg({ breakerCooldownMs: '1.5' }), /breakerCooldownMs/);
    assert.throws(() => cfg({ expiryEveryMinutes: '0' }), /expiryEveryMinutes/);
    assert.throws(() => cfg({ expiryConcurrency: '0' }), /expiryConcurrency/);
    assert.throws(() => cfg({ expiryPageSize: 'all' }), /expiryPageSize/);
    assert.throws(() => cfg({ expiryBudgetMs: '999' }), /expiryBudgetMs/);
    assert.throws(() => cfg({ holdGraceMs: '-1' }), /holdGraceMs/);
  });

  it('expiry: every minute, 32 in flight, pages of 500, 45 s budget, 60 s hold grace; from context', () => {
    assert.deepEqual(cfg({}).expiry, { everyMinutes: 1, concurrency: 32, pageSize: 500, budgetMs: 45000, holdGraceMs: 60000 });
    assert.deepEqual(
      cfg({ expiryEveryMinutes: '5', expiryConcurrency: '4', expiryPageSize: '50', expiryBudgetMs: '1000', holdGraceMs: '0' }).expiry,
      { everyMinutes: 5, concurrency: 4, pageSize: 50, budgetMs: 1000, holdGraceMs: 0 },
    );
  });
});
