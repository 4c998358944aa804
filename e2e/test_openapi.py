"""The running API matches openapi.yaml: schemathesis generates requests from the document and
checks every answer (status documented, content type, body schema, headers, never a 5xx).
Run against the LocalStack deployment with a buyer token and an admin token."""

import subprocess

from conftest import ROOT, mint

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
])


def run_schemathesis(api, tok, extra=()):
    cmd = [
        str(ROOT / ".local" / "e2e" / "bin" / "schemathesis"), "run", str(ROOT / "openapi.yaml"),
        "--url", api,
        "-H", f"Authorization: Bearer {tok}",
        "--checks", CHECKS,
        "--max-examples", "25",
        "--request-timeout", "30",
        "--generation-deterministic",
        "--suppress-health-check", "all",
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_api_conforms_to_its_openapi_document_for_a_buyer(api):
    result = run_schemathesis(api, mint("--sub", "schemathesis-buyer")[0])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_the_api_conforms_to_its_openapi_document_for_an_admin(api):
    result = run_schemathesis(api, mint("--sub", "schemathesis-admin", "--admin")[0])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
