import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

/** The Cognito group allowed to administer sales (shared::identity::ADMIN_GROUP). */
export const ADMIN_GROUP = 'admin';

export interface IdentityProps {
  readonly stage: string;
  /** LocalStack: no Cognito; the authorizer is `localAuthorizerFunction` behind a TOKEN authorizer. */
  readonly local: boolean;
  /** The `authorizer` function (JWT check), local mode only. */
  readonly localAuthorizerFunction?: lambda.IFunction;
  /**
   * Whether any route is authorized. An API Gateway authorizer must be attached to a method, so
   * without authorized routes none is created (the user pool still is, on AWS).
   */
  readonly authorizerNeeded: boolean;
  /** Local: the authorizer is attached through the API after deploy (see StackConfig). */
  readonly authorizerViaApi?: boolean;
  /** How long API Gateway keeps an authorizer's result per token (s); 0: not at all. */
  readonly authorizerCacheSeconds: number;
}

/**
 * Who the buyer is. API Gateway authenticates every authorized route; the functions read the
 * caller from the request context (Cognito: `claims.sub` / `claims["cognito:groups"]`; the local
 * authorizer: `userId` / `groups`), never from the request itself.
 *  - AWS: a Cognito user pool (no self sign-up: users are created by an administrator; e-mail
 *    sign-in; an `admin` group) with an SRP client, and a Cognito user-pool authorizer. Clients
 *    send the ID token in the Authorization header.
 *  - LocalStack (community edition has no Cognito): a Lambda TOKEN authorizer verifying JWTs signed
 *    with the local key pair (`-c jwtPublicKeyFile=...`); no result caching, so every request
 *    is decided by the function.
 */
export class Identity extends Construct {
  /** Undefined when no route is authorized, or locally without an `authorizer` function. */
  readonly authorizer?: apigateway.IAuthorizer;
  readonly userPool?: cognito.UserPool;
  readonly userPoolClient?: cognito.UserPoolClient;

  constructor(scope: Construct, id: string, props: IdentityProps) {
    super(scope, id);

    if (props.local) {
      if (!props.localAuthorizerFunction || !props.authorizerNeeded || props.authorizerViaApi) return;
      this.authorizer = new apigateway.TokenAuthorizer(this, 'TokenAuthorizer', {
        authorizerName: `flashsale-${props.stage}-jwt`,
        handler: props.localAuthorizerFunction,
        identitySource: apigateway.IdentitySource.header('Authorization'),
        resultsCacheTtl: Duration.seconds(props.authorizerCacheSeconds),
      });
      return;
    }

    this.userPool = new cognito.UserPool(this, 'UserPool', {
      userPoolName: `flashsale-${props.stage}`,
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      standardAttributes: { email: { required: true, mutable: true } },
      // The account's creation time (unix seconds), a bot-defence signal (an account under a
      // day old scores higher; shared/src/bot/score.rs). Written once, by whoever creates the
      // account (AdminCreateUser with `custom:created_at`; sign-up is admin-only here), and never
      // again: immutable, and not among the client's writable attributes. The ID token carries
      // it as the `custom:created_at` claim, which shared/src/identity reads.
      customAttributes: { created_at: new cognito.NumberAttribute({ mutable: false, min: 0 }) },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      // Buyers' accounts outlive the stack, like the tables.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.userPoolClient = this.userPool.addClient('Client', {
      generateSecret: false,
      authFlows: { userSrp: true },
      // The API takes ID tokens from the SRP flow; no hosted UI / OAuth flows.
      disableOAuth: true,
      readAttributes: new cognito.ClientAttributes()
        .withStandardAttributes({ email: true, emailVerified: true })
        .withCustomAttributes('created_at'),
      writeAttributes: new cognito.ClientAttributes().withStandardAttributes({ email: true }),
      preventUserExistenceErrors: true,
    });
    new cognito.CfnUserPoolGroup(this, 'AdminGroup', {
      userPoolId: this.userPool.userPoolId,
      groupName: ADMIN_GROUP,
      description: 'may create and update sales (PUT /sales/{saleId})',
    });
    if (props.authorizerNeeded) {
      this.authorizer = new apigateway.CognitoUserPoolsAuthorizer(this, 'CognitoAuthorizer', {
        authorizerName: `flashsale-${props.stage}-cognito`,
        cognitoUserPools: [this.userPool],
        identitySource: apigateway.IdentitySource.header('Authorization'),
        resultsCacheTtl: Duration.seconds(props.authorizerCacheSeconds),
      });
    }
  }
}
