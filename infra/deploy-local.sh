#!/usr/bin/env bash
# Deploys the flashsale stack to a LocalStack that is already running on 127.0.0.1:4566.
#
# Needs: `npm ci` done in infra/, and x86_64 function builds in <repo>/target/lambda/<name>/bootstrap
# (`cargo lambda build --release --x86-64`; arm64 binaries do not run on an x86 host).
# Bootstraps the CDK toolkit stack first when it is missing (idempotent), deploys with
# `-c local=true -c arch=x86_64`, writes the outputs to <repo>/.local/stack-outputs.json and prints
# the REST API URL in LocalStack's path form (the stack's ApiUrl output is not reachable here).
# Needs the LocalStack venv (.local/venv, from localstack/install.sh) for one boto3 call.
# Identity: LocalStack has no Cognito, so a JWT TOKEN authorizer checks tokens signed with the key
# pair in <repo>/.local/jwt/ (private.pem signs test tokens, public.pem goes to the authorizer);
# the pair is generated with openssl when public.pem is missing. Rate limits: every local client
# is 127.0.0.1, so the per-IP bucket gets big numbers (the per-user one keeps its defaults).
#
# Environment (all optional): LOCALSTACK_ENDPOINT (default http://127.0.0.1:4566), STAGE (dev),
# REDIS_URL (redis://127.0.0.1:6379, what the functions connect to), AWS_FAULT_PROXY_URL
# (http://127.0.0.1:4567; empty: the functions call LocalStack directly), LAMBDA_DIR
# (<repo>/target/lambda). Extra arguments are passed to `cdk deploy` (e.g. --hotswap).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
endpoint="${LOCALSTACK_ENDPOINT:-http://127.0.0.1:4566}"
stage="${STAGE:-dev}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
lambda_dir="${LAMBDA_DIR:-$repo/target/lambda}"
jwt_dir="$repo/.local/jwt"
jwt_public_key="$repo/.local/jwt/public.pem"
outputs="$repo/.local/stack-outputs.json"
stack="Flashsale-$stage"
# How long API Gateway keeps an authorizer result per token (infra/lib/config.ts
# authorizerCacheSeconds); 0 makes every call invoke the authorizer.
authorizer_cache_seconds="${AUTHORIZER_CACHE_SECONDS:-300}"
account=000000000000 # LocalStack's account for the access key "test"
region=us-east-1

# Only LocalStack, never a real account: dummy credentials, and no profile or ambient settings
# that could point the CLI elsewhere. cdklocal (aws-cdk-local, for aws-cdk >= 2.177) also strips
# other AWS_* variables and requires AWS_ENDPOINT_URL_S3 next to AWS_ENDPOINT_URL. Without them
# it would default to *.localhost.localstack.cloud, which does not resolve on machines without
# internet DNS; 127.0.0.1 makes the SDK use path-style S3 addressing.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION="$region" AWS_DEFAULT_REGION="$region"
export AWS_ENDPOINT_URL="$endpoint" AWS_ENDPOINT_URL_S3="$endpoint"
# No calls home: notices and CLI telemetry would try to reach the internet.
export CDK_DISABLE_CLI_TELEMETRY=true

cd "$here"
if [[ ! -x node_modules/.bin/cdklocal ]]; then
  echo "infra/node_modules is missing: run 'npm ci' in $here" >&2
  exit 1
fi
if ! health="$(curl -fsS --max-time 5 "$endpoint/_localstack/health")"; then
  echo "LocalStack is not answering at $endpoint (start it first)" >&2
  exit 1
fi
# Every service the stack (and cdk bootstrap/deploy) uses must be enabled in LocalStack's SERVICES.
needed="cloudformation s3 ssm sts iam lambda logs apigateway dynamodb dynamodbstreams sqs sns ses cloudwatch stepfunctions events"
node -e '
  const [health, needed] = process.argv.slice(1);
  const services = JSON.parse(health).services || {};
  const missing = needed.split(" ").filter((s) => !services[s] || services[s] === "disabled");
  if (missing.length) {
    console.error(`LocalStack lacks services the stack needs: ${missing.join(", ")} (add them to SERVICES)`);
    process.exit(1);
  }
' "$health" "$needed"
if [[ ! -d "$lambda_dir" ]]; then
  echo "no function builds in $lambda_dir: run 'cargo lambda build --release --x86-64' first" >&2
  exit 1
fi

if [[ ! -f "$jwt_public_key" ]]; then
  if ! command -v openssl >/dev/null; then
    echo "$jwt_public_key is missing and openssl is not installed to generate it" >&2
    exit 1
  fi
  echo "generating the local JWT key pair in $jwt_dir"
  mkdir -p "$jwt_dir"
  (
    cd "$jwt_dir"
    umask 077
    # Keep an existing private key (tokens already signed with it stay valid).
    [[ -f private.pem ]] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out private.pem
    openssl pkey -in private.pem -pubout -out public.pem
  )
