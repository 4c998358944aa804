import { Duration } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import type { FunctionSpec } from './functions';

export interface ApiProps {
  readonly stage: string;
  /** Stage-wide steady-state rate limit (requests/s). */
  readonly throttleRateLimit: number;
  /** Stage-wide burst limit (requests). */
  readonly throttleBurstLimit: number;
  /** Method-level limits, by the `throttle` pool a route names (see CapacityConfig). */
  readonly methodThrottles: Record<'reserve' | 'payment' | 'queue', { rateLimit: number; burstLimit: number }>;
  /** Routes come from the function specs. */
  readonly specs: readonly FunctionSpec[];
  /**
   * TTL of the stage cache for routes with `cacheKeyPathParams` (seconds); 0: no cache (and no
   * cache cluster, which is billed by the hour).
   */
  readonly statusCacheSeconds?: number;
  readonly functions: ReadonlyMap<string, lambda.IFunction>;
  /** Runs before every route marked `authorized` (Cognito on AWS, the JWT Lambda locally). */
  readonly authorizer?: apigateway.IAuthorizer;
  /**
   * LocalStack only: authorized routes get no authorizer in the template; they are listed in
   * `deferredAuthorizedRoutes` and deploy-local.sh attaches the authorizer after the deploy.
   */
  readonly deferAuthorizer?: boolean;
}

/** The REST API (API Gateway v1; LocalStack's community edition has no HTTP API). */
export class Api extends Construct {
  readonly restApi: apigateway.RestApi;
  /** "METHOD /path" of every authorized route left for deploy-local.sh (deferAuthorizer). */
  readonly deferredAuthorizedRoutes: string[] = [];

  constructor(scope: Construct, id: string, props: ApiProps) {
    super(scope, id);
    // "<path>/<METHOD>" -> its own throttle: API Gateway applies method settings within the
    // stage's limit, so reserve's cap below the stage limit leaves the rest to other routes.
    const methodOptions: Record<string, apigateway.MethodDeploymentOptions> = {};
    const cacheSeconds = props.statusCacheSeconds ?? 0;
    let anyCached = false;
    for (const spec of props.specs) {
      for (const route of spec.routes ?? []) {
        const options: apigateway.MethodDeploymentOptions = {};
        if (route.throttle) {
          const limits = props.methodThrottles[route.throttle];
          Object.assign(options, { throttlingRateLimit: limits.rateLimit, throttlingBurstLimit: limits.burstLimit });
        }
        if (route.cacheKeyPathParams && cacheSeconds > 0) {
          // Stage cache on this method only (method settings turn it on per method).
          Object.assign(options, { cachingEnabled: true, cacheTtl: Duration.seconds(cacheSeconds) });
          anyCached = true;
        }
        if (Object.keys(options).length) methodOptions[`${route.path}/${route.method}`] = options;
      }
    }
    this.restApi = new apigateway.RestApi(this, 'RestApi', {
      restApiName: `flashsale-${props.stage}`,
      description: 'flashsale backend',
      // Regional: the API is called by the shop's own front end / CDN, not through the
      // edge-optimised CloudFront distribution API Gateway would otherwise add.
      endpointConfiguration: { types: [apigateway.EndpointType.REGIONAL] },
      // No account-wide CloudWatch role (it would attach a managed policy); no execution logs.
      cloudWatchRole: false,
      deployOptions: {
        stageName: props.stage,
        // Stage-wide throttling (all methods): the first line of defence when a sale opens.
        throttlingRateLimit: props.throttleRateLimit,
        throttlingBurstLimit: props.throttleBurstLimit,
        metricsEnabled: true,
        methodOptions,
        // The smallest cache cluster (0.5 GB): the queue status is a few hundred bytes per sale.
        ...(anyCached && { cacheClusterEnabled: true, cacheClusterSize: '0.5' }),
      },
    });

    for (const spec of props.specs) {
      if (!spec.routes?.length) continue;
      const fn = props.functions.get(spec.name);
      if (!fn) throw new Error(`routes of "${spec.name}" but no such function`);
      // Proxy integration: the whole request goes to the function (lambda_http parses it).
      // No test-invoke permission: one Lambda permission per route, for the deployed stage.
      const integration = new apigateway.LambdaIntegration(fn, { proxy: true, allowTestInvoke: false });
      for (const route of spec.routes) {
        const cached = route.cacheKeyPathParams && cacheSeconds > 0;
        // A cached route's key: its path parameters (declared on the method, named on the
        // integration), so each sale has its own cached answer.
        const cacheParams = (route.cacheKeyPathParams ?? []).map((p) => `method.request.path.${p}`);
        let auth: apigateway.MethodOptions;
        if (route.authorized && props.deferAuthorizer) {
          auth = { authorizationType: apigateway.AuthorizationType.NONE };
          this.deferredAuthorizedRoutes.push(`${route.method} ${route.path}`);
        } else if (route.authorized) {
          if (!props.authorizer) {
            throw new Error(`${route.method} ${route.path} of "${spec.name}" is authorized but the API has no authorizer (locally the "authorizer" function spec provides it)`);
          }
          auth = { authorizer: props.authorizer, authorizationType: props.authorizer.authorizationType };
        } else {
          auth = { authorizationType: apigateway.AuthorizationType.NONE };
        }
        const routeIntegration = cached
          ? new apigateway.LambdaIntegration(fn, { proxy: true, allowTestInvoke: false, cacheKeyParameters: cacheParams })
          : integration;
        this.restApi.root.resourceForPath(route.path).addMethod(route.method, routeIntegration, {
          ...auth,
          ...(cached && { requestParameters: Object.fromEntries(cacheParams.map((p) => [p, true])) }),
        });
      }
    }
  }
}
