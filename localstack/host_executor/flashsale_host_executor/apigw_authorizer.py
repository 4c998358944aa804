"""Lambda TOKEN authorizers for REST APIs, which LocalStack's community edition does not run.

LocalStack 4.9's REST API gateway (next_gen execute_api) has no authorizer step: a method with
authorizationType CUSTOM is invoked as if it were open. This module adds that step to the
gateway's handler chain, as API Gateway does it:

1. read the token from the authorizer's identity source (a request header);
   missing -> 401 Unauthorized;
2. invoke the authorizer function with {"type": "TOKEN", "authorizationToken", "methodArn"};
   an error "Unauthorized" -> 401, any other failure -> 500 (AuthorizerConfigurationException);
3. evaluate the returned policy against the method ARN (explicit Deny wins; Allow needed);
   not allowed -> 403 AccessDeniedException;
4. hand `principalId` and the returned context to the integration as
   `$context.authorizer` (the Lambda proxy event's requestContext.authorizer).

Results are cached as API Gateway caches them: per authorizer and token value (the identity
source), for the authorizer's `authorizerResultTtlInSeconds` (0 turns caching off), until the
stage is redeployed. A cached
result's policy is evaluated against each request's method ARN, so a policy that names only
one method refuses the others from the cache, as on AWS. Failed authorizations (401, or an
authorizer error) are not cached.

Only TOKEN authorizers are supported (what flashsale uses locally). It is registered at
LocalStack start by an `on_infra_start` hook (see pyproject.toml).
"""

import fnmatch
import json
import logging
import threading
import time

LOG = logging.getLogger(__name__)


def _matches(pattern: str, arn: str) -> bool:
    # In execute-api ARNs "*" matches any run of characters, "/" included; nothing else is special.
    escaped = pattern.replace("[", "[[]").replace("?", "[?]")
    return fnmatch.fnmatchcase(arn, escaped)


def policy_allows(policy: dict, method_arn: str) -> bool:
    """True when some Allow statement for execute-api:Invoke covers the ARN and no Deny does."""
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    allowed = False
    for statement in statements:
        actions = statement.get("Action") or []
        actions = [actions] if isinstance(actions, str) else actions
        if not any(a in ("execute-api:Invoke", "execute-api:*", "*") for a in actions):
            continue
        resources = statement.get("Resource") or []
        resources = [resources] if isinstance(resources, str) else resources
        if any(_matches(r, method_arn) for r in resources):
            if statement.get("Effect") == "Deny":
                return False
            if statement.get("Effect") == "Allow":
                allowed = True
    return allowed