fi

context=(-c local=true -c arch=x86_64 -c "stage=$stage" -c "redisUrl=$redis_url" -c "lambdaDir=$lambda_dir"
  -c "jwtPublicKeyFile=$jwt_public_key" -c rateIpCapacity=100000 -c rateIpRefillPerSec=10000
  -c authorizerViaApi=true -c "authorizerCacheSeconds=$authorizer_cache_seconds"
  # Short waits for the provider's webhook and a short breaker cool-down, so the end-to-end
  # tests of timeouts and outages finish in seconds (AWS defaults: 600 s / 300 s / 30 s).
  -c chargeTimeoutSeconds="${CHARGE_TIMEOUT_SECONDS:-50}" -c chargeHeartbeatSeconds="${CHARGE_HEARTBEAT_SECONDS:-25}" -c refundRecheckSeconds=5
  -c breakerFailureThreshold=3 -c breakerCooldownMs=5000
  # A hold with no record is released after 20 s (AWS: 60 s): long enough for a reserve in
  # flight to write its record, short enough for the chaos suite's killed reserves to settle.
  -c holdGraceMs=20000
  # Reserved concurrency inside the local account's 400 (localstack/env.sh says why it is
  # 400): 150 for reserve, 30 for each payment-path function, 30 for the waiting room, 130
  # left unreserved (AWS keeps at least 100 unreserved). AWS defaults: 400, 50 and 100 of the
  # account's 1000.
  -c reserveConcurrency=150 -c paymentConcurrency=30 -c queueConcurrency=30
  # The bot defence blocks the buyer only (the default): every local client calls from
  # 127.0.0.1, so an address block would lock every test and the demo out for an hour.
  -c botBlockAddresses=false)
# DynamoDB and Step Functions through the fault proxy localstack/env.sh starts (it only forwards
# until the chaos suite sets a fault); AWS_FAULT_PROXY_URL= (empty) makes the functions go direct.
fault_proxy="${AWS_FAULT_PROXY_URL-http://127.0.0.1:4567}"
if [[ -n "$fault_proxy" ]]; then context+=(-c "awsFaultProxyUrl=$fault_proxy"); fi

# Notifications: the mail sender verified in LocalStack's SES (instant there; on AWS the stack
# declares the identity and SES mails a link), and an SNS platform application for push (no
# CloudFormation resource exists for one; LocalStack delivers nothing, it keeps what was sent
# for the tests to read). Both calls are idempotent.
mail_sender="notifications@flashsale.test"
push_app_arn="$("$repo/.local/venv/bin/python" - "$endpoint" "$mail_sender" "$stage" <<'PY'
import sys

import boto3

endpoint, sender, stage = sys.argv[1:]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
boto3.client("ses", **kw).verify_email_identity(EmailAddress=sender)
app = boto3.client("sns", **kw).create_platform_application(
    Name=f"flashsale-{stage}-push", Platform="GCM", Attributes={"PlatformCredential": "local-fcm-key"})
print(app["PlatformApplicationArn"])
PY
)"
context+=(-c "mailSender=$mail_sender" -c "pushPlatformApplicationArn=$push_app_arn"
  # LocalStack polls a mapping one batch a second: 100 a batch drains a backlog 10x faster.
  -c notifierBatchSize=100)
cdklocal=(node_modules/.bin/cdklocal --no-notices)

# Bootstrap only when the toolkit stack's version parameter is missing. The probe is an SSM
# GetParameter in the JSON protocol; LocalStack does not check signatures, it only reads the
# service and region from the credential scope. Any answer other than 200 means "bootstrap",
# and `cdk bootstrap` is itself idempotent, so a wrong guess costs time, never correctness.
bootstrapped() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST "$endpoint/" \
    -H 'Content-Type: application/x-amz-json-1.1' \
    -H 'X-Amz-Target: AmazonSSM.GetParameter' \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/$region/ssm/aws4_request, SignedHeaders=content-type;host;x-amz-target, Signature=0" \
    -d '{"Name":"/cdk-bootstrap/hnb659fds/version"}' || true)"
  [[ "$code" == 200 ]]
}
if bootstrapped; then
  echo "CDK toolkit already bootstrapped in aws://$account/$region"
else
  echo "bootstrapping aws://$account/$region"
  "${cdklocal[@]}" bootstrap "aws://$account/$region" "${context[@]}"
fi

