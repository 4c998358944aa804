import * as fs from 'node:fs';
import * as path from 'node:path';
import { Annotations, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { Arch } from './config';
import { INDEXES, type QueueKey, type TableKey } from './data';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as sqs from 'aws-cdk-lib/aws-sqs';

/** Environment variables the stack can hand to a function (besides RUST_LOG, always set). */
export type EnvVar =
  | 'REDIS_URL'
  | 'REDIS_MODE'
  | 'SALES_TABLE'
  | 'RESERVATIONS_TABLE'
  | 'ORDERS_TABLE'
  | 'WEBHOOK_EVENTS_TABLE'
  | 'EVENTS_QUEUE_URL'
  | 'SAGA_DLQ_URL'
  // Requests to rebuild a sale's stock at once (reserve or a payment met a lost or fenced shard).
  | 'REPAIR_QUEUE_URL'
  // Rate limits and the sold-out fast path of `reserve` (values from context).
  | 'RATE_USER_CAPACITY'
  | 'RATE_USER_REFILL_PER_SEC'
  | 'RATE_IP_CAPACITY'
  | 'RATE_IP_REFILL_PER_SEC'
  | 'SOLD_OUT_CACHE_MS'
  // The bot defence in front of reserve (the challenge keys: Secrets Manager on AWS).
  | 'WAITING_ROOM_KEY'
  | 'NOTIFICATIONS_TABLE'
  | 'DEVICES_TABLE'
  | 'MAIL_SENDER'
  | 'PUSH_PLATFORM_APPLICATION_ARN'
  | 'BOT_DEFENCE'
  | 'BOT_CHALLENGE_AT'
  | 'BOT_BLOCK_ADDRESSES'
  | 'BOT_CHALLENGE_PROVIDER'
  | 'BOT_CHALLENGE_SIGNATURE_SECRET'
  | 'BOT_CHALLENGE_KEY_SECRET'
  | 'TURNSTILE_SITE_KEY'
  | 'TURNSTILE_SECRET_KEY'
  // The payment provider (Stripe, or the local sandbox) and the circuit breaker around it.
  | 'STRIPE_API_BASE'
  | 'STRIPE_SECRET_KEY'
  | 'STRIPE_WEBHOOK_SECRETS'
  | 'BREAKER_FAILURE_THRESHOLD'
  | 'BREAKER_COOLDOWN_MS'
  // The expiry cleanup and hold reconciliation.
  | 'EXPIRY_CONCURRENCY'
  | 'EXPIRY_PAGE_SIZE'
  | 'EXPIRY_BUDGET_MS'
  | 'HOLD_GRACE_MS'
  // The local JWT authorizer (local mode only; on AWS, Cognito checks the tokens).
  | 'JWT_PUBLIC_KEY'
  | 'JWT_ISSUER'
  | 'JWT_AUDIENCE';

/**
 * DynamoDB actions a function may be granted. Transactions (TransactWriteItems/TransactGetItems)
 * are authorised per item with the matching item action (PutItem, UpdateItem, DeleteItem,
 * ConditionCheckItem, GetItem), so they need no action of their own.
 */
export type DynamoAction =
  | 'dynamodb:GetItem'
  | 'dynamodb:BatchGetItem'
  | 'dynamodb:Query'
  | 'dynamodb:Scan'
  | 'dynamodb:PutItem'
  | 'dynamodb:UpdateItem'
  | 'dynamodb:DeleteItem'
  | 'dynamodb:BatchWriteItem'
  | 'dynamodb:ConditionCheckItem'
  // BatchExecuteStatement of PartiQL UPDATEs (the expiry cleanup's batched conditional writes).
  | 'dynamodb:PartiQLUpdate';

/** SQS actions a function may be granted (an event-source consumer gets its own set, see below). */
export type SqsAction =
  | 'sqs:SendMessage'
  | 'sqs:ReceiveMessage'
  | 'sqs:DeleteMessage'
  | 'sqs:ChangeMessageVisibility'
  | 'sqs:GetQueueAttributes';

export interface TableAccess {
  readonly table: TableKey;
  /** When set, the grant is on this global secondary index only (e.g. Query on `by-sale`). */
  readonly index?: string;
  readonly actions: readonly DynamoAction[];
}

export interface QueueAccess {
  readonly queue: QueueKey;
  readonly actions: readonly SqsAction[];
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface Route {
  readonly method: HttpMethod;
  /** Resource path, e.g. `/health` or `/sales/{saleId}/reservations`. */
  readonly path: string;
  /** Method-level throttle: `reserve` or `payment` limits from the capacity config. */
  readonly throttle?: 'reserve' | 'payment' | 'queue';
  /**
   * Served from API Gateway's stage cache, keyed on these path parameters, for the config's
   * `waitingRoom.statusCacheSeconds` (when above 0). Only for answers that are the same for
   * every caller.
   */
  readonly cacheKeyPathParams?: readonly string[];
  /**
   * Default false (public). True: the API's authorizer runs first (Cognito user pool on AWS, the
   * local JWT `authorizer` function on LocalStack) and the function reads the caller from the
   * request context (shared::identity).
   */
  readonly authorized?: boolean;
}

/** One Lambda function, described as data. Add an entry to FUNCTIONS to add a function. */
export interface FunctionSpec {
  /** kebab-case; equals the cargo binary name, so the code is `<lambdaDir>/<name>/bootstrap`. */
  readonly name: string;
  readonly description: string;
  /** Environment variables it reads (values come from the stack). */
  readonly env: readonly EnvVar[];
  /**
   * Variables it reads when this deployment provides them (e.g. one challenge provider's keys
   * or the other's); absent ones are left out instead of failing the synth.
   */
  readonly optionalEnv?: readonly EnvVar[];
  /** Exact DynamoDB actions per table/index. Nothing else is allowed. */
  readonly tables?: readonly TableAccess[];
  /** Exact SQS actions per queue. */
  readonly queues?: readonly QueueAccess[];
  /** API Gateway routes served by this function (Lambda proxy integration). */
  readonly routes?: readonly Route[];
  /** MiB, default 256. */
  readonly memoryMb?: number;
  /** Seconds, default 10 (API Gateway gives up after 29 s). */
  readonly timeoutSeconds?: number;
  /** Deployed only with `-c local=true` (e.g. the JWT authorizer that stands in for Cognito). */
  readonly localOnly?: boolean;
  /**
   * Lambda reserved concurrency from the capacity config: `reserve` (a cap on the crowd's
   * function) or `payment` (each payment-path function keeps its own executions).
   */
  readonly reservedConcurrency?: 'reserve' | 'payment' | 'queue';
  /** Consumes the repair queue (SQS event source, one request per invocation). */
  readonly repairConsumer?: boolean;
  /**
   * What it does with notifications (wired in flashsale-stack.ts): `consume` = the events
   * queue's event source, ses:SendEmail from the sender, sns:Publish to the platform
   * application's endpoints; `register` = sns:CreatePlatformEndpoint on the application.
   */
  readonly notify?: 'consume' | 'register';
  /**
   * What it does with the checkout saga's state machine (wired in flashsale-stack.ts, which also
   * sets SAGA_STATE_MACHINE_ARN): `start` = StartExecution + DescribeExecution of its executions;
   * `resume` = SendTaskSuccess/Failure/Heartbeat.
   */
  readonly saga?: readonly ('start' | 'resume')[];
  /** Invoked by the state machine (lambda:InvokeFunction granted to it). */
  readonly sagaStep?: boolean;
  /** Started by the scheduled expiry rule (EventBridge `rate(n minutes)`). */
  readonly scheduled?: boolean;
}

/**
 * The functions of the backend. Later issues add one entry each (and, for non-HTTP triggers such
 * as the SQS notifier or the expiry sweeper, wire the trigger in flashsale-stack.ts).
 */
export const FUNCTIONS: readonly FunctionSpec[] = [
  {
    name: 'health',
    description: 'GET /health (readiness: Redis and DynamoDB) and GET /health/live (liveness)',
    env: ['REDIS_URL', 'REDIS_MODE', 'SALES_TABLE'],
    tables: [{ table: 'sales', actions: ['dynamodb:GetItem'] }],
    routes: [
      { method: 'GET', path: '/health' },
      { method: 'GET', path: '/health/live' },
    ],
    timeoutSeconds: 5,
  },
  {
    name: 'reserve',
    description: 'POST /sales/{saleId}/reservations: rate-limited stock hold in Redis, reservation record in DynamoDB',
    env: [
      'REDIS_URL',
      'REDIS_MODE',
      'SALES_TABLE',
      'RESERVATIONS_TABLE',
      'RATE_USER_CAPACITY',
      'RATE_USER_REFILL_PER_SEC',
      'RATE_IP_CAPACITY',
      'RATE_IP_REFILL_PER_SEC',
      'SOLD_OUT_CACHE_MS',
      'REPAIR_QUEUE_URL',
      'WAITING_ROOM_KEY',
      'BOT_DEFENCE',
      'BOT_CHALLENGE_AT',
      'BOT_BLOCK_ADDRESSES',
      'BOT_CHALLENGE_PROVIDER',
    ],
    optionalEnv: ['BOT_CHALLENGE_SIGNATURE_SECRET', 'BOT_CHALLENGE_KEY_SECRET', 'TURNSTILE_SITE_KEY', 'TURNSTILE_SECRET_KEY'],
    tables: [
      { table: 'sales', actions: ['dynamodb:GetItem'] },
      { table: 'reservations', actions: ['dynamodb:PutItem', 'dynamodb:GetItem'] },
    ],
    queues: [{ queue: 'repair', actions: ['sqs:SendMessage'] }],
    routes: [
      { method: 'POST', path: '/sales/{saleId}/reservations', authorized: true, throttle: 'reserve' },
    ],
    reservedConcurrency: 'reserve',
  },
  {
    name: 'waiting-room',
    description: 'POST /sales/{saleId}/queue (join: one place per buyer, signed ticket) and GET /sales/{saleId}/queue (public status)',
    env: [
      'REDIS_URL',
      'REDIS_MODE',
      'SALES_TABLE',
      'WAITING_ROOM_KEY',
      'BOT_DEFENCE',
      'BOT_CHALLENGE_AT',
      'BOT_BLOCK_ADDRESSES',
      'BOT_CHALLENGE_PROVIDER',
    ],
    optionalEnv: ['BOT_CHALLENGE_SIGNATURE_SECRET', 'BOT_CHALLENGE_KEY_SECRET', 'TURNSTILE_SITE_KEY', 'TURNSTILE_SECRET_KEY'],
    tables: [{ table: 'sales', actions: ['dynamodb:GetItem'] }],
    routes: [
      // Each its own method bucket (API Gateway keeps one per method), sized so that reserve's
      // and these stay below the stage's limit together (config.ts).
      { method: 'POST', path: '/sales/{saleId}/queue', authorized: true, throttle: 'queue' },
      { method: 'GET', path: '/sales/{saleId}/queue', throttle: 'queue', cacheKeyPathParams: ['saleId'] },
    ],
    // Its own pool: joins cannot take reserve's executions, nor the payment path's.
    reservedConcurrency: 'queue',
  },
  {
    name: 'notifier',
    description: 'The events queue consumer: email (SES) and push (SNS) at each end of a reservation, at most once per event and channel',
    env: ['NOTIFICATIONS_TABLE', 'DEVICES_TABLE', 'MAIL_SENDER'],
    tables: [
      { table: 'notifications', actions: ['dynamodb:PutItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem'] },
      { table: 'devices', actions: ['dynamodb:Query'] },
    ],
    // The events queue's visibility timeout (180 s) is 6 x this, as AWS recommends.
    timeoutSeconds: 30,
    notify: 'consume',
  },
  {
    name: 'devices',
    description: 'POST /me/devices: a buyer registers a device for push notifications (SNS platform endpoint)',
    env: ['DEVICES_TABLE'],
    // Without a platform application the route answers 501 push-not-configured (config.ts).
    optionalEnv: ['PUSH_PLATFORM_APPLICATION_ARN'],
    tables: [{ table: 'devices', actions: ['dynamodb:PutItem'] }],
    routes: [{ method: 'POST', path: '/me/devices', authorized: true }],
    notify: 'register',
  },
  {
    name: 'get-reservation',
    description: "GET /reservations/{reservationId}: the caller's own reservation",
    env: ['RESERVATIONS_TABLE'],
    tables: [{ table: 'reservations', actions: ['dynamodb:GetItem'] }],
    routes: [{ method: 'GET', path: '/reservations/{reservationId}', authorized: true }],
  },
  {
    name: 'get-sale',
    description: 'GET /sales/{saleId} (public): a sale and its remaining stock',
    env: ['REDIS_URL', 'REDIS_MODE', 'SALES_TABLE'],
    tables: [{ table: 'sales', actions: ['dynamodb:GetItem'] }],
    routes: [{ method: 'GET', path: '/sales/{saleId}' }],
  },
  {
    name: 'put-sale',
    description: 'PUT /sales/{saleId} (admins only): create or update a sale and configure its stock in Redis',
    env: ['REDIS_URL', 'REDIS_MODE', 'SALES_TABLE'],
    tables: [{ table: 'sales', actions: ['dynamodb:GetItem', 'dynamodb:PutItem'] }],
    routes: [{ method: 'PUT', path: '/sales/{saleId}', authorized: true }],
  },
  {
    // Triggered by the reservations table's stream (wired in flashsale-stack.ts). Its stream
    // read permissions and the on-failure destination come from the event source mapping.
    name: 'event-publisher',
    description: 'DynamoDB stream of reservations -> events queue',
    env: ['EVENTS_QUEUE_URL'],
    // SendMessageBatch is authorised by sqs:SendMessage.
    queues: [{ queue: 'events', actions: ['sqs:SendMessage'] }],
    timeoutSeconds: 30,
  },
  {
    name: 'pay',
    description: 'POST /reservations/{reservationId}/payment: PENDING -> PAYMENT_PROCESSING, start the checkout saga',
    env: ['RESERVATIONS_TABLE', 'ORDERS_TABLE'],
    tables: [{ table: 'reservations', actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'] }],
    routes: [
      { method: 'POST', path: '/reservations/{reservationId}/payment', authorized: true, throttle: 'payment' },
    ],
    saga: ['start'],
    reservedConcurrency: 'payment',
  },
  {
    // Public route: the caller is the payment provider, authenticated by the Stripe-Signature.
    name: 'payment-webhook',
    description: 'POST /webhooks/payments: verify the signature, de-duplicate, resume the checkout saga',
    env: [
      'WEBHOOK_EVENTS_TABLE',
      'RESERVATIONS_TABLE',
      'ORDERS_TABLE',
      'STRIPE_API_BASE',
      'STRIPE_SECRET_KEY',
      'STRIPE_WEBHOOK_SECRETS',
    ],
    tables: [
      { table: 'webhookEvents', actions: ['dynamodb:PutItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem'] },
      { table: 'reservations', actions: ['dynamodb:GetItem'] },
    ],
    routes: [{ method: 'POST', path: '/webhooks/payments', throttle: 'payment' }],
    saga: ['resume'],
    timeoutSeconds: 20,
    reservedConcurrency: 'payment',
  },
  {
    name: 'saga-steps',
    description: 'Checkout saga task steps: charge (via the circuit breaker), create order, commit, refund, release',
    env: [
      'REDIS_URL',
      'REDIS_MODE',
      'SALES_TABLE',
      'RESERVATIONS_TABLE',
      'ORDERS_TABLE',
      'STRIPE_API_BASE',
      'STRIPE_SECRET_KEY',
      'BREAKER_FAILURE_THRESHOLD',
      'BREAKER_COOLDOWN_MS',
      'REPAIR_QUEUE_URL',
    ],
    // A payment that finds its sale lost or fenced in Redis asks for the rebuild it waits for.
    queues: [{ queue: 'repair', actions: ['sqs:SendMessage'] }],
    tables: [
      { table: 'sales', actions: ['dynamodb:GetItem'] },
      // The order transaction: Put on orders + conditional Update on reservations.
      { table: 'reservations', actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'] },
      { table: 'orders', actions: ['dynamodb:PutItem'] },
    ],
    sagaStep: true,
    timeoutSeconds: 30,
    reservedConcurrency: 'payment',
  },
  {
    name: 'expiry-cleanup',
    description: 'Every minute: expire PENDING reservations, reconcile Redis holds and stuck payments, rebuild lost or fenced stock; and on the repair queue: rebuild one sale now',
    env: [
      'REDIS_URL',
      'REDIS_MODE',
      'SALES_TABLE',
      'RESERVATIONS_TABLE',
      'ORDERS_TABLE',
      'EXPIRY_CONCURRENCY',
      'EXPIRY_PAGE_SIZE',
      'EXPIRY_BUDGET_MS',
      'HOLD_GRACE_MS',
    ],
    tables: [
      // The sales table is small (one item per sale): the run lists the active ones.
      { table: 'sales', actions: ['dynamodb:GetItem', 'dynamodb:Scan'] },
      // PENDING -> EXPIRED in PartiQL batches of 25; PutItem records a hold whose reserve died
      // before its durable write (as EXPIRED, so its unit is released exactly once).
      {
        table: 'reservations',
        actions: [
          'dynamodb:GetItem',
          'dynamodb:BatchGetItem',
          'dynamodb:UpdateItem',
          'dynamodb:PutItem',
          'dynamodb:PartiQLUpdate',
        ],
      },
      { table: 'reservations', index: 'pending-by-expiry', actions: ['dynamodb:Query'] },
      { table: 'reservations', index: 'by-sale-bucketed', actions: ['dynamodb:Query'] },
      { table: 'orders', index: 'by-sale', actions: ['dynamodb:Query'] },
    ],
    // Payments with no running saga get one (StartExecution, DescribeExecution).
    saga: ['start'],
    scheduled: true,
    repairConsumer: true,
    memoryMb: 512,
    timeoutSeconds: 60,
  },
  {
    name: 'rebuild-stock',
    description: 'POST /sales/{saleId}/stock/rebuild (admins only): pause, recompute stock from the durable records, resume',
    env: ['REDIS_URL', 'REDIS_MODE', 'SALES_TABLE', 'RESERVATIONS_TABLE', 'ORDERS_TABLE'],
    tables: [
      { table: 'sales', actions: ['dynamodb:GetItem'] },
      // Holds the index did not show yet are read back by id before anything is dropped.
      { table: 'reservations', actions: ['dynamodb:BatchGetItem'] },
      { table: 'reservations', index: 'by-sale-bucketed', actions: ['dynamodb:Query'] },
      { table: 'orders', index: 'by-sale', actions: ['dynamodb:Query'] },
    ],
    routes: [{ method: 'POST', path: '/sales/{saleId}/stock/rebuild', authorized: true }],
    timeoutSeconds: 29,
  },
  {
    name: 'bot-blocks',
    description: 'GET /admin/bot/blocks and DELETE /admin/bot/blocks?subject= (admins only): list and lift the bot defence blocks',
    env: ['REDIS_URL', 'REDIS_MODE'],
    routes: [
      { method: 'GET', path: '/admin/bot/blocks', authorized: true },
      { method: 'DELETE', path: '/admin/bot/blocks', authorized: true },
    ],
    timeoutSeconds: 5,
  },
  {
    // LocalStack stand-in for the Cognito authorizer: a TOKEN authorizer that verifies the
    // `Authorization: Bearer <JWT>` (RS256, issuer, audience) and returns userId/groups.
    name: 'authorizer',
    description: 'API Gateway TOKEN authorizer for LocalStack (JWT signed by the local key)',
    env: ['JWT_PUBLIC_KEY', 'JWT_ISSUER', 'JWT_AUDIENCE'],
    timeoutSeconds: 5,
    localOnly: true,
  },
];

export const DEFAULT_MEMORY_MB = 256;
export const DEFAULT_TIMEOUT_SECONDS = 10;

export interface FunctionsProps {
  readonly specs: readonly FunctionSpec[];
  readonly arch: Arch;
  readonly lambdaDir: string;
  /** Values of the env vars this deployment provides (e.g. no JWT_* on AWS). */
  readonly env: Partial<Record<EnvVar, string>>;
  readonly tables: Record<TableKey, dynamodb.ITable>;
  readonly queues: Record<QueueKey, sqs.IQueue>;
  readonly logRetention: logs.RetentionDays;
  /** Reserved concurrency per `reservedConcurrency` pool. */
  readonly concurrency: { readonly reserve: number; readonly payment: number; readonly queue: number };
  /**
   * Variables set on every function besides the spec's own (local mode: the SDK's
   * service-specific endpoints, AWS_ENDPOINT_URL_DYNAMODB and _SFN, pointing at the fault proxy).
   */
  readonly commonEnv?: Readonly<Record<string, string>>;
  /** AWS mode: run the functions in these subnets with this security group. */
  readonly vpc?: {
    readonly vpc: ec2.IVpc;
    readonly subnets: ec2.SubnetSelection;
    readonly securityGroup: ec2.ISecurityGroup;
  };
}

/** Creates every function in `specs`, each with its own role, log group and exact permissions. */
export class Functions extends Construct {
  readonly byName: ReadonlyMap<string, lambda.Function>;
  readonly specs: readonly FunctionSpec[];

  constructor(scope: Construct, id: string, props: FunctionsProps) {
    super(scope, id);
    this.specs = props.specs;
    const byName = new Map<string, lambda.Function>();
    const stackName = Stack.of(this).stackName;

    for (const spec of props.specs) {
      if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(spec.name)) {
        throw new Error(`function name "${spec.name}" must be kebab-case (the cargo binary name)`);
      }
      if (byName.has(spec.name)) throw new Error(`function "${spec.name}" is defined twice`);
      const scopeId = pascal(spec.name);
      const fnScope = new Construct(this, scopeId);

      // An explicit function name lets the log group be created (with retention and a removal
      // policy) before the function, under the name Lambda writes to by default. That also holds
      // on LocalStack, which always writes to /aws/lambda/<function name>.
      const functionName = `${stackName}-${spec.name}`;
      if (functionName.length > 64) {
        throw new Error(`function name "${functionName}" is longer than 64 characters`);
      }
      const logGroup = new logs.LogGroup(fnScope, 'Logs', {
        logGroupName: `/aws/lambda/${functionName}`,
        retention: props.logRetention,
        // Destroyed with the function: the name is fixed, so a retained group would make a
        // re-created stack fail with "already exists".
        removalPolicy: RemovalPolicy.DESTROY,
      });

      // Own role, no managed policies: the only statements are the ones written below.
      const role = new iam.Role(fnScope, 'Role', {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `flashsale ${spec.name} function`,
      });
      logGroup.grantWrite(role); // logs:CreateLogStream + logs:PutLogEvents on its own group
      grantData(role, spec, props);
      if (props.vpc) {
        // What AWSLambdaVPCAccessExecutionRole grants for the function's ENIs, minus its
        // logs:* on "*". EC2 does not support resource-level permissions for
        // DescribeNetworkInterfaces, hence the "*" resource (never a "*" action).
        role.addToPrincipalPolicy(
          new iam.PolicyStatement({
            sid: 'VpcNetworkInterfaces',
            actions: [
              'ec2:CreateNetworkInterface',
              'ec2:DescribeNetworkInterfaces',
              'ec2:DescribeSubnets',
              'ec2:DeleteNetworkInterface',
              'ec2:AssignPrivateIpAddresses',
              'ec2:UnassignPrivateIpAddresses',
            ],
            resources: ['*'],
          }),
        );
      }

      const environment: Record<string, string> = { RUST_LOG: 'info', ...props.commonEnv };
      for (const key of spec.env) {
        const value = props.env[key];
        if (value === undefined) {
          throw new Error(`function "${spec.name}" reads ${key}, which this deployment does not provide`);
        }
        environment[key] = value;
      }
      for (const key of spec.optionalEnv ?? []) {
        const value = props.env[key];
        if (value !== undefined) environment[key] = value;
      }

      const fn = new lambda.Function(fnScope, 'Function', {
        functionName,
        description: spec.description,
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: props.arch === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
        handler: 'bootstrap',
        code: lambda.Code.fromAsset(artifactDir(props.lambdaDir, spec.name)),
        memorySize: spec.memoryMb ?? DEFAULT_MEMORY_MB,
        timeout: Duration.seconds(spec.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS),
        environment,
        role,
        logGroup,
        ...(spec.reservedConcurrency
          ? { reservedConcurrentExecutions: props.concurrency[spec.reservedConcurrency] }
          : {}),
        ...(props.vpc
          ? {
              vpc: props.vpc.vpc,
              vpcSubnets: props.vpc.subnets,
              securityGroups: [props.vpc.securityGroup],
            }
          : {}),
      });
      checkBinaryArch(fn, path.join(props.lambdaDir, spec.name, 'bootstrap'), props.arch);
      byName.set(spec.name, fn);
    }
    this.byName = byName;
  }

  get(name: string): lambda.Function {
    const fn = this.byName.get(name);
    if (!fn) throw new Error(`no function named "${name}"`);
    return fn;
  }
}

function grantData(role: iam.Role, spec: FunctionSpec, props: FunctionsProps): void {
  for (const access of spec.tables ?? []) {
    const table = props.tables[access.table];
    if (access.actions.length === 0) throw new Error(`${spec.name}: empty action list for ${access.table}`);
    let resource = table.tableArn;
    if (access.index !== undefined) {
      if (!INDEXES[access.table].includes(access.index)) {
        throw new Error(`${spec.name}: table ${access.table} has no index "${access.index}"`);
      }
      resource = `${table.tableArn}/index/${access.index}`;
    }
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: [...access.actions], resources: [resource] }),
    );
  }
  for (const access of spec.queues ?? []) {
    if (access.actions.length === 0) throw new Error(`${spec.name}: empty action list for ${access.queue}`);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: [...access.actions],
        resources: [props.queues[access.queue].queueArn],
      }),
    );
  }
}

