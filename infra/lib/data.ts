import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** Logical names of the tables; function specs refer to tables by these keys. */
export type TableKey = 'sales' | 'reservations' | 'orders' | 'webhookEvents' | 'notifications' | 'devices';
/** Logical names of the queues; function specs refer to queues by these keys. */
export type QueueKey = 'events' | 'eventsDlq' | 'sagaDlq' | 'repair' | 'repairDlq';

/** Names of the global secondary indexes, per table (checked when a function asks for an index). */
export const INDEXES: Record<TableKey, readonly string[]> = {
  sales: [],
  reservations: ['pending-by-expiry', 'by-sale-bucketed'],
  orders: ['by-sale'],
  webhookEvents: [],
  notifications: [],
  devices: [],
};

/** How long a message may sit in a dead-letter queue before SQS drops it (the maximum). */
export const DLQ_RETENTION = Duration.days(14);
/** Receives before a message of the events queue moves to its DLQ. */
export const EVENTS_MAX_RECEIVE_COUNT = 5;
/**
 * Visibility timeout of the events queue. AWS recommends at least 6x the timeout of the Lambda that
 * consumes the queue (the notifier, a later issue; its timeout should stay <= 30 s).
 */
export const EVENTS_VISIBILITY_TIMEOUT = Duration.seconds(180);
/**
 * Visibility timeout of the repair queue: 6x the timeout of its consumer (`expiry-cleanup`, 60 s),
 * as AWS recommends for SQS event sources, so a rebuild in progress is not delivered twice.
 */
export const REPAIR_VISIBILITY_TIMEOUT = Duration.seconds(360);
/** Receives before a repair request moves to its DLQ (the sweep rebuilds fenced sales anyway). */
export const REPAIR_MAX_RECEIVE_COUNT = 5;
/**
 * Partitions of the reservations' by-sale index per sale (`sale_bucket` = `<sale>#00`..`#15`), as
 * in shared/src/reservation/item.rs. One partition per sale would cap a sale at about 1,000
 * reservation writes per second: a GSI partition that cannot keep up throttles the table's writes.
 */
export const SALE_BUCKETS = 16;

export interface DataProps {
  /** LocalStack: tables are destroyed with the stack and have no point-in-time recovery. */
  readonly local: boolean;
}

/** DynamoDB tables and SQS queues. */
export class Data extends Construct {
  readonly tables: Record<TableKey, dynamodb.Table>;
  readonly queues: Record<QueueKey, sqs.Queue>;
  /** Queues used only as dead-letter queues; each gets a depth alarm. */
  readonly deadLetterQueues: sqs.Queue[];

  constructor(scope: Construct, id: string, props: DataProps) {
    super(scope, id);

    const common: Partial<dynamodb.TableProps> = {
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: !props.local },
      // Flash-sale records are the source of truth (Redis stock is reconciled from them): keep
      // them if the stack goes away, except on LocalStack where state is throw-away.
      removalPolicy: props.local ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    };
    const S = dynamodb.AttributeType.STRING;
    const N = dynamodb.AttributeType.NUMBER;

    const sales = new dynamodb.Table(this, 'Sales', {
      ...common,
      partitionKey: { name: 'sale_id', type: S },
    });

    const reservations = new dynamodb.Table(this, 'Reservations', {
      ...common,
      partitionKey: { name: 'reservation_id', type: S },
      timeToLiveAttribute: 'ttl',
      // Read by `event-publisher`, which turns reservation changes into messages on `events`.
      stream: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
    });
    // Sparse index of PENDING reservations by expiry, read by the expiry sweeper. Items carry
    // `expiry_bucket` only while PENDING, and the bucket is spread (e.g. "<minute>#<0..n>") so a
    // flash sale's burst of reservations does not land in one hot partition.
    reservations.addGlobalSecondaryIndex({
      indexName: 'pending-by-expiry',
      partitionKey: { name: 'expiry_bucket', type: S },
      sortKey: { name: 'expires_at', type: N },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: ['sale_id', 'user_id', 'quantity', 'shard', 'status'],
    });
    // All reservations of a sale (reconciliation of the Redis stock counters, stock rebuilds),
    // spread over SALE_BUCKETS partitions per sale.
    reservations.addGlobalSecondaryIndex({
      indexName: 'by-sale-bucketed',
      partitionKey: { name: 'sale_bucket', type: S },
      sortKey: { name: 'reservation_id', type: S },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      // What a stock rebuild needs to re-create holds and per-user claims, and what the
      // reconciler needs to find payments with no running saga (ReservationSummary::PROJECTION).
      nonKeyAttributes: [
        'status',
        'quantity',
        'shard',
        'user_id',
        'expires_at',
        'created_at',
        'payment_started_at',
      ],
    });

