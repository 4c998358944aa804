import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { configFromContext, DEFAULTS, INFRA_DIR } from '../lib/config';

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
  });

  it('reads -c strings (and cdk.json booleans/numbers)', () => {
    const c = cfg({ arch: 'x86_64', local: 'true', redisUrl: 'redis://127.0.0.1:7000', stage: 'qa', lambdaDir: '/tmp/x', throttleRateLimit: '10' });
    assert.equal(c.arch, 'x86_64');
    assert.equal(c.local, true);
    assert.equal(c.redisUrl, 'redis://127.0.0.1:7000');
    assert.equal(c.stage, 'qa');
    assert.equal(c.lambdaDir, '/tmp/x');
    assert.equal(c.throttleRateLimit, 10);
    assert.equal(cfg({ local: true }).local, true);
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
  });

  it('node type: memory-optimised for prod, overridable', () => {
    assert.equal(cfg({ stage: 'prod' }).redisNodeType, 'cache.r7g.large');
    assert.equal(cfg({ redisNodeType: 'cache.r7g.xlarge' }).redisNodeType, 'cache.r7g.xlarge');
  });
});