/** `<lambdaDir>/<name>`, which must hold the `bootstrap` built by `cargo lambda build`. */
export function artifactDir(lambdaDir: string, name: string): string {
  const dir = path.join(lambdaDir, name);
  if (!fs.existsSync(path.join(dir, 'bootstrap'))) {
    throw new Error(
      `missing ${path.join(dir, 'bootstrap')}: build the functions first ` +
        '(`cargo lambda build --release` for arm64 with --arm64, or --x86-64 for LocalStack), ' +
        'or point -c lambdaDir=<dir> at the build output',
    );
  }
  return dir;
}

/**
 * Fails synthesis when the bootstrap is an ELF binary for the other architecture (Lambda would
 * answer Runtime.InvalidEntrypoint / exec format error at the first invoke). Non-ELF files
 * (placeholders in tests) are not checked.
 */
function checkBinaryArch(scope: Construct, file: string, arch: Arch): void {
  const header = Buffer.alloc(20);
  const fd = fs.openSync(file, 'r');
  let n: number;
  try {
    n = fs.readSync(fd, header, 0, header.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (n < 20 || header.readUInt32BE(0) !== 0x7f454c46) return; // not "\x7fELF"
  const machine = header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
  const found = machine === 0xb7 ? 'arm64' : machine === 0x3e ? 'x86_64' : `e_machine 0x${machine.toString(16)}`;
  if (found !== arch) {
    Annotations.of(scope).addError(
      `${file} is built for ${found} but the stack deploys ${arch} (-c arch=${arch}); ` +
        'rebuild with the matching cargo lambda target or change -c arch',
    );
  }
}

/** `expire-reservations` -> `ExpireReservations` (construct ids and output names). */
export function pascal(kebab: string): string {
  return kebab
    .split('-')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}
