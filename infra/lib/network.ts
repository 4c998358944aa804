import { Fn, RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import { Construct } from 'constructs';

export const REDIS_PORT = 6379;

export interface NetworkProps {
  /** NAT gateways; 0 (the default) means private isolated subnets reached only via VPC endpoints. */
  readonly natGateways: number;
  readonly redisNodeType: string;
  readonly redisShards: number;
  readonly redisReplicasPerShard: number;
}

/**
 * AWS mode only: the VPC the functions run in, the VPC endpoints they use instead of the internet,
 * and the ElastiCache Redis replication group (cluster mode) holding the stock counters.
 *
 * Egress choice: VPC endpoints instead of a NAT gateway. The functions talk to DynamoDB (gateway
 * endpoint, free), SQS and Step Functions (interface endpoints) and to Redis inside the VPC, and to
 * nothing on the internet (payment webhooks are inbound through API Gateway). Endpoints
 *  - keep working during a burst without NAT's per-destination connection limit and per-GB
 *    processing charge, which a flash sale hits exactly when traffic peaks;
 *  - leave no internet path out of the VPC (smaller blast radius for the function code);
 *  - have no single-AZ point of failure (a single NAT gateway lives in one AZ).
 * CloudWatch Logs needs no endpoint: Lambda ships function logs itself, outside the function's
 * ENIs. If a later function must call the internet (e.g. the payment provider's API), deploy with
 * `-c natGateways=1` (or 2 for one per AZ): the subnets then become private-with-egress.
 */
export class Network extends Construct {
  readonly vpc: ec2.Vpc;
  readonly subnetType: ec2.SubnetType;
  /** Security group of every function; Redis and the interface endpoints accept only it. */
  readonly lambdaSecurityGroup: ec2.SecurityGroup;
  readonly redisSecurityGroup: ec2.SecurityGroup;
  readonly redis: elasticache.CfnReplicationGroup;
  /** `rediss://<configuration endpoint>:6379` (TLS, cluster mode). */
  readonly redisUrl: string;

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);

    this.subnetType =
      props.natGateways > 0 ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PRIVATE_ISOLATED;

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: props.natGateways,
      subnetConfiguration: [
        // Public subnets exist only to hold NAT gateways.
        ...(props.natGateways > 0
          ? [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 }]
          : []),
        { name: 'private', subnetType: this.subnetType, cidrMask: 20 },
      ],
      // Keeps the template free of the custom resource (and its own Lambda) that would strip the
      // default security group's rules; nothing here uses the default security group.
      restrictDefaultSecurityGroup: false,
    });
    const subnets: ec2.SubnetSelection = { subnetType: this.subnetType };

    this.lambdaSecurityGroup = new ec2.SecurityGroup(this, 'LambdaSg', {
      vpc: this.vpc,
      description: 'flashsale Lambda functions',
      allowAllOutbound: true,
    });

    // Gateway endpoint: DynamoDB traffic stays on the AWS network, no hourly charge.
    this.vpc.addGatewayEndpoint('DynamoDbEndpoint', {
      service: ec2.GatewayVpcEndpointAwsService.DYNAMODB,
      subnets: [subnets],
    });
    // Interface endpoints for the other AWS APIs the functions call. Each accepts HTTPS from the
    // functions' security group only (open: false drops the default allow-from-VPC-CIDR rule).
    const interfaceEndpoints: Record<string, ec2.InterfaceVpcEndpointAwsService> = {
      SqsEndpoint: ec2.InterfaceVpcEndpointAwsService.SQS,
      StepFunctionsEndpoint: ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
    };
    for (const [endpointId, service] of Object.entries(interfaceEndpoints)) {
      const endpoint = this.vpc.addInterfaceEndpoint(endpointId, {
        service,
        subnets,
        privateDnsEnabled: true,
        open: false,
      });
      endpoint.connections.allowFrom(this.lambdaSecurityGroup, ec2.Port.tcp(443), 'HTTPS from Lambdas');
    }

    this.redisSecurityGroup = new ec2.SecurityGroup(this, 'RedisSg', {
      vpc: this.vpc,
      description: 'flashsale ElastiCache Redis: 6379 from the Lambda security group only',
      allowAllOutbound: false,
    });
    this.redisSecurityGroup.addIngressRule(
      this.lambdaSecurityGroup,
      ec2.Port.tcp(REDIS_PORT),
      'Redis (TLS) from flashsale Lambdas',
    );

    const subnetGroup = new elasticache.CfnSubnetGroup(this, 'RedisSubnets', {
      description: 'flashsale Redis private subnets',
      subnetIds: this.vpc.selectSubnets(subnets).subnetIds,
    });

    // Why a replication group in cluster mode rather than ElastiCache Serverless: both run the
    // Lua reservation scripts and shard keys by hash slot, so the application code is the same.
    //  - Latency and cost are predictable for a bursty flash sale: the capacity is provisioned
    //    before the doors open. Serverless scales by itself, but scaling lags a step change in
    //    load (the first seconds of a sale), and its per-ECPU price makes a sale's burst of
    //    EVAL calls the expensive part instead of a flat hourly node price.
    //  - The node count is explicit: the split stock counters ("{sale}:shard:N" hash tags chosen
    //    to land in different slots) spread over a known number of primaries, so a hot sale's
    //    decrements run on several CPUs instead of one; with Serverless the slot placement is
    //    opaque.
    //  - Automatic failover with Multi-AZ, TLS in transit and encryption at rest are all on.
    this.redis = new elasticache.CfnReplicationGroup(this, 'Redis', {
      replicationGroupDescription: 'flashsale stock counters and reservation scripts',
      engine: 'redis',
      engineVersion: '7.1',
      cacheParameterGroupName: 'default.redis7.cluster.on',
      cacheNodeType: props.redisNodeType,
      clusterMode: 'enabled',
      numNodeGroups: props.redisShards,
      replicasPerNodeGroup: props.redisReplicasPerShard,
      automaticFailoverEnabled: true,
      multiAzEnabled: true,
      transitEncryptionEnabled: true,
      atRestEncryptionEnabled: true,
      port: REDIS_PORT,
      cacheSubnetGroupName: subnetGroup.ref,
      securityGroupIds: [this.redisSecurityGroup.securityGroupId],
    });
    // The counters are rebuilt from DynamoDB (the durable record), so no final snapshot is kept.
    this.redis.applyRemovalPolicy(RemovalPolicy.DESTROY);

    this.redisUrl = Fn.join('', [
      'rediss://',
      this.redis.attrConfigurationEndPointAddress,
      `:${REDIS_PORT}`,
    ]);
  }
}
