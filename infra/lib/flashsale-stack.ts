import * as path from 'node:path';
import { ArnFormat, CfnOutput, Duration, SecretValue, Stack, type StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as eventSources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as ses from 'aws-cdk-lib/aws-ses';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { Api } from './api';
import { REPO_DIR, type FlashsaleConfig } from './config';
import { Data } from './data';
import { Edge } from './edge';
import { FUNCTIONS, Functions, pascal, type EnvVar, type FunctionSpec } from './functions';
import { Identity } from './identity';
import { Monitoring } from './monitoring';
import { Network } from './network';
import { AslStateMachine } from './workflows';

/**
 * A CloudFormation dynamic reference to a JSON field of a Secrets Manager secret (the Stripe
 * keys, the bot challenge keys): never a plain value in the template.
 */
function secretField(secretName: string | undefined, field: string): string {
  if (!secretName) throw new Error(`neither a value nor a secret name for ${field}`);
  return SecretValue.secretsManager(secretName, { jsonField: field }).unsafeUnwrap();
}

export interface FlashsaleStackProps extends StackProps {
  readonly config: FlashsaleConfig;
  /** Defaults to FUNCTIONS (minus `localOnly` entries on AWS); tests may pass their own list. */
  readonly functions?: readonly FunctionSpec[];
  /** Folder of the ASL files; defaults to `<repo>/statemachines`. */
  readonly stateMachinesDir?: string;
}

/**
 * The whole backend in one stack:
 *   API Gateway REST API -> per-endpoint Rust Lambdas -> Redis (ElastiCache on AWS, a URL from
 *   context on LocalStack) + DynamoDB tables + SQS queues; alarms on an SNS topic.
 * Differences between AWS and LocalStack (`local`): the network (on AWS the functions run in a
 * VPC next to an ElastiCache replication group; locally there is no VPC and REDIS_URL comes from
 * context) and identity (Cognito user pool on AWS; a JWT TOKEN authorizer function locally).
 * Removal policies and PITR follow `local` too.
 */
export class FlashsaleStack extends Stack {
  readonly config: FlashsaleConfig;
  readonly data: Data;
  readonly network?: Network;
  readonly functions: Functions;
  readonly identity: Identity;
  readonly api: Api;
  /** The WAF edge on the API stage (AWS only). */
  readonly edge?: Edge;
  readonly monitoring: Monitoring;
  /** Values of the environment variables a function spec may ask for (JWT_* only locally). */
  readonly functionEnv: Partial<Record<EnvVar, string>>;
  private readonly stateMachinesDir: string;

  constructor(scope: Construct, id: string, props: FlashsaleStackProps) {
    super(scope, id, props);
    const config = props.config;
    this.config = config;
    this.stateMachinesDir = props.stateMachinesDir ?? path.join(REPO_DIR, 'statemachines');

    this.monitoring = new Monitoring(this, 'Monitoring', { alarmEmail: config.alarmEmail });
    this.data = new Data(this, 'Data', { local: config.local });
    for (const [key, queue] of Object.entries(this.data.queues)) {
      if (this.data.deadLetterQueues.includes(queue)) {
        this.monitoring.alarmOnDlqDepth(key.charAt(0).toUpperCase() + key.slice(1), queue);
      }
    }

    if (!config.local) {
      this.network = new Network(this, 'Network', {
        natGateways: config.natGateways,
        redisNodeType: config.redisNodeType,
        redisShards: config.redisShards,
        redisReplicasPerShard: config.redisReplicasPerShard,
      });
    }

    const { tables, queues } = this.data;
    this.functionEnv = {
      REDIS_URL: this.network ? this.network.redisUrl : config.redisUrl,
      // ElastiCache runs in cluster mode (slot-aware client); the local Redis is one node.
      REDIS_MODE: this.network ? 'cluster' : 'standalone',
      SALES_TABLE: tables.sales.tableName,
      RESERVATIONS_TABLE: tables.reservations.tableName,
      ORDERS_TABLE: tables.orders.tableName,
      WEBHOOK_EVENTS_TABLE: tables.webhookEvents.tableName,
      EVENTS_QUEUE_URL: queues.events.queueUrl,
      SAGA_DLQ_URL: queues.sagaDlq.queueUrl,
      REPAIR_QUEUE_URL: queues.repair.queueUrl,
      RATE_USER_CAPACITY: String(config.rateUserCapacity),
      RATE_USER_REFILL_PER_SEC: String(config.rateUserRefillPerSec),
      RATE_IP_CAPACITY: String(config.rateIpCapacity),
      RATE_IP_REFILL_PER_SEC: String(config.rateIpRefillPerSec),
      SOLD_OUT_CACHE_MS: String(config.soldOutCacheMs),
      STRIPE_API_BASE: config.payments.apiBase,
      // On AWS: dynamic references to Secrets Manager, resolved by CloudFormation at deploy time.
      STRIPE_SECRET_KEY:
        config.payments.secretKey ?? secretField(config.payments.secretName, 'secret_key'),
      STRIPE_WEBHOOK_SECRETS:
        config.payments.webhookSecrets ?? secretField(config.payments.secretName, 'webhook_secrets'),
      WAITING_ROOM_KEY:
        config.waitingRoom.ticketKey ?? secretField(config.waitingRoom.secretName, 'ticket_key'),
      NOTIFICATIONS_TABLE: tables.notifications.tableName,
      DEVICES_TABLE: tables.devices.tableName,
      MAIL_SENDER: config.notifications.mailSender,
      ...(config.notifications.pushPlatformApplicationArn && {
        PUSH_PLATFORM_APPLICATION_ARN: config.notifications.pushPlatformApplicationArn,
      }),
      BOT_DEFENCE: config.bot.enabled ? 'on' : 'off',
      BOT_CHALLENGE_AT: String(config.bot.challengeAt),
      BOT_BLOCK_ADDRESSES: config.bot.blockAddresses ? 'on' : 'off',
      BOT_CHALLENGE_PROVIDER: config.bot.challengeProvider,
      ...(config.bot.challengeProvider === 'altcha' && {
        BOT_CHALLENGE_SIGNATURE_SECRET:
          config.bot.signatureSecret ?? secretField(config.bot.secretName, 'signature_secret'),
        BOT_CHALLENGE_KEY_SECRET: config.bot.keySecret ?? secretField(config.bot.secretName, 'key_secret'),
      }),
      ...(config.bot.challengeProvider === 'turnstile' && {
        TURNSTILE_SITE_KEY: config.bot.turnstileSiteKey,
        TURNSTILE_SECRET_KEY: secretField(config.bot.secretName, 'turnstile_secret_key'),
      }),
      BREAKER_FAILURE_THRESHOLD: String(config.payments.breakerFailureThreshold),
      BREAKER_COOLDOWN_MS: String(config.payments.breakerCooldownMs),
      EXPIRY_CONCURRENCY: String(config.expiry.concurrency),
      EXPIRY_PAGE_SIZE: String(config.expiry.pageSize),
      EXPIRY_BUDGET_MS: String(config.expiry.budgetMs),
      HOLD_GRACE_MS: String(config.expiry.holdGraceMs),
      ...(config.localJwt && {
        JWT_PUBLIC_KEY: config.localJwt.publicKeyPem,
        JWT_ISSUER: config.localJwt.issuer,
        JWT_AUDIENCE: config.localJwt.audience,
      }),
    };

    const specs = (props.functions ?? FUNCTIONS).filter((spec) => config.local || !spec.localOnly);
    this.functions = new Functions(this, 'Functions', {
      specs,
      arch: config.arch,
      lambdaDir: config.lambdaDir,
      env: this.functionEnv,
      commonEnv: config.awsFaultProxyUrl
        ? {
            // The SDK's service-specific endpoint variables (AWS SDKs and tools reference guide,
            // "Service-specific endpoints"): only DynamoDB and Step Functions go through the proxy.
            AWS_ENDPOINT_URL_DYNAMODB: config.awsFaultProxyUrl,
            AWS_ENDPOINT_URL_SFN: config.awsFaultProxyUrl,
          }
        : undefined,
      tables,
      queues,
      logRetention: config.local ? logs.RetentionDays.ONE_WEEK : logs.RetentionDays.ONE_MONTH,
      concurrency: {
        reserve: config.capacity.reserveConcurrency,
        payment: config.capacity.paymentConcurrency,
        queue: config.capacity.queueConcurrency,
      },
      vpc: this.network && {
        vpc: this.network.vpc,
        subnets: { subnetType: this.network.subnetType },
        securityGroup: this.network.lambdaSecurityGroup,
      },
    });

    // Locally the `authorizer` function stands in for Cognito (it is a localOnly spec).
    this.identity = new Identity(this, 'Identity', {
      stage: config.stage,
      local: config.local,
      localAuthorizerFunction: this.functions.byName.get('authorizer'),
      authorizerNeeded: specs.some((spec) => spec.routes?.some((route) => route.authorized)),
      authorizerViaApi: config.authorizerViaApi,
      authorizerCacheSeconds: config.authorizerCacheSeconds,
    });

    this.api = new Api(this, 'Api', {
      stage: config.stage,
      throttleRateLimit: config.throttleRateLimit,
      throttleBurstLimit: config.throttleBurstLimit,
      methodThrottles: {
        reserve: { rateLimit: config.capacity.reserveRateLimit, burstLimit: config.capacity.reserveBurstLimit },
        payment: { rateLimit: config.capacity.paymentRateLimit, burstLimit: config.capacity.paymentBurstLimit },
        queue: { rateLimit: config.capacity.queueRateLimit, burstLimit: config.capacity.queueBurstLimit },
      },
      specs,
      statusCacheSeconds: config.waitingRoom.statusCacheSeconds,
      functions: this.functions.byName,
      authorizer: this.identity.authorizer,
      deferAuthorizer: config.authorizerViaApi,
    });

    // Reservation changes -> event-publisher -> events queue. Retries are bounded; a batch that
    // keeps failing is bisected down to the failing record, which after 10 retries (or a day)
    // is described in a message on the events DLQ (depth alarm) instead of blocking the shard.
    const publisher = this.functions.byName.get('event-publisher');
    if (publisher) {
      publisher.addEventSource(
        new eventSources.DynamoEventSource(tables.reservations, {
          startingPosition: lambda.StartingPosition.TRIM_HORIZON,
          batchSize: 100,
          bisectBatchOnError: true,
          reportBatchItemFailures: true,
          retryAttempts: 10,
          maxRecordAge: Duration.days(1),
          onFailure: new eventSources.SqsDlq(queues.eventsDlq),
        }),
      );
    }

    // Repair requests: one per invocation (a rebuild takes seconds), failures reported per item.
    for (const spec of specs.filter((s) => s.repairConsumer)) {
      this.functions.get(spec.name).addEventSource(
        new eventSources.SqsEventSource(queues.repair, { batchSize: 1, reportBatchItemFailures: true }),
      );
    }

    this.wireNotifications(specs, config);

    // Faults that must page someone, from the functions' EMF metrics (shared/src/metrics.rs).
    this.monitoring.alarmOnEmfCount('UnitsOversold', 'UnitsOversold', ['saga-steps', 'expiry-cleanup'],
      'Units sold beyond stock (a paid order whose hold was lost was taken into debt): a person must decide which buyer to refund');
    this.monitoring.alarmOnEmfCount('RebuildOversold', 'RebuildOversoldUnits', ['expiry-cleanup'],
      'A stock rebuild found more units held or sold than the sale has');
    this.monitoring.alarmOnEmfCount('StockAnomalies', 'Anomalies', ['expiry-cleanup'],
      'Redis and the durable records disagree in a way the reconciler does not repair by itself');

    this.wireCheckoutSaga(specs);
    this.wireSchedules(specs);

    // Outputs (fixed logical ids, so `cdk deploy --outputs-file` gives stable keys).
    const out = (id: string, value: string, description?: string) =>
      new CfnOutput(this, id, { value, description });
    if (config.edge.enabled) {
      this.edge = new Edge(this, 'Edge', {
        name: `flashsale-${config.stage}`,
        stage: this.api.restApi.deploymentStage,
        config: config.edge,
      });
      out('WebAclArn', this.edge.webAcl.attrArn, 'regional WAF web ACL in front of the API stage');
    }
    out('ApiId', this.api.restApi.restApiId, 'REST API id');
    out('StageName', this.api.restApi.deploymentStage.stageName, 'API Gateway stage');
    out('ApiUrl', this.api.restApi.url, 'API base URL (on AWS; LocalStack: /_aws/execute-api/<ApiId>/<stage>)');
    out('SalesTableName', tables.sales.tableName);
    out('ReservationsTableName', tables.reservations.tableName);
    out('OrdersTableName', tables.orders.tableName);
    out('WebhookEventsTableName', tables.webhookEvents.tableName);
    out('EventsQueueUrl', queues.events.queueUrl);
    out('EventsQueueName', queues.events.queueName);
    out('EventsDlqUrl', queues.eventsDlq.queueUrl);
    out('EventsDlqName', queues.eventsDlq.queueName);
    out('SagaDlqUrl', queues.sagaDlq.queueUrl);
    out('SagaDlqName', queues.sagaDlq.queueName);
    out('RepairQueueUrl', queues.repair.queueUrl);
    out('RepairDlqUrl', queues.repairDlq.queueUrl);
    out('AlarmTopicArn', this.monitoring.topic.topicArn);
    out('RedisUrl', this.functionEnv.REDIS_URL!, 'REDIS_URL handed to the functions');
    if (this.identity.userPool && this.identity.userPoolClient) {
      out('UserPoolId', this.identity.userPool.userPoolId, 'Cognito user pool of the buyers and admins');
      out('UserPoolClientId', this.identity.userPoolClient.userPoolClientId, 'app client (SRP, no secret)');
    }
    if (config.authorizerViaApi) {
      const authorizerFn = this.functions.byName.get('authorizer');
      if (!authorizerFn) throw new Error('authorizerViaApi needs the "authorizer" function');
      out('AuthorizerFunctionArn', authorizerFn.functionArn, 'deploy-local.sh attaches it as the TOKEN authorizer');
      out('AuthorizedRoutes', JSON.stringify(this.api.deferredAuthorizedRoutes), 'routes deploy-local.sh puts behind the authorizer');
    }
    out('AuthorizerCacheSeconds', String(config.authorizerCacheSeconds), 'how long API Gateway keeps an authorizer result per token (s)');
    if (config.localJwt) {
      out('JwtIssuer', config.localJwt.issuer, 'iss the local authorizer expects');
      out('JwtAudience', config.localJwt.audience, 'aud the local authorizer expects');
    }
    for (const [name, fn] of this.functions.byName) {
      out(`${pascal(name)}FunctionName`, fn.functionName);
    }
  }

  /**
   * The checkout saga (statemachines/checkout-saga.asl.json): invokes the `sagaStep` functions,
   * reads and marks reservations directly, notifies on the events queue, parks what it cannot
   * compensate on the saga DLQ. Functions with `saga` get its ARN and exactly their grants.
   */
  private wireCheckoutSaga(specs: readonly FunctionSpec[]): void {
    const steps = specs.filter((spec) => spec.sagaStep).map((spec) => this.functions.get(spec.name));
    if (steps.length === 0) return;
    const { tables, queues } = this.data;
    const payments = this.config.payments;
    const saga = this.addStateMachine('CheckoutSaga', 'checkout-saga.asl.json', {
      substitutions: {
        SagaStepsFunctionArn: this.functions.get('saga-steps').functionArn,
        ReservationsTable: tables.reservations.tableName,
        EventsQueueUrl: queues.events.queueUrl,
        SagaDlqUrl: queues.sagaDlq.queueUrl,
        ChargeTimeoutSeconds: String(payments.chargeTimeoutSeconds),
        ChargeHeartbeatSeconds: String(payments.chargeHeartbeatSeconds),
        RefundRecheckSeconds: String(payments.refundRecheckSeconds),
      },
      invokes: steps,
      sendsTo: [queues.events, queues.sagaDlq],
    }).stateMachine;
    // Validate, MarkFailed and ReadOutcome are direct DynamoDB integrations.
    saga.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        resources: [tables.reservations.tableArn],
      }),
    );
    for (const spec of specs) {
      if (!spec.saga?.length) continue;
      const fn = this.functions.get(spec.name);
      fn.addEnvironment('SAGA_STATE_MACHINE_ARN', saga.stateMachineArn);
      if (spec.saga.includes('start')) {
        saga.grantStartExecution(fn);
        // An already-started saga answers with its status: DescribeExecution of its executions.
        fn.addToRolePolicy(
          new iam.PolicyStatement({
            actions: ['states:DescribeExecution'],
            resources: [
              Stack.of(this).formatArn({
                service: 'states',
                resource: 'execution',
                resourceName: `${saga.stateMachineName}:*`,
                arnFormat: ArnFormat.COLON_RESOURCE_NAME,
              }),
            ],
          }),
        );
      }
      if (spec.saga.includes('resume')) saga.grantTaskResponse(fn);
    }
  }

  /**
   * Notifications (shared/src/notify): the notifier consumes the events queue (batches of 10,
   * item failures reported, concurrency capped so SES's sending rate holds; a message that
   * keeps failing moves to the events DLQ after 5 receives, which has a depth alarm) and may
   * send from the sender identity and push to the platform application's endpoints; the
   * devices function may make endpoints. Alarms for a backlog: more than 1,000 visible
   * messages for a minute, the oldest older than 5 minutes (AWS publishes it; LocalStack does
   * not), the notifier's errors, and its own lag metric (EMF `LagMs`) above a minute.
   */
  private wireNotifications(specs: readonly FunctionSpec[], config: FlashsaleConfig): void {
    const { queues } = this.data;
    const { mailSender, pushPlatformApplicationArn, notifierConcurrency, notifierBatchSize } = config.notifications;
    const stack = Stack.of(this);
    const identityArn = (identity: string) =>
      stack.formatArn({ service: 'ses', resource: 'identity', resourceName: identity });
    if (!config.local) {
      // SES mails the address's owner a verification link on deploy.
      new ses.EmailIdentity(this, 'MailSender', { identity: ses.Identity.email(mailSender) });
    }
    // `arn:...:app/GCM/<name>` -> its endpoints, `arn:...:endpoint/GCM/<name>/<id>`.
    const endpoints = pushPlatformApplicationArn?.replace(':app/', ':endpoint/') + '/*';
    for (const spec of specs.filter((s) => s.notify)) {
      const fn = this.functions.get(spec.name);
      if (spec.notify === 'consume') {
        fn.addEventSource(
          new eventSources.SqsEventSource(queues.events, {
            batchSize: notifierBatchSize,
            ...(notifierBatchSize > 10 && { maxBatchingWindow: Duration.seconds(1) }),
            reportBatchItemFailures: true,
            maxConcurrency: notifierConcurrency,
          }),
        );
        fn.addToRolePolicy(
          new iam.PolicyStatement({
            actions: ['ses:SendEmail'],
            // The sender's address, or its domain when the domain is the verified identity.
            resources: [identityArn(mailSender), identityArn(mailSender.split('@')[1])],
          }),
        );
        if (pushPlatformApplicationArn) {
          fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['sns:Publish'], resources: [endpoints] }));
        }
        this.monitoring.alarmOnBacklog('Events', queues.events, fn, spec.name);
        // A notification given up (a refused address, an unverified sender, a provider that
        // did not answer: at most once) is one a buyer never got.
        this.monitoring.alarmOnEmfCount('NotificationsGivenUp', 'GaveUp', [spec.name],
          'Notifications given up: a buyer was not told (refused address, unverified mail sender, or no answer from the provider)');
      } else if (pushPlatformApplicationArn) {
        fn.addToRolePolicy(
          new iam.PolicyStatement({ actions: ['sns:CreatePlatformEndpoint'], resources: [pushPlatformApplicationArn] }),
        );
      }
    }
  }

  /** One EventBridge rule per `scheduled` function: `rate(n minutes)` (fires on LocalStack too). */
  private wireSchedules(specs: readonly FunctionSpec[]): void {
    for (const spec of specs.filter((s) => s.scheduled)) {
      new events.Rule(this, `${pascal(spec.name)}Schedule`, {
        description: `runs ${spec.name} every ${this.config.expiry.everyMinutes} minute(s)`,
        schedule: events.Schedule.rate(Duration.minutes(this.config.expiry.everyMinutes)),
        // A missed run is simply picked up by the next one: no retries piling up.
        targets: [new targets.LambdaFunction(this.functions.get(spec.name), { retryAttempts: 0 })],
      });
    }
  }

  /**
   * Adds a Standard state machine from `statemachines/<file>` with definitionSubstitutions, grants
   * it exactly what it needs, alarms on ExecutionsFailed and exports its ARN as `<id>Arn`.
   * For a later issue, e.g.:
   *   stack.addStateMachine('CheckoutSaga', 'checkout-saga.asl.json', {
   *     substitutions: { ReserveFunctionArn: stack.functions.get('reserve').functionArn, ... },
   *     invokes: [stack.functions.get('reserve'), ...],
   *     sendsTo: [stack.data.queues.sagaDlq],
   *   });
   * (On AWS the functions calling Step Functions reach it through the VPC endpoint.)
   */
  addStateMachine(
    id: string,
    file: string,
    opts: {
      substitutions: Record<string, string>;
      invokes?: readonly lambda.IFunction[];
      sendsTo?: readonly sqs.IQueue[];
    },
  ): AslStateMachine {
    const machine = new AslStateMachine(this, id, {
      definitionFile: path.resolve(this.stateMachinesDir, file),
      substitutions: opts.substitutions,
      invokes: opts.invokes,
      sendsTo: opts.sendsTo,
      monitoring: this.monitoring,
    });
    new CfnOutput(this, `${id}Arn`, { value: machine.stateMachine.stateMachineArn });
    return machine;
  }
}
