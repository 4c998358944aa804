import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** CPU architecture of the Lambda functions (must match the `cargo lambda build` target). */
export type Arch = 'arm64' | 'x86_64';

/** Everything the stack needs to know that differs between deployments. */
export interface FlashsaleConfig {
  /** Deployment stage; also the API Gateway stage name. */
  readonly stage: string;
  /** Lambda CPU architecture. */
  readonly arch: Arch;
  /** True when deploying to LocalStack: no VPC, no ElastiCache, resources are destroyable. */
  readonly local: boolean;
  /** REDIS_URL handed to the functions in local mode (ignored on AWS, where ElastiCache is used). */
  readonly redisUrl: string;
  /** Absolute path of the folder holding `cargo lambda build` outputs (`<lambdaDir>/<name>/bootstrap`). */
  readonly lambdaDir: string;
  /** Stage-wide API Gateway throttling (steady-state requests per second). */
  readonly throttleRateLimit: number;
  /** Stage-wide API Gateway throttling (burst bucket size). */
  readonly throttleBurstLimit: number;
  /** ElastiCache node type (AWS mode only). */
  readonly redisNodeType: string;
  /** ElastiCache shards (node groups) in cluster mode (AWS mode only). */
  readonly redisShards: number;
  /** Replicas per shard (AWS mode only); at least 1 for automatic failover / Multi-AZ. */
  readonly redisReplicasPerShard: number;
  /** NAT gateways in the VPC (AWS mode only). 0 = VPC endpoints only, no internet egress. */
  readonly natGateways: number;
  /** Optional e-mail address subscribed to the alarm topic. */
  readonly alarmEmail?: string;
  /** Per-user token bucket of `reserve`: capacity (requests) and refill rate (requests/s). */
  readonly rateUserCapacity: number;
  readonly rateUserRefillPerSec: number;
  /** Per-IP token bucket of `reserve` (locally every client is 127.0.0.1: pass big numbers). */
  readonly rateIpCapacity: number;
  readonly rateIpRefillPerSec: number;
  /** How long `reserve` trusts a cached "sold out" answer (ms). */
  readonly soldOutCacheMs: number;
  /**
   * Local mode only: the identity the Lambda TOKEN authorizer checks JWTs against (LocalStack's
   * community edition has no Cognito). Undefined on AWS, where a Cognito user pool is used.
   */
  readonly localJwt?: LocalJwtConfig;
  /**
   * Local mode only (`-c authorizerViaApi=true`, set by deploy-local.sh): LocalStack's community
   * CloudFormation has no provider for AWS::ApiGateway::Authorizer (it "creates" it as a no-op and
   * the methods referring to it then fail). With this flag the stack creates no authorizer
   * resource, leaves the authorized methods open in the template, and outputs what
   * deploy-local.sh needs to attach the TOKEN authorizer through the API Gateway API right after
   * the deploy. The handlers refuse requests without an authorizer identity (401) regardless.
   */
  readonly authorizerViaApi: boolean;
  /**
   * How long API Gateway keeps an authorizer's result per token, in seconds (`resultsCacheTtl`;
   * 300, API Gateway's own default; 0 turns caching off). A token whose user was disabled keeps
   * working for at most this long; that adds nothing to what a JWT already allows, since API
   * Gateway checks a Cognito ID token's signature and expiry (one hour by default), never its
   * revocation. Without the cache every call invokes the authorizer (locally: two Lambda
   * invocations per request).
   */
  readonly authorizerCacheSeconds: number;
  /**
   * Local mode only (`-c awsFaultProxyUrl=http://127.0.0.1:4567`, set by deploy-local.sh): the
   * functions reach DynamoDB and Step Functions through this endpoint, the fault proxy that
   * localstack/env.sh starts in front of LocalStack, so the chaos suite can throttle, fail, slow
   * or lose their answers. Undefined: the SDK's default endpoint (LocalStack's, or AWS's).
   */
  readonly awsFaultProxyUrl?: string;
  /** The payment provider (Stripe's API, or the local sandbox that speaks it). */
  readonly payments: PaymentsConfig;
  /** The bot defence in front of reserve (shared/src/bot). */
  readonly bot: BotConfig;
  /** The WAF edge in front of the API stage (AWS only; edge.ts). */
  readonly edge: EdgeConfig;
  /** The waiting rooms' ticket key and the status cache (shared/src/waiting_room). */
  readonly waitingRoom: WaitingRoomConfig;
  /** Telling the buyer: the mail sender, the push platform application (shared/src/notify). */
  readonly notifications: NotificationsConfig;
  /** The expiry cleanup: how often the scheduled rule fires and how the run is bounded. */
  readonly expiry: ExpiryConfig;
  /** Who gets which share of the API's and Lambda's capacity (see CapacityConfig). */
  readonly capacity: CapacityConfig;
}