    const orders = new dynamodb.Table(this, 'Orders', {
      ...common,
      partitionKey: { name: 'reservation_id', type: S },
    });
    orders.addGlobalSecondaryIndex({
      indexName: 'by-sale',
      partitionKey: { name: 'sale_id', type: S },
      sortKey: { name: 'reservation_id', type: S },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: ['quantity', 'shard', 'user_id'],
    });

    // Payment-provider webhook event ids, for de-duplication; TTL must outlive the provider's
    // retry window (Stripe retries for up to 3 days).
    const webhookEvents = new dynamodb.Table(this, 'WebhookEvents', {
      ...common,
      partitionKey: { name: 'event_id', type: S },
      timeToLiveAttribute: 'ttl',
    });

    // One record per notification (event and channel): its claim, lease and outcome, so a
    // redelivered event is not notified twice (shared/src/notify/dynamo.rs); TTL after 14 days.
    const notifications = new dynamodb.Table(this, 'Notifications', {
      ...common,
      partitionKey: { name: 'notification_id', type: S },
      timeToLiveAttribute: 'ttl',
    });
    // A buyer's push endpoints (SNS platform endpoint ARNs), one item per device.
    const devices = new dynamodb.Table(this, 'Devices', {
      ...common,
      partitionKey: { name: 'user_id', type: S },
      sortKey: { name: 'endpoint_arn', type: S },
    });

    this.tables = { sales, reservations, orders, webhookEvents, notifications, devices };

    // All queues use SQS-managed server-side encryption (SSE-SQS): encrypted at rest without a
    // KMS key, so producers and consumers need no kms:* permissions. (No `enforceSSL` queue
    // policy: it is a Deny on `sqs:*`, and this stack keeps every policy statement free of
    // wildcard actions; the AWS SDK talks to SQS over HTTPS only anyway.)
    const encryption = sqs.QueueEncryption.SQS_MANAGED;

    const eventsDlq = new sqs.Queue(this, 'EventsDlq', {
      encryption,
      retentionPeriod: DLQ_RETENTION,
    });
    // Reservation/order events for notifications.
    const events = new sqs.Queue(this, 'Events', {
      encryption,
      visibilityTimeout: EVENTS_VISIBILITY_TIMEOUT,
      deadLetterQueue: { queue: eventsDlq, maxReceiveCount: EVENTS_MAX_RECEIVE_COUNT },
    });
    // Dead-letter path of the saga: compensations that keep failing are sent here (by the state
    // machine's Catch) so an operator can replay them; nothing consumes it automatically.
    const sagaDlq = new sqs.Queue(this, 'SagaDlq', {
      encryption,
      retentionPeriod: DLQ_RETENTION,
    });

    // Requests to rebuild a sale's stock now (the reserve path met a fenced shard after a Redis
    // failover); consumed by `expiry-cleanup`.
    const repairDlq = new sqs.Queue(this, 'RepairDlq', {
      encryption,
      retentionPeriod: DLQ_RETENTION,
    });
    const repair = new sqs.Queue(this, 'Repair', {
      encryption,
      visibilityTimeout: REPAIR_VISIBILITY_TIMEOUT,
      deadLetterQueue: { queue: repairDlq, maxReceiveCount: REPAIR_MAX_RECEIVE_COUNT },
    });

    this.queues = { events, eventsDlq, sagaDlq, repair, repairDlq };
    this.deadLetterQueues = [eventsDlq, sagaDlq, repairDlq];
  }
}