mkdir -p "$(dirname "$outputs")"
"${cdklocal[@]}" deploy "$stack" "${context[@]}" \
  --require-approval never \
  --outputs-file "$outputs" \
  "$@"

# Three LocalStack (community) gaps, closed through the APIs after the deploy:
# - CloudFormation cannot create AWS::ApiGateway::Authorizer: attach the TOKEN authorizer here;
# - CloudFormation cannot update an AWS::ApiGateway::Stage ("the update operation is not
#   implemented"), so after a change the stage would be lost: create a deployment for it;
# - CloudFormation ignores a function's ReservedConcurrentExecutions (the Lambda API itself
#   honours it): put each function's reserved concurrency from the synthesised template.
read -r api_id stage_name < <(node -e '
  const [file, stack] = process.argv.slice(1);
  const o = require(file)[stack];
  if (!o || !o.ApiId || !o.StageName) { console.error(`no ApiId/StageName for ${stack} in ${file}`); process.exit(1); }
  console.log(`${o.ApiId} ${o.StageName}`);
' "$outputs" "$stack")
"$repo/.local/venv/bin/python" - "$endpoint" "$api_id" "$stage_name" "$outputs" "$stack" "$authorizer_cache_seconds" <<'PY'
import json
import sys

import boto3

endpoint, api_id, stage, outputs_file, stack, cache_seconds = sys.argv[1:]
outputs = json.load(open(outputs_file))[stack]
client = boto3.client("apigateway", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")

# LocalStack's community CloudFormation cannot create AWS::ApiGateway::Authorizer, so the stack
# (synthesised with authorizerViaApi=true) leaves it to us: one TOKEN authorizer on the
# Authorization header, its results cached for authorizerCacheSeconds (LocalStack's gateway
# does not cache; our authorizer step does, localstack/host_executor), attached to every route
# the stack lists.
fn_arn = outputs["AuthorizerFunctionArn"]
uri = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{fn_arn}/invocations"
name = f"flashsale-{stage}-jwt"
existing = [a for a in client.get_authorizers(restApiId=api_id)["items"] if a["name"] == name]
if existing:
    authorizer_id = existing[0]["id"]
    client.update_authorizer(restApiId=api_id, authorizerId=authorizer_id, patchOperations=[
        {"op": "replace", "path": "/authorizerUri", "value": uri},
        {"op": "replace", "path": "/authorizerResultTtlInSeconds", "value": cache_seconds},
    ])
else:
    authorizer_id = client.create_authorizer(
        restApiId=api_id, name=name, type="TOKEN", authorizerUri=uri,
        identitySource="method.request.header.Authorization", authorizerResultTtlInSeconds=int(cache_seconds),
    )["id"]
resources = {r["path"]: r["id"] for r in client.get_resources(restApiId=api_id, limit=500)["items"]}
for route in json.loads(outputs["AuthorizedRoutes"]):
    method, path = route.split(" ", 1)
    client.update_method(restApiId=api_id, resourceId=resources[path], httpMethod=method, patchOperations=[
        {"op": "replace", "path": "/authorizationType", "value": "CUSTOM"},
        {"op": "replace", "path": "/authorizerId", "value": authorizer_id},
    ])
client.create_deployment(restApiId=api_id, stageName=stage, description="deploy-local.sh")

# Reserved concurrency, as the template asks (the capacity split of infra/lib/config.ts).
template = json.load(open(f"cdk.out/{stack}.template.json"))
cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
lam = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]}
for logical, resource in template["Resources"].items():
    reserved = resource.get("Properties", {}).get("ReservedConcurrentExecutions")
    if resource["Type"] == "AWS::Lambda::Function" and reserved is not None:
        lam.put_function_concurrency(FunctionName=physical[logical], ReservedConcurrentExecutions=int(reserved))
        print(f"reserved concurrency {reserved}: {physical[logical]}")
PY

# The REST API URL on LocalStack: /_aws/execute-api/<id>/<stage> on the gateway.
api_url="$endpoint/_aws/execute-api/$api_id/$stage_name"

# The payment sandbox (started by localstack/env.sh) delivers its webhooks to this API.
sandbox="http://127.0.0.1:${FLASHSALE_SANDBOX_PORT:-12111}"
if curl -fsS --max-time 2 -X POST "$sandbox/_sandbox/switches" -H 'Content-Type: application/json' \
  -d "{\"webhook_url\": \"$api_url/webhooks/payments\"}" >/dev/null; then
  echo "payment sandbox: webhooks go to $api_url/webhooks/payments"
else
  echo "payment sandbox not reachable at $sandbox: payments will wait for webhooks that never come" >&2
fi
echo "outputs: $outputs"
echo "REST API: $api_url"
echo "try:      curl -s $api_url/health"