/**
 * Capacity kept apart so the crowd at reserve cannot starve the payment path. API Gateway's
 * stage throttle and the account's Lambda concurrency are shared by every method and function:
 * without limits of their own, a sale's opening burst at reserve would get the provider's
 * webhooks and the saga's steps throttled until heartbeats expire and good charges are refunded.
 * - reserve's method is throttled below the stage limit, so the stage always has room for the
 *   payment routes (`reserveRateLimit` < `throttleRateLimit`);
 * - the payment routes (pay, webhook) have method limits of their own;
 * - Lambda reserved concurrency caps reserve (the seed's concurrency limit at the service
 *   layer) and guarantees pay, the webhook intake and the saga steps their own executions.
 */
export interface CapacityConfig {
  readonly reserveRateLimit: number;
  readonly reserveBurstLimit: number;
  readonly paymentRateLimit: number;
  readonly paymentBurstLimit: number;
  /**
   * Method limit of each waiting-room route (join and status, a bucket each). Reserve's and
   * both of these together stay below the stage limit, so the crowd's routes never use up the
   * payment path's share.
   */
  readonly queueRateLimit: number;
  readonly queueBurstLimit: number;
  /** Reserved concurrency of `reserve` (a cap as much as a guarantee). */
  readonly reserveConcurrency: number;
  /** Reserved concurrency of each payment-path function (pay, payment-webhook, saga-steps). */
  readonly paymentConcurrency: number;
  /**
   * Reserved concurrency of the waiting room (join and status). All pools together must leave
   * the account's unreserved 100 (an account's default limit is 1,000: 400 + 3 × 50 + 100).
   */
  readonly queueConcurrency: number;
}

/**
 * Payment settings. Locally the keys are the sandbox's fixed test values. On AWS the two secrets
 * come from a Secrets Manager secret (`stripeSecretName`, JSON keys `secret_key` and
 * `webhook_secrets`) as CloudFormation dynamic references: they never appear in the template.
 */
export interface PaymentsConfig {
  readonly apiBase: string;
  /** Local mode: the value itself; AWS: undefined (read from `secretName`). */
  readonly secretKey?: string;
  readonly webhookSecrets?: string;
  readonly secretName?: string;
  /** Charge step: overall timeout and heartbeat of the wait for the provider's webhook. */
  readonly chargeTimeoutSeconds: number;
  readonly chargeHeartbeatSeconds: number;
  /**
   * Compensation: seconds between two looks at a charge that was still `processing` when the
   * payment failed (it cannot be cancelled; it is refunded once it succeeds).
   */
  readonly refundRecheckSeconds: number;
  readonly breakerFailureThreshold: number;
  readonly breakerCooldownMs: number;
}

/**
 * Bot defence settings (seed 004 flow 10; shared/src/bot/config.rs reads them). The two HMAC
 * keys that sign challenges: locally fixed test values; on AWS a Secrets Manager secret
 * (`botSecretName`, JSON keys `signature_secret` and `key_secret`) as dynamic references.
 */
export interface BotConfig {
  readonly enabled: boolean;
  /**
   * Block the source address too after a failed challenge (the seed's rule). Off by default:
   * any account can send a wrong solution, so an address block lets one account lock a carrier
   * NAT, an office or a proxy in front of the API out for an hour; and locally every client is
   * 127.0.0.1.
   */
  readonly blockAddresses: boolean;
  /** The score that is challenged (1-100; the seed: above 80). */
  readonly challengeAt: number;
  /**
   * `altcha` (default): proof of work verified in the function, no outbound call. `turnstile`:
   * Cloudflare's hosted CAPTCHA, verified with a siteverify call to the internet, so AWS only
   * and with NAT gateways (`natGateways` ≥ 1); its secret key is `turnstile_secret_key` in the
   * bot secret.
   */
  readonly challengeProvider: 'altcha' | 'turnstile';
  /** Turnstile's public site key (context `turnstileSiteKey`), with the turnstile provider. */
  readonly turnstileSiteKey?: string;
  readonly signatureSecret?: string;
  readonly keySecret?: string;
  readonly secretName?: string;
}

