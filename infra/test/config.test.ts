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