class ResultCache:
    """The authorizer results API Gateway keeps: (authorizer, token) -> result, for `ttl`
    seconds from when it was made; at most `max_entries` (the oldest go first)."""

    def __init__(self, max_entries: int = 50_000, clock=time.monotonic):
        self._entries: dict = {}
        self._lock = threading.Lock()
        self._max = max_entries
        self._clock = clock

    def get(self, key):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if self._clock() >= expires:
                del self._entries[key]
                return None
            return value

    def put(self, key, value, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self._max:
                now = self._clock()
                for k in [k for k, (e, _) in self._entries.items() if e <= now]:
                    del self._entries[k]
                while len(self._entries) >= self._max:
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = (self._clock() + ttl, value)


CACHE = ResultCache()


def _function_arn(authorizer_uri: str) -> str:
    # arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<function arn>/invocations
    return authorizer_uri.split("/functions/", 1)[1].rsplit("/invocations", 1)[0]


def token_authorizer_handler(chain, context, response):
    """A RestApiGatewayHandler: runs after routing, before the integration."""
    from localstack.services.apigateway.next_gen.execute_api.gateway_response import (
        AccessDeniedError,
        AuthorizerConfigurationError,
        UnauthorizedError,
    )

    method = context.resource_method or {}
    if method.get("authorizationType") != "CUSTOM":
        return
    authorizer = context.deployment.rest_api.authorizers.get(method.get("authorizerId") or "")
    if not authorizer or authorizer.get("type") != "TOKEN":
        raise AuthorizerConfigurationError("unsupported or missing authorizer")

    header = (authorizer.get("identitySource") or "").removeprefix("method.request.header.")
    token = context.invocation_request["headers"].get(header)
    if not token:
        raise UnauthorizedError("Unauthorized")

    http_method = context.invocation_request["http_method"]
    path = context.invocation_request["path"]
    method_arn = (
        f"arn:aws:execute-api:{context.region}:{context.account_id}:{context.api_id}/"
        f"{context.stage}/{http_method}{path}"
    )
    ttl = int(authorizer.get("authorizerResultTtlInSeconds") or 0)
    # Keyed by deployment too: a redeploy of the stage starts a fresh cache, as on AWS.
    cache_key = (context.api_id, getattr(context, "deployment_id", None), authorizer.get("id"), token)
    payload = CACHE.get(cache_key) if ttl > 0 else None
    if payload is None:
        payload = _invoke(authorizer, context, token, method_arn)
        CACHE.put(cache_key, payload, ttl)
    if not policy_allows(payload["policyDocument"], method_arn):
        raise AccessDeniedError("User is not authorized to access this resource")

    authorizer_context = {"principalId": payload.get("principalId")}
    # API Gateway passes context values as strings, numbers or booleans only.
    for key, value in (payload.get("context") or {}).items():
        if isinstance(value, (str, int, float, bool)):
            authorizer_context[key] = value
    context.context_variables["authorizer"] = authorizer_context


def _invoke(authorizer, context, token: str, method_arn: str) -> dict:
    """Runs the authorizer function; its result (a dict with a policy) or the gateway error."""
    from localstack.aws.connect import connect_to
    from localstack.services.apigateway.next_gen.execute_api.gateway_response import (
        AuthorizerConfigurationError,
        UnauthorizedError,
    )

    event = {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}
    client = connect_to(aws_access_key_id=context.account_id, region_name=context.region).lambda_
    try:
        result = client.invoke(
            FunctionName=_function_arn(authorizer["authorizerUri"]),
            Payload=json.dumps(event).encode(),
        )
        payload = json.loads(result["Payload"].read() or b"null")
    except Exception as error:  # the function could not be invoked at all
        LOG.warning("authorizer invocation failed: %s", error)
        raise AuthorizerConfigurationError("authorizer invocation failed")

    if result.get("FunctionError"):
        if isinstance(payload, dict) and payload.get("errorMessage") == "Unauthorized":
            raise UnauthorizedError("Unauthorized")
        raise AuthorizerConfigurationError("authorizer failed")
    if not isinstance(payload, dict) or not isinstance(payload.get("policyDocument"), dict):
        raise AuthorizerConfigurationError("authorizer returned no policy")
    return payload


def register():
    """Insert the authorizer step into every REST API gateway created from now on."""
    from localstack.services.apigateway.next_gen.execute_api import gateway as gateway_module
    from localstack.services.apigateway.next_gen.execute_api import handlers

    cls = gateway_module.RestApiGateway
    if getattr(cls, "_flashsale_authorizers", False):
        return
    original_init = cls.__init__

    def init_with_authorizers(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        # After routing (the method is known), before API keys and the integration.
        index = self.request_handlers.index(handlers.preprocess_request) + 1
        self.request_handlers.insert(index, token_authorizer_handler)

    cls.__init__ = init_with_authorizers
    cls._flashsale_authorizers = True
    LOG.info("flashsale: Lambda TOKEN authorizers enabled for REST APIs")


try:  # the hook decorator exists only inside LocalStack's runtime
    from localstack.runtime import hooks

    @hooks.on_infra_start()
    def register_token_authorizers():
        register()

except ImportError:  # imported outside LocalStack (unit tests of policy_allows)
    pass