/**
 * Bot Control's inspection level, or none. TARGETED (behind `wafBotControl=targeted`) runs in
 * count mode: its findings become signals, it blocks and challenges nothing (edge.ts says why).
 */
export type BotInspection = 'off' | 'COMMON' | 'TARGETED';

/**
 * The WAF edge (infra/lib/edge.ts). Context: `waf` (default on for AWS; LocalStack has no WAF),
 * `wafIpRequestsPerSec` (default 10, the seed's per-IP rate), `wafRateWindowSec` (60, 120, 300
 * or 600; default 60), `wafBotControl` (`off`, `common` (default) or `targeted`: the targeted
 * level in count mode, its findings passed on as one more signal; its own actions would need
 * AWS's JavaScript SDK tokens in the front end and challenge API calls).
 */
export interface EdgeConfig {
  readonly enabled: boolean;
  readonly ipRequestsPerSec: number;
  readonly rateWindowSec: 60 | 120 | 300 | 600;
  readonly botInspection: BotInspection;
  /** Paths (their ends) that skip the per-IP rule and Bot Control: the signed payment webhook. */
  readonly exemptPathSuffixes: readonly string[];
}

/**
 * The waiting room (seed 004 flow 8). Its queue tickets are signed with one HMAC key: locally a
 * fixed test value; on AWS a Secrets Manager secret (`waitingRoomSecretName`, JSON key
 * `ticket_key`, at least 32 bytes) as a dynamic reference. The public status
 * (`GET /sales/{saleId}/queue`) is cached by API Gateway's stage cache for `statusCacheSeconds`
 * per sale (context `waitingRoomStatusCacheSeconds`, default 1 on AWS; 0 turns the cache
 * off; LocalStack's community edition has no stage cache, so 0 there), so a crowd polling it
 * costs one Lambda call per sale per second, not one per buyer.
 */
export interface WaitingRoomConfig {
  readonly ticketKey?: string;
  readonly secretName?: string;
  readonly statusCacheSeconds: number;
}

/**
 * Notifications (shared/src/notify). `mailSender` (context; default
 * `notifications@example.com`): the SES identity emails come from; on AWS the stack declares it
 * as an SES email identity (SES mails its owner a verification link on deploy; out of the SES
 * sandbox only after AWS grants production access). Locally deploy-local.sh verifies it in
 * LocalStack's SES. `pushPlatformApplicationArn` (context): the SNS platform application
 * (FCM or APNs) device endpoints are made in; CloudFormation has no resource for one, so it is
 * created outside the stack (locally by deploy-local.sh); without it, device registration
 * answers 501 `push-not-configured` and buyers get email only. `notifierConcurrency`: the event source's
 * maximum concurrency (default 5), so SES's sending rate (14 a second in a new account) holds.
 */
export interface NotificationsConfig {
  readonly mailSender: string;
  readonly pushPlatformApplicationArn?: string;
  readonly notifierConcurrency: number;
  /**
   * Messages per notifier invocation (`notifierBatchSize`, default 10). Above 10, SQS event
   * sources need a batching window: then 1 s. LocalStack runs one poller per mapping, one
   * batch a second, so deploy-local.sh asks for 100 to drain a backlog at its pace.
   */
  readonly notifierBatchSize: number;
}

export interface ExpiryConfig {
  /** Minutes between two runs of the cleanup (EventBridge rule `rate(n minutes)`). */
  readonly everyMinutes: number;
  readonly concurrency: number;
  readonly pageSize: number;
  /** Time budget of one run (ms); the function's timeout leaves a margin above it. */
  readonly budgetMs: number;
  /** Age after which a Redis hold without a durable record is released (ms). */
  readonly holdGraceMs: number;
}

/** What the local `authorizer` function verifies: RS256 signature, issuer and audience. */
export interface LocalJwtConfig {
  /** The public key, as PEM text (SPKI, `-----BEGIN PUBLIC KEY-----`). */
  readonly publicKeyPem: string;
  /** Absolute path the PEM was read from. */
  readonly publicKeyFile: string;
  readonly issuer: string;
  readonly audience: string;
}

/** The folder of this CDK app (infra/). Relative paths in context are resolved against it. */
export const INFRA_DIR = path.resolve(__dirname, '..');
/** The repository root. */
export const REPO_DIR = path.resolve(INFRA_DIR, '..');

