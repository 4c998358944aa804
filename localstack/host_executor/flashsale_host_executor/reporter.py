"""Client for LocalStack's executor endpoint (localstack/services/lambda_/invocation/executor_endpoint.py).

These are the calls the in-container init makes in the Docker set-up; LocalStack
resolves its futures from them. Going through the gateway (instead of resolving the
futures in-process) keeps this executor on LocalStack's documented protocol.
"""

from __future__ import annotations

import http.client
import json
import logging
from urllib.parse import urlsplit

LOG = logging.getLogger(__name__)


class Reporter:
    def __init__(self, runtime_endpoint: str, executor_id: str) -> None:
        # runtime_endpoint looks like http://127.0.0.1:4566/_localstack_lambda/<executor id>
        url = urlsplit(runtime_endpoint)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or 80
        self._prefix = url.path.rstrip("/")
        self._executor_id = executor_id

    def _post(self, path: str, body: bytes, content_type: str = "application/json") -> None:
        # A new connection per call: one or two calls per invocation, on loopback.
        conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
        try:
            conn.request("POST", self._prefix + path, body=body, headers={"Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            if response.status >= 300:
                # e.g. the environment was stopped meanwhile and its route is gone
                LOG.debug("executor endpoint %s answered %s", path, response.status)
        except OSError as e:
            LOG.warning("could not reach LocalStack's executor endpoint %s: %s", path, e)
        finally:
            conn.close()

    def ready(self) -> None:
        self._post(f"/status/{self._executor_id}/ready", b"")

    def init_error(self, payload: bytes) -> None:
        self._post(f"/status/{self._executor_id}/error", payload)

    def logs(self, request_id: str, logs: str) -> None:
        self._post(f"/invocations/{request_id}/logs", json.dumps({"logs": logs}).encode())

    def response(self, request_id: str, payload: bytes) -> None:
        self._post(f"/invocations/{request_id}/response", payload)

    def error(self, request_id: str, payload: bytes) -> None:
        self._post(f"/invocations/{request_id}/error", payload)
