"""Policy evaluation of the TOKEN authorizer step (pure; the step itself runs in the e2e tests,
where buyers are refused admin routes with 403 and bad tokens get 401)."""

from flashsale_host_executor.apigw_authorizer import policy_allows

BASE = "arn:aws:execute-api:us-east-1:000000000000:api1/dev"


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(*resources):
    return {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": list(resources)}


def test_a_wildcard_covers_any_path_including_slashes():
    assert policy_allows(policy(allow(f"{BASE}/*")), f"{BASE}/PUT/sales/s1")
    assert policy_allows(policy(allow(f"{BASE}/POST/sales/*/reservations")), f"{BASE}/POST/sales/s1/reservations")


def test_nothing_is_allowed_without_a_matching_allow():
    assert not policy_allows(policy(allow(f"{BASE}/GET/reservations/*")), f"{BASE}/PUT/sales/s1")
    assert not policy_allows(policy(), f"{BASE}/GET/x")
    other_action = {"Action": "s3:GetObject", "Effect": "Allow", "Resource": "*"}
    assert not policy_allows(policy(other_action), f"{BASE}/GET/x")


def test_an_explicit_deny_wins():
    deny = {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": f"{BASE}/PUT/*"}
    assert not policy_allows(policy(allow(f"{BASE}/*"), deny), f"{BASE}/PUT/sales/s1")
    assert policy_allows(policy(allow(f"{BASE}/*"), deny), f"{BASE}/GET/sales/s1")


def test_brackets_and_question_marks_are_literal():
    assert not policy_allows(policy(allow(f"{BASE}/GET/?")), f"{BASE}/GET/a")
    assert policy_allows(policy(allow(f"{BASE}/GET/[x]")), f"{BASE}/GET/[x]")


def test_the_result_cache_keeps_a_result_for_its_ttl_only():
    from flashsale_host_executor.apigw_authorizer import ResultCache

    now = [100.0]
    cache = ResultCache(max_entries=2, clock=lambda: now[0])
    cache.put(("api", "auth", "tok"), {"principalId": "a"}, ttl=300)
    assert cache.get(("api", "auth", "tok")) == {"principalId": "a"}
    assert cache.get(("api", "auth", "other")) is None
    now[0] += 299.9
    assert cache.get(("api", "auth", "tok")) is not None
    now[0] += 0.2
    assert cache.get(("api", "auth", "tok")) is None, "expired after its TTL"
    cache.put(("api", "auth", "zero"), {"principalId": "z"}, ttl=0)
    assert cache.get(("api", "auth", "zero")) is None, "TTL 0 caches nothing"


def test_the_result_cache_is_bounded():
    from flashsale_host_executor.apigw_authorizer import ResultCache

    cache = ResultCache(max_entries=2, clock=lambda: 0.0)
    for token in ("a", "b", "c"):
        cache.put(("api", "auth", token), token, ttl=60)
    assert cache.get(("api", "auth", "a")) is None, "the oldest went first"
    assert cache.get(("api", "auth", "c")) == "c"