export const DEFAULTS = {
  stage: 'dev',
  arch: 'arm64' as Arch,
  redisUrl: 'redis://127.0.0.1:6379',
  lambdaDir: '../target/lambda',
  // API Gateway's default account quota per region (10,000 requests/s, burst 5,000).
  throttleRateLimit: 10000,
  throttleBurstLimit: 5000,
  redisShards: 3,
  redisReplicasPerShard: 1,
  natGateways: 0,
  rateUserCapacity: 5,
  rateUserRefillPerSec: 1,
  rateIpCapacity: 50,
  rateIpRefillPerSec: 10,
  soldOutCacheMs: 500,
  jwtIssuer: 'flashsale-local',
  jwtAudience: 'flashsale-api',
  stripeApiBase: 'https://api.stripe.com',
  // The payment sandbox (tools/payment-sandbox) that ./dev up starts next to LocalStack.
  sandboxApiBase: 'http://127.0.0.1:12111',
  sandboxSecretKey: 'sk_test_sandbox',
  sandboxWebhookSecret: 'whsec_sandbox',
  stripeSecretName: 'flashsale/stripe',
  botSecretName: 'flashsale/bot',
  botChallengeAt: 80,
  wafIpRequestsPerSec: 10,
  wafRateWindowSec: 60,
  wafBotControl: 'common',
  // Local test keys for the bot challenge's HMACs (LocalStack only; never used on AWS).
  localBotSignatureSecret: 'local-bot-signature-secret',
  localBotKeySecret: 'local-bot-key-secret',
  waitingRoomSecretName: 'flashsale/waiting-room',
  mailSender: 'notifications@example.com',
  notifierConcurrency: 5,
  // LocalStack only: the queue tickets' HMAC key (32 bytes or more).
  localWaitingRoomTicketKey: 'local-waiting-room-ticket-key-0123456789',
  waitingRoomStatusCacheSeconds: 1,
  chargeTimeoutSeconds: 600,
  chargeHeartbeatSeconds: 300,
  refundRecheckSeconds: 300,
  breakerFailureThreshold: 5,
  breakerCooldownMs: 30000,
  expiryEveryMinutes: 1,
  expiryConcurrency: 32,
  expiryPageSize: 500,
  expiryBudgetMs: 45000,
  holdGraceMs: 60000,
  reserveRateLimit: 4000,
  reserveBurstLimit: 1500,
  paymentRateLimit: 500,
  paymentBurstLimit: 200,
  // Join and status each: a pre-queue of 100,000 re-joins at the opening in about a minute.
  queueRateLimit: 1500,
  queueBurstLimit: 500,
  reserveConcurrency: 400,
  paymentConcurrency: 50,
  queueConcurrency: 100,
  authorizerCacheSeconds: 300,
} as const;

/** Reads one context value (`-c key=value` or cdk.json "context"). */
export type ContextGetter = (key: string) => unknown;

/** `wanted`, or `fraction` of the stage's `limit` when that is smaller; at least 1. */
function share(wanted: number, limit: number, fraction: number): number {
  return Math.max(1, Math.min(wanted, Math.floor(limit * fraction)));
}

function str(get: ContextGetter, key: string): string | undefined {
  const v = get(key);
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new Error(`context "${key}" must be a string, got ${JSON.stringify(v)}`);
}

function bool(get: ContextGetter, key: string): boolean {
  const v = str(get, key);
  if (v === undefined) return false;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new Error(`context "${key}" must be "true" or "false", got "${v}"`);
}

function int(get: ContextGetter, key: string, dflt: number, min: number): number {
  const v = str(get, key);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`context "${key}" must be an integer >= ${min}, got "${v}"`);
  }
  return n;
}

/** A finite number > min (refill rates may be fractional, e.g. 0.5 tokens/s). */
function positive(get: ContextGetter, key: string, dflt: number): number {
  const v = str(get, key);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    throw new Error(`context "${key}" must be a number > 0, got "${v}"`);
  }
  return n;
}

/** An http URL on the loopback interface (local endpoints must never leave the machine). */
function loopbackUrl(get: ContextGetter, key: string): string | undefined {
  const v = str(get, key);
  if (v === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new Error(`context "${key}" must be a URL, got "${v}"`);
  }
  if (url.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
    throw new Error(`context "${key}" must be an http URL on the loopback interface, got "${v}"`);
  }
  return v.replace(/\/$/, '');
}

