// The waiting room's infrastructure: its routes, the ticket key (never a plain value on AWS),
// the status's stage cache on AWS (none on LocalStack, which has no stage cache), and the
// crowd's capacity pool.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { configFromContext } from '../lib/config';
import { resourcesOf, synth, testPublicKeyFile } from './helpers';

const AWS = {};
const LOCAL = { local: 'true', arch: 'x86_64' };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function queueMethods(context: Record<string, string>): Record<string, any> {
  const { template } = synth(context);
  const resources = new Map(resourcesOf(template, 'AWS::ApiGateway::Resource'));
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const out: Record<string, any> = {};
  for (const [, m] of resourcesOf(template, 'AWS::ApiGateway::Method')) {
    const resource = resources.get(m.Properties.ResourceId?.Ref);
    if (resource?.Properties.PathPart === 'queue') out[m.Properties.HttpMethod] = m.Properties;
  }
  return out;
}

describe('waiting room (infrastructure)', () => {
  it('join is authorized, the status public; each has its own method limit, and the crowd\'s routes together stay below the stage limit', () => {
    const methods = queueMethods(AWS);
    assert.deepEqual(Object.keys(methods).sort(), ['GET', 'POST']);
    assert.equal(methods.POST.AuthorizationType, 'COGNITO_USER_POOLS');
    assert.equal(methods.GET.AuthorizationType, 'NONE');
    const { template } = synth(AWS);
    const [, stage] = resourcesOf(template, 'AWS::ApiGateway::Stage')[0];
    const settings = stage.Properties.MethodSettings;
    const join = settings.find((s: { ResourcePath: string; HttpMethod: string }) => s.HttpMethod === 'POST' && s.ResourcePath === '/~1sales~1{saleId}~1queue');
    const reserve = settings.find((s: { ResourcePath: string; HttpMethod: string }) => s.HttpMethod === 'POST' && s.ResourcePath === '/~1sales~1{saleId}~1reservations');
    const status = settings.find((s: { ResourcePath: string; HttpMethod: string }) => s.HttpMethod === 'GET' && s.ResourcePath === '/~1sales~1{saleId}~1queue');
    assert.ok(join && reserve && status);
    assert.equal(join.ThrottlingRateLimit, 1500);
    assert.equal(status.ThrottlingRateLimit, 1500);
    const pay = settings.filter((s: { ResourcePath: string }) => s.ResourcePath.includes('payment'));
    const stageWide = settings.find((s: { ResourcePath: string }) => s.ResourcePath === '/*');
    const sum = (k: string) =>
      reserve[k] + join[k] + status[k] + pay.reduce((n: number, s: Record<string, number>) => n + s[k], 0);
    assert.ok(sum('ThrottlingRateLimit') <= stageWide.ThrottlingRateLimit);
    assert.ok(sum('ThrottlingBurstLimit') <= stageWide.ThrottlingBurstLimit);
    assert.throws(() => synth({ queueRateLimit: '3000' }), /must fit in the stage/);
    // A small stage scales every default share down with it (and never to 0).
    assert.doesNotThrow(() => synth({ throttleRateLimit: '12', throttleBurstLimit: '12' }));
  });

  it('AWS: the status is served from the stage cache, one entry per sale, 1 s by default', () => {
    const { template } = synth(AWS);
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      CacheClusterEnabled: true,
      CacheClusterSize: '0.5',
      MethodSettings: Match.arrayWith([
        Match.objectLike({ HttpMethod: 'GET', ResourcePath: '/~1sales~1{saleId}~1queue', CachingEnabled: true, CacheTtlInSeconds: 1 }),
      ]),
    });
    const { GET } = queueMethods(AWS);
    assert.deepEqual(GET.RequestParameters, { 'method.request.path.saleId': true });
    assert.deepEqual(GET.Integration.CacheKeyParameters, ['method.request.path.saleId']);
    // Nothing else is cached: the other methods' settings carry no caching.
    const [, stage] = resourcesOf(template, 'AWS::ApiGateway::Stage')[0];
    const cachedPaths = stage.Properties.MethodSettings.filter((s: { CachingEnabled?: boolean }) => s.CachingEnabled).map(
      (s: { ResourcePath: string; HttpMethod: string }) => `${s.HttpMethod} ${s.ResourcePath}`,
    );
    assert.deepEqual(cachedPaths, ['GET /~1sales~1{saleId}~1queue']);
    // 0 turns it off, cluster and all.
    const off = synth({ waitingRoomStatusCacheSeconds: '0' }).template;
    const [, offStage] = resourcesOf(off, 'AWS::ApiGateway::Stage')[0];
    assert.equal(offStage.Properties.CacheClusterEnabled, undefined);
  });

  it('LocalStack: no stage cache (its community edition has none), and asking for one is refused', () => {
    const { template } = synth(LOCAL);
    const [, stage] = resourcesOf(template, 'AWS::ApiGateway::Stage')[0];
    assert.equal(stage.Properties.CacheClusterEnabled, undefined);
    const get = (ctx: Record<string, string>) => (k: string) => ctx[k];
    assert.throws(
      () => configFromContext(get({ local: 'true', jwtPublicKeyFile: testPublicKeyFile(), waitingRoomStatusCacheSeconds: '1' })),
      /no API Gateway stage cache/,
    );
  });

  it('the ticket key: a Secrets Manager dynamic reference on AWS, the fixed test key locally', () => {
    const key = (context: Record<string, string>, fn: string) => {
      const { template } = synth(context);
      const found = resourcesOf(template, 'AWS::Lambda::Function').find(([, f]) => f.Properties.FunctionName === `Flashsale-dev-${fn}`);
      return JSON.stringify(found![1].Properties.Environment.Variables.WAITING_ROOM_KEY);
    };
    for (const fn of ['reserve', 'waiting-room']) {
      assert.match(key(AWS, fn), /resolve:secretsmanager:flashsale\/waiting-room:SecretString:ticket_key/);
      assert.ok(JSON.parse(key(LOCAL, fn)).length >= 32, 'locally a key of 32 bytes or more');
    }
  });

  it('its own pool: the waiting room has reserved concurrency of its own (100), and all pools leave the account 100 unreserved', () => {
    const { template } = synth(AWS);
    const fns = new Map(resourcesOf(template, 'AWS::Lambda::Function').map(([, f]) => [f.Properties.FunctionName, f.Properties]));
    assert.equal(fns.get('Flashsale-dev-waiting-room').ReservedConcurrentExecutions, 100);
    const reserved = [...fns.values()].reduce((sum, f) => sum + (f.ReservedConcurrentExecutions ?? 0), 0);
    assert.ok(reserved <= 1000 - 100, `${reserved} reserved of a default account's 1,000`);
  });
});
