#!/usr/bin/env node
// CDK app entry. Context (-c key=value): arch (arm64 | x86_64), local ("true" = LocalStack),
// redisUrl (local only), lambdaDir (cargo lambda build output, relative to infra/), stage,
// jwtPublicKeyFile (required when local=true: the PEM the local JWT authorizer verifies with).
// See lib/config.ts for the optional tuning knobs.
import { App } from 'aws-cdk-lib';
import { configFromContext } from '../lib/config';
import { FlashsaleStack } from '../lib/flashsale-stack';

const app = new App();
const config = configFromContext((key) => app.node.tryGetContext(key));

// Environment-agnostic on purpose (no env: account/region come from the deploying credentials):
// synth needs no AWS access, and the VPC spans the region's first two AZs (Fn::GetAZs).
new FlashsaleStack(app, `Flashsale-${config.stage}`, {
  config,
  description: `flashsale backend (${config.stage}${config.local ? ', LocalStack' : ''})`,
});