/**
 * Reads the public key of the local JWT authorizer. Refuses a missing file, a private key (it
 * would end up in a Lambda environment variable) and anything that is not a PEM public key.
 */
function readPublicKey(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`context "jwtPublicKeyFile": cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  if (/PRIVATE KEY/.test(text)) {
    throw new Error(`context "jwtPublicKeyFile": ${file} holds a private key; pass the public key (openssl pkey -in private.pem -pubout)`);
  }
  if (!/-----BEGIN PUBLIC KEY-----/.test(text)) {
    throw new Error(`context "jwtPublicKeyFile": ${file} is not a PEM public key (-----BEGIN PUBLIC KEY-----)`);
  }
  try {
    crypto.createPublicKey(text);
  } catch (e) {
    throw new Error(`context "jwtPublicKeyFile": ${file} is not a valid public key: ${(e as Error).message}`);
  }
  return text;
}

/**
 * Builds the configuration from CDK context values:
 * `arch` (arm64 | x86_64), `local` ("true" for LocalStack), `redisUrl`, `lambdaDir`, `stage`,
 * and the optional tuning knobs `throttleRateLimit`, `throttleBurstLimit`, `redisNodeType`,
 * `redisShards`, `redisReplicasPerShard`, `natGateways`, `alarmEmail`, the rate limits of
 * `reserve` (`rateUserCapacity`, `rateUserRefillPerSec`, `rateIpCapacity`, `rateIpRefillPerSec`,
 * `soldOutCacheMs`) and, in local mode, the JWT authorizer's `jwtPublicKeyFile` (required),
 * `jwtIssuer` and `jwtAudience`.
 */
export function configFromContext(get: ContextGetter): FlashsaleConfig {
  const arch = str(get, 'arch') ?? DEFAULTS.arch;
  if (arch !== 'arm64' && arch !== 'x86_64') {
    throw new Error(`context "arch" must be "arm64" or "x86_64", got "${arch}"`);
  }
  const stage = str(get, 'stage') ?? DEFAULTS.stage;
  // API Gateway stage names: letters, digits, hyphen, underscore; also used in resource names.
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(stage)) {
    throw new Error(`context "stage" must match [A-Za-z0-9_-]{1,64}, got "${stage}"`);
  }
  const lambdaDir = path.resolve(INFRA_DIR, str(get, 'lambdaDir') ?? DEFAULTS.lambdaDir);
  const replicas = int(get, 'redisReplicasPerShard', DEFAULTS.redisReplicasPerShard, 1);
  const local = bool(get, 'local');
  let localJwt: LocalJwtConfig | undefined;
  if (local) {
    const file = str(get, 'jwtPublicKeyFile');
    if (file === undefined) {
      throw new Error(
        'context "jwtPublicKeyFile" is required with local=true: the path of the PEM public key the ' +
          'local JWT authorizer verifies tokens with (deploy-local.sh passes <repo>/.local/jwt/public.pem)',
      );
    }
    const publicKeyFile = path.resolve(INFRA_DIR, file);
    localJwt = {
      publicKeyPem: readPublicKey(publicKeyFile),
      publicKeyFile,
      issuer: str(get, 'jwtIssuer') ?? DEFAULTS.jwtIssuer,
      audience: str(get, 'jwtAudience') ?? DEFAULTS.jwtAudience,
    };
  }
  const throttleRateLimit = int(get, 'throttleRateLimit', DEFAULTS.throttleRateLimit, 1);
  const throttleBurstLimit = int(get, 'throttleBurstLimit', DEFAULTS.throttleBurstLimit, 1);
  const capacity: CapacityConfig = {
    // Defaults scale down with a smaller stage (never below 1), so the shares always fit.
    reserveRateLimit: int(get, 'reserveRateLimit', share(DEFAULTS.reserveRateLimit, throttleRateLimit, 0.4), 1),
    reserveBurstLimit: int(get, 'reserveBurstLimit', share(DEFAULTS.reserveBurstLimit, throttleBurstLimit, 0.3), 1),
    paymentRateLimit: int(get, 'paymentRateLimit', share(DEFAULTS.paymentRateLimit, throttleRateLimit, 0.05), 1),
    paymentBurstLimit: int(get, 'paymentBurstLimit', share(DEFAULTS.paymentBurstLimit, throttleBurstLimit, 0.04), 1),
    queueRateLimit: int(get, 'queueRateLimit', share(DEFAULTS.queueRateLimit, throttleRateLimit, 0.15), 1),
    queueBurstLimit: int(get, 'queueBurstLimit', share(DEFAULTS.queueBurstLimit, throttleBurstLimit, 0.1), 1),
    reserveConcurrency: int(get, 'reserveConcurrency', DEFAULTS.reserveConcurrency, 1),
    paymentConcurrency: int(get, 'paymentConcurrency', DEFAULTS.paymentConcurrency, 1),
    queueConcurrency: int(get, 'queueConcurrency', DEFAULTS.queueConcurrency, 1),
  };
  if (capacity.reserveRateLimit >= throttleRateLimit) {
    throw new Error(
      `context "reserveRateLimit" (${capacity.reserveRateLimit}) must stay below the stage's "throttleRateLimit" (${throttleRateLimit}), or the crowd at reserve can use up the payment path's share`,
    );
  }
  // Every method limit is a bucket of its own inside the stage's: reserve, the waiting room's
  // join and status, and the two payment routes (pay, webhook) must fit together, so the crowd
  // can never use up what the payment path is promised.
  for (const [what, rate, crowd] of [
    ['throttleRateLimit', throttleRateLimit, capacity.reserveRateLimit + 2 * capacity.queueRateLimit + 2 * capacity.paymentRateLimit],
    ['throttleBurstLimit', throttleBurstLimit, capacity.reserveBurstLimit + 2 * capacity.queueBurstLimit + 2 * capacity.paymentBurstLimit],
  ] as const) {
    if (crowd > rate) {
      throw new Error(
        `reserve + 2 x queue (join, status) + 2 x payment (pay, webhook) method limits (${crowd}) must fit in the stage's "${what}" (${rate}), or the crowd can use up the payment path's share`,
      );
    }
  }
  return {
    stage,
    arch,
    local,
    redisUrl: str(get, 'redisUrl') ?? DEFAULTS.redisUrl,
    lambdaDir,
    throttleRateLimit,
    throttleBurstLimit,
    capacity,
    // No burstable t4g nodes: their CPU credits run out exactly when a sale opens. Production gets
    // memory-optimised Graviton nodes, other stages the general-purpose size of the same family.
    redisNodeType: str(get, 'redisNodeType') ?? (stage === 'prod' ? 'cache.r7g.large' : 'cache.m7g.large'),
    redisShards: int(get, 'redisShards', DEFAULTS.redisShards, 1),
    redisReplicasPerShard: replicas,
    natGateways: int(get, 'natGateways', DEFAULTS.natGateways, 0),
    alarmEmail: str(get, 'alarmEmail'),
    rateUserCapacity: int(get, 'rateUserCapacity', DEFAULTS.rateUserCapacity, 1),
    rateUserRefillPerSec: positive(get, 'rateUserRefillPerSec', DEFAULTS.rateUserRefillPerSec),
    rateIpCapacity: int(get, 'rateIpCapacity', DEFAULTS.rateIpCapacity, 1),
    rateIpRefillPerSec: positive(get, 'rateIpRefillPerSec', DEFAULTS.rateIpRefillPerSec),
    soldOutCacheMs: int(get, 'soldOutCacheMs', DEFAULTS.soldOutCacheMs, 0),
    localJwt,
    authorizerViaApi: local && bool(get, 'authorizerViaApi'),
    authorizerCacheSeconds: int(get, 'authorizerCacheSeconds', DEFAULTS.authorizerCacheSeconds, 0),
    awsFaultProxyUrl: local ? loopbackUrl(get, 'awsFaultProxyUrl') : undefined,
    payments: paymentsFromContext(get, local),
    bot: botFromContext(get, local, int(get, 'natGateways', DEFAULTS.natGateways, 0)),
    edge: edgeFromContext(get, local),
    waitingRoom: waitingRoomFromContext(get, local),
    notifications: notificationsFromContext(get),
    expiry: {
      everyMinutes: int(get, 'expiryEveryMinutes', DEFAULTS.expiryEveryMinutes, 1),
      concurrency: int(get, 'expiryConcurrency', DEFAULTS.expiryConcurrency, 1),
      pageSize: int(get, 'expiryPageSize', DEFAULTS.expiryPageSize, 1),
      budgetMs: int(get, 'expiryBudgetMs', DEFAULTS.expiryBudgetMs, 1000),
      holdGraceMs: int(get, 'holdGraceMs', DEFAULTS.holdGraceMs, 0),
    },
  };
}

/**
 * `botDefence` (default true), `botBlockAddresses` (default false), `botChallengeAt`, `botChallengeProvider`
 * (altcha or turnstile, with `turnstileSiteKey`); on AWS `botSecretName`. The challenge keys
 * are never context values on AWS.
 */
function botFromContext(get: ContextGetter, local: boolean, natGateways: number): BotConfig {
  const enabled = get('botDefence') === undefined ? true : bool(get, 'botDefence');
  const blockAddresses = get('botBlockAddresses') === undefined ? false : bool(get, 'botBlockAddresses');
  const challengeAt = int(get, 'botChallengeAt', DEFAULTS.botChallengeAt, 1);
  if (challengeAt > 100) throw new Error('context "botChallengeAt" must be between 1 and 100');
  const challengeProvider = str(get, 'botChallengeProvider') ?? 'altcha';
  if (challengeProvider !== 'altcha' && challengeProvider !== 'turnstile') {
    throw new Error(`context "botChallengeProvider" must be altcha or turnstile, got ${challengeProvider}`);
  }
  if (challengeProvider === 'turnstile') {
    // Its verification is a call to Cloudflare: it needs the internet, which LocalStack's
    // functions and a VPC without NAT do not have (shared/tests/bot_turnstile.rs tests it
    // against a local stand-in instead).
    if (local) throw new Error('botChallengeProvider=turnstile needs the internet: AWS only (tested locally against a stand-in)');
    if (natGateways < 1) throw new Error('botChallengeProvider=turnstile calls Cloudflare from the VPC: set natGateways to 1 or more');
    const turnstileSiteKey = str(get, 'turnstileSiteKey');
    if (!turnstileSiteKey) throw new Error('botChallengeProvider=turnstile needs context "turnstileSiteKey"');
    return {
      enabled,
      blockAddresses,
      challengeAt,
      challengeProvider,
      turnstileSiteKey,
      secretName: str(get, 'botSecretName') ?? DEFAULTS.botSecretName,
    };
  }
  if (local) {
    return {
      enabled,
      blockAddresses,
      challengeAt,
      challengeProvider,
      signatureSecret: DEFAULTS.localBotSignatureSecret,
      keySecret: DEFAULTS.localBotKeySecret,
    };
  }
  return {
    enabled,
    blockAddresses,
    challengeAt,
    challengeProvider,
    secretName: str(get, 'botSecretName') ?? DEFAULTS.botSecretName,
  };
}

function notificationsFromContext(get: ContextGetter): NotificationsConfig {
  const mailSender = str(get, 'mailSender') ?? DEFAULTS.mailSender;
  if (!/^[^@\s]+@[^@\s]+$/.test(mailSender)) throw new Error(`context "mailSender" must be an email address, got "${mailSender}"`);
  const arn = str(get, 'pushPlatformApplicationArn');
  if (arn !== undefined && !/^arn:aws[a-z-]*:sns:[^:]*:\d{12}:app\/(GCM|APNS|APNS_SANDBOX)\/[^/]+$/.test(arn)) {
    throw new Error(`context "pushPlatformApplicationArn" must be an SNS platform application ARN (arn:aws:sns:<region>:<account>:app/<GCM|APNS|APNS_SANDBOX>/<name>), got "${arn}"`);
  }
  const notifierConcurrency = int(get, 'notifierConcurrency', DEFAULTS.notifierConcurrency, 2);
  if (notifierConcurrency > 1000) throw new Error('context "notifierConcurrency" must be between 2 and 1000 (SQS event sources)');
  const notifierBatchSize = int(get, 'notifierBatchSize', 10, 1);
  if (notifierBatchSize > 10000) throw new Error('context "notifierBatchSize" must be between 1 and 10000 (SQS event sources)');
  return { mailSender, pushPlatformApplicationArn: arn, notifierConcurrency, notifierBatchSize };
}

function waitingRoomFromContext(get: ContextGetter, local: boolean): WaitingRoomConfig {
  const statusCacheSeconds = int(
    get,
    'waitingRoomStatusCacheSeconds',
    local ? 0 : DEFAULTS.waitingRoomStatusCacheSeconds,
    0,
  );
  if (local && statusCacheSeconds > 0) {
    throw new Error('context "waitingRoomStatusCacheSeconds": LocalStack has no API Gateway stage cache; leave it unset with local=true');
  }
  if (statusCacheSeconds > 3600) throw new Error('context "waitingRoomStatusCacheSeconds" must be at most 3600 (API Gateway\'s cache TTL limit)');
  return local
    ? { ticketKey: DEFAULTS.localWaitingRoomTicketKey, statusCacheSeconds }
    : { secretName: str(get, 'waitingRoomSecretName') ?? DEFAULTS.waitingRoomSecretName, statusCacheSeconds };
}

function edgeFromContext(get: ContextGetter, local: boolean): EdgeConfig {
  const enabled = get('waf') === undefined ? !local : bool(get, 'waf');
  if (enabled && local) throw new Error('context "waf": LocalStack has no WAF; leave "waf" unset (or false) with local=true');
  const rateWindowSec = int(get, 'wafRateWindowSec', DEFAULTS.wafRateWindowSec, 60);
  if (![60, 120, 300, 600].includes(rateWindowSec)) {
    throw new Error(`context "wafRateWindowSec" must be 60, 120, 300 or 600, got ${rateWindowSec}`);
  }
  const level = str(get, 'wafBotControl') ?? DEFAULTS.wafBotControl;
  const levels: Record<string, BotInspection> = { off: 'off', common: 'COMMON', targeted: 'TARGETED' };
  if (!Object.hasOwn(levels, level)) {
    throw new Error(`context "wafBotControl" must be off, common or targeted, got "${level}"`);
  }
  return {
    enabled,
    // At least 1/s: with a 60 s window that is WAF's lowest limit (10) or more.
    ipRequestsPerSec: int(get, 'wafIpRequestsPerSec', DEFAULTS.wafIpRequestsPerSec, 1),
    rateWindowSec: rateWindowSec as EdgeConfig['rateWindowSec'],
    botInspection: levels[level],
    exemptPathSuffixes: ['/webhooks/payments'],
  };
}

/**
 * `stripeApiBase`, `chargeTimeoutSeconds`, `chargeHeartbeatSeconds`, `refundRecheckSeconds`, `breakerFailureThreshold`,
 * `breakerCooldownMs`; locally also `stripeSecretKey` and `stripeWebhookSecrets` (defaults: the
 * sandbox's), on AWS `stripeSecretName`.
 */
function paymentsFromContext(get: ContextGetter, local: boolean): PaymentsConfig {
  const chargeTimeoutSeconds = int(get, 'chargeTimeoutSeconds', DEFAULTS.chargeTimeoutSeconds, 1);
  const chargeHeartbeatSeconds = int(get, 'chargeHeartbeatSeconds', DEFAULTS.chargeHeartbeatSeconds, 1);
  if (chargeHeartbeatSeconds >= chargeTimeoutSeconds) {
    throw new Error('context "chargeHeartbeatSeconds" must be below "chargeTimeoutSeconds"');
  }
  const common = {
    chargeTimeoutSeconds,
    chargeHeartbeatSeconds,
    refundRecheckSeconds: int(get, 'refundRecheckSeconds', DEFAULTS.refundRecheckSeconds, 1),
    breakerFailureThreshold: int(get, 'breakerFailureThreshold', DEFAULTS.breakerFailureThreshold, 1),
    breakerCooldownMs: int(get, 'breakerCooldownMs', DEFAULTS.breakerCooldownMs, 1),
  };
  if (local) {
    return {
      ...common,
      apiBase: str(get, 'stripeApiBase') ?? DEFAULTS.sandboxApiBase,
      secretKey: str(get, 'stripeSecretKey') ?? DEFAULTS.sandboxSecretKey,
      webhookSecrets: str(get, 'stripeWebhookSecrets') ?? DEFAULTS.sandboxWebhookSecret,
    };
  }
  if (str(get, 'stripeSecretKey') !== undefined || str(get, 'stripeWebhookSecrets') !== undefined) {
    throw new Error('on AWS the Stripe keys come from Secrets Manager (context "stripeSecretName"), never from context');
  }
  return {
    ...common,
    apiBase: str(get, 'stripeApiBase') ?? DEFAULTS.stripeApiBase,
    secretName: str(get, 'stripeSecretName') ?? DEFAULTS.stripeSecretName,
  };
}
