"""One Lambda execution environment on the host: a `bootstrap` process plus the
"init" that the Docker executor would run inside the container.

The init is a small threaded HTTP server on 127.0.0.1:<ephemeral> that

* serves the Lambda Runtime API to the bootstrap
  (`/2018-06-01/runtime/invocation/next`, `.../{id}/response`, `.../{id}/error`,
  `/2018-06-01/runtime/init/error`),
* accepts LocalStack's `POST /invoke` (sent by LocalStack's ExecutorEndpoint), and
* reports back to LocalStack's executor endpoint (see `reporter.py`).

Life of an invocation::

    LocalStack            init (this module)                bootstrap
    POST /invoke  ----->  pending = inv, start timer
                                                  <-----   GET /next (blocked until pending)
                          current = inv           ----->   event
                                                  <-----   POST /{id}/response | /{id}/error
                          drain output, post logs, post result
    future resolved <---

A timeout or the process dying while an invocation is pending or current ends
that invocation with `Sandbox.Timedout` / `Runtime.ExitError`; the process is then
gone and the next invoke starts a fresh one (AWS does the same: a new init).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import signal
import socket
import subprocess
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flashsale_host_executor.output import OutputCapture
from flashsale_host_executor.reporter import Reporter

LOG = logging.getLogger(__name__)

RUNTIME_PREFIX = "/2018-06-01/runtime"


@dataclasses.dataclass
class Invocation:
    request_id: str
    payload: bytes
    function_arn: str
    trace_id: str | None
    client_context: str | None
    cognito_identity: str | None
    received: float  # time.monotonic()
    deadline_ms: int  # epoch milliseconds, as the Runtime API reports it
    prefix_logs: bytes = b""  # output of the process between invocations (init logs)
    finished: bool = False  # set exactly once, under the environment's lock
    timer: threading.Timer | None = None
    init_duration_ms: float | None = None  # set when this invocation saw its process's init


class BootstrapProcess:
    """The bootstrap, started in its own process group so that killing the group also
    kills whatever the function started."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], name: str) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,  # one pipe keeps stdout and stderr lines in order
                process_group=0,
                close_fds=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.started = time.monotonic()
        self.init_ms: float | None = None  # spawn -> first GET /next
        self.init_reported = False  # "Init Duration" goes into one REPORT line only
        self.output = OutputCapture(read_fd, name)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the leader."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            LOG.warning("bootstrap %s did not die within 5 s of SIGKILL", self.popen.pid)

    def max_rss_mb(self) -> int | None:
        try:
            with open(f"/proc/{self.popen.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return math.ceil(int(line.split()[1]) / 1024)
        except OSError:
            pass
        return None


def _exit_description(returncode: int) -> str:
    # Same wording as AWS (which prints Go's os.ProcessState): "exit status 1", "signal: killed".
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"signal: {-returncode}"
    names = {"SIGKILL": "killed", "SIGSEGV": "segmentation fault", "SIGABRT": "aborted", "SIGTERM": "terminated"}
    return f"signal: {names.get(name, name.lower())}"


def normalise_error(body: bytes, error_type: str | None) -> bytes:
    """The payload LocalStack returns to the caller for a function error.

    Runtimes post `{"errorMessage", "errorType", "stackTrace"}` and repeat the type
    in the Lambda-Runtime-Function-Error-Type header. A body that already carries an
    errorType goes through byte for byte; otherwise the header's type is added, so
    Step Functions Retry/Catch can always match on it.
    """
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("errorType"):
        return body
    if not isinstance(document, dict):
        document = {"errorMessage": body.decode("utf-8", "replace")}
    document["errorType"] = error_type or "Unhandled"
    document.setdefault("errorMessage", "")
    return json.dumps(document).encode()


def _peer_closed(sock: socket.socket) -> bool:
    """True if the client of this connection has gone (its process was killed)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class HostEnvironment:
    def __init__(
        self,
        executor_id: str,
        bootstrap: str,
        task_root: str,
        env: dict[str, str],
        timeout_seconds: int,
        memory_mb: int,
        qualifier: str,
        reporter: Reporter,
    ) -> None:
        self.executor_id = executor_id
        self.bootstrap = bootstrap
        self.task_root = task_root
        self.env = env
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.qualifier = qualifier
        self.reporter = reporter

        # All state below is guarded by _cond.
        self._cond = threading.Condition()
        self._proc: BootstrapProcess | None = None
        self._pending: Invocation | None = None  # accepted by /invoke, not yet fetched
        self._current: Invocation | None = None  # fetched by /next, not yet answered
        self._ready_reported = False  # the startup future may be resolved only once
        self._stopping = False
        self._history = bytearray()  # output of processes that are gone, for get_logs()

        self._server = _RuntimeApiServer(("127.0.0.1", 0), _Handler)
        self._server.environment = self
        self._server_thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        """Start the Runtime API server and the first bootstrap (the init phase)."""
        self.env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{self.port}"
        self._server_thread = threading.Thread(
            target=self._serve, name=f"lambda-host-api-{self.executor_id}", daemon=True
        )
        self._server_thread.start()
        with self._cond:
            try:
                self._spawn_locked()
            except OSError as e:
                # e.g. bootstrap missing or not executable (AWS: Runtime.InvalidEntrypoint)
                self._ready_reported = True
                body = {"errorType": "Runtime.InvalidEntrypoint", "errorMessage": f"{e}"}
                spawn_error = json.dumps(body).encode()
            else:
                spawn_error = None
        if spawn_error is not None:
            self.reporter.init_error(spawn_error)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            proc, self._proc = self._proc, None
            for inv in (self._pending, self._current):
                if inv is not None:
                    inv.finished = True
                    if inv.timer:
                        inv.timer.cancel()
            self._pending = self._current = None
            self._cond.notify_all()
        if proc is not None:
            proc.kill()
            self._retire(proc, 0)
        if self._server_thread is not None:
            # Wake the accept() in _serve, which then sees _stopping and returns.
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                pass
            self._server_thread.join(timeout=2)
        self._server.server_close()

    def _serve(self) -> None:
        # Instead of serve_forever(), which polls every poll_interval: an idle
        # environment costs no CPU, and stop() ends the loop at once.
        listener = self._server.socket
        while True:
            try:
                connection, address = listener.accept()
            except OSError:
                return
            if self._stopping:
                connection.close()
                return
            self._server.process_request(connection, address)  # one thread per connection

    def logs(self) -> str:
        with self._cond:
            data = bytes(self._history)
            proc = self._proc
        if proc is not None:
            data += proc.output.history()
        return data.decode("utf-8", "replace")

    # --- process handling (callers hold _cond) --------------------------------

    def _spawn_locked(self) -> BootstrapProcess:
        proc = BootstrapProcess([self.bootstrap], self.task_root, self.env, self.executor_id)
        self._proc = proc
        LOG.debug("executor %s: started bootstrap pid %s", self.executor_id, proc.pid)
        threading.Thread(
            target=self._watch, args=(proc,), name=f"lambda-host-watch-{proc.pid}", daemon=True
        ).start()
        return proc

    def _retire(self, proc: BootstrapProcess, eof_timeout: float) -> bytes:
        """Collect what a dead process wrote since the last drain; keep its history for get_logs()."""
        output = proc.output.drain_to_eof(eof_timeout)
        history = proc.output.history()
        proc.output.close()
        with self._cond:
            self._history += history
            del self._history[: max(0, len(self._history) - 256 * 1024)]
        return output

    def _watch(self, proc: BootstrapProcess) -> None:
        """Notice a bootstrap that exits by itself (crash, os.exit, init failure)."""
        # Wait without reaping: while the leader is an unreaped zombie its pid (and so
        # its process group id) cannot be reused, so the killpg below cannot hit a
        # stranger.
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # already reaped by kill(): whoever killed it has taken it out of _proc
        with self._cond:
            if self._proc is not proc:
                return  # killed on purpose (timeout, init error, stop): already handled
            self._proc = None
            inv = self._take_unfinished_locked()
            init_failed = not self._ready_reported
            self._ready_reported = True
            self._cond.notify_all()
        # The leader is gone; whatever it left in its group goes too.
        proc.kill()
        returncode = proc.popen.returncode
        output = self._retire(proc, 1.0)
        reason = _exit_description(returncode)
        if inv is not None:
            message = f"RequestId: {inv.request_id} Error: Runtime exited with error: {reason}"
            body = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode()
            self._complete(inv, proc, ok=False, body=body, output=output, trailer=f"{message}\nRuntime.ExitError\n")
        elif init_failed:
            message = f"Runtime exited with error: {reason}"
            LOG.debug("executor %s: bootstrap exited during init: %s", self.executor_id, reason)
            self.reporter.init_error(
                json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode()
            )
        else:
            # Exited between invocations: nothing to report; the next invoke starts a new one.
            LOG.debug("executor %s: idle bootstrap exited (%s)", self.executor_id, reason)

    def _take_unfinished_locked(self) -> Invocation | None:
        inv = self._current or self._pending
        self._current = self._pending = None
        if inv is None or inv.finished:
            return None
        inv.finished = True
        return inv

    # --- invocation results -----------------------------------------------------

    def _compose_logs(self, inv: Invocation, proc: BootstrapProcess | None, output: bytes, trailer: str) -> str:
        duration_ms = (time.monotonic() - inv.received) * 1000
        rid = inv.request_id
        report = (
            f"REPORT RequestId: {rid}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {self.memory_mb} MB\t"
        )
        rss = proc.max_rss_mb() if proc is not None else None
        if rss is not None:
            report += f"Max Memory Used: {rss} MB\t"
        if inv.init_duration_ms is not None:
            report += f"Init Duration: {inv.init_duration_ms:.2f} ms\t"
        body = output.decode("utf-8", "replace")
        if body and not body.endswith("\n"):
            body += "\n"
        return (
            inv.prefix_logs.decode("utf-8", "replace")
            + f"START RequestId: {rid} Version: {self.qualifier}\n"
            + body
            + trailer
            + f"END RequestId: {rid}\n"
            + report
            + "\n"
        )

    def _complete(
        self,
        inv: Invocation,
        proc: BootstrapProcess | None,
        ok: bool,
        body: bytes,
        output: bytes | None = None,
        trailer: str = "",
    ) -> None:
        """Report a finished invocation. The caller has set inv.finished under the lock,
        so this runs once per invocation."""
        if inv.timer is not None:
            inv.timer.cancel()
        if output is None:
            # Everything the function wrote before it sent its result is in the pipe now.
            output = proc.output.drain() if proc is not None else b""
        self.reporter.logs(inv.request_id, self._compose_logs(inv, proc, output, trailer))
        if ok:
            self.reporter.response(inv.request_id, body)
        else:
            self.reporter.error(inv.request_id, body)

    def _on_timeout(self, inv: Invocation) -> None:
        with self._cond:
            if inv.finished:
                return
            inv.finished = True
            if self._current is inv:
                self._current = None
            if self._pending is inv:
                self._pending = None
            proc, self._proc = self._proc, None
            self._cond.notify_all()
        output = b""
        if proc is not None:
            proc.kill()
            output = self._retire(proc, 1.0)
        seconds = f"{self.timeout_seconds:.2f}"
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        body = json.dumps(
            {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {inv.request_id} Error: Task timed out after {seconds} seconds",
            }
        ).encode()
        trailer = f"{now} {inv.request_id} Task timed out after {seconds} seconds\n"
        self._complete(inv, proc, ok=False, body=body, output=output, trailer=trailer)

    # --- HTTP handlers (called from the server's threads) ------------------------

    def handle_invoke(self, body: bytes) -> HTTPStatus:
        try:
            request = json.loads(body)
        except ValueError:
            return HTTPStatus.BAD_REQUEST
        now = time.monotonic()
        inv = Invocation(
            request_id=request["invoke-id"],
            payload=request.get("payload", "").encode(),
            function_arn=request.get("invoked-function-arn", ""),
            trace_id=request.get("trace-id"),
            client_context=request.get("client-context"),
            cognito_identity=request.get("cognito-identity"),
            received=now,
            deadline_ms=int(time.time() * 1000) + self.timeout_seconds * 1000,
        )
        spawn_error = None
        with self._cond:
            if self._stopping:
                return HTTPStatus.SERVICE_UNAVAILABLE
            if self._pending is not None or self._current is not None:
                # LocalStack reserves an environment per invocation; this is a bug if it happens.
                LOG.warning("executor %s: invoke while busy", self.executor_id)
                return HTTPStatus.CONFLICT
            if self._proc is None:
                # The previous process timed out or crashed: start a fresh one, whose
                # init now counts into this invocation, as on AWS.
                try:
                    self._spawn_locked()
                except OSError as e:
                    spawn_error = e
            else:
                inv.prefix_logs = self._proc.output.drain()
            if spawn_error is None:
                self._pending = inv
                inv.timer = threading.Timer(self.timeout_seconds, self._on_timeout, args=(inv,))
                inv.timer.daemon = True
                inv.timer.start()
                self._cond.notify_all()
            else:
                inv.finished = True
        if spawn_error is not None:
            body = json.dumps({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": str(spawn_error)})
            self._complete(inv, None, ok=False, body=body.encode(), output=b"")
        return HTTPStatus.ACCEPTED

    def handle_next(self, connection: socket.socket) -> Invocation | None:
        """Block until there is an invocation for this bootstrap; None if there never will be."""
        report_ready = False
        with self._cond:
            proc = self._proc
            if proc is None or self._stopping:
                return None
            if proc.init_ms is None:
                proc.init_ms = (time.monotonic() - proc.started) * 1000
            if not self._ready_reported:
                self._ready_reported = True
                report_ready = True
        if report_ready:
            # First /next of the environment: the init phase is over.
            self.reporter.ready()
        with self._cond:
            while True:
                # A handler thread of a killed process must not take the next invocation
                # (it would hand it to a dead socket): it is bound to `proc`, and checks
                # that its client still exists.
                if self._stopping or self._proc is not proc:
                    return None
                inv = self._pending
                if inv is not None and not inv.finished:
                    if _peer_closed(connection):
                        return None
                    self._pending = None
                    self._current = inv
                    if not proc.init_reported:
                        proc.init_reported = True
                        inv.init_duration_ms = proc.init_ms
                    return inv
                # Every state change notifies; the timeout is only a safety net.
                self._cond.wait(timeout=10.0)

    def handle_result(self, request_id: str, ok: bool, body: bytes, error_type: str | None) -> HTTPStatus:
        with self._cond:
            inv = self._current
            if inv is None or inv.request_id != request_id or inv.finished:
                return HTTPStatus.BAD_REQUEST
            inv.finished = True
            self._current = None
            proc = self._proc
        payload = body if ok else normalise_error(body, error_type)
        self._complete(inv, proc, ok=ok, body=payload)
        return HTTPStatus.ACCEPTED

    def handle_init_error(self, body: bytes, error_type: str | None) -> HTTPStatus:
        payload = normalise_error(body, error_type or "Runtime.Unknown")
        with self._cond:
            proc, self._proc = self._proc, None
            startup = not self._ready_reported
            self._ready_reported = True
            inv = None if startup else self._take_unfinished_locked()
            self._cond.notify_all()
        output = b""
        if proc is not None:
            # The runtime is expected to exit after reporting; make sure it does.
            proc.kill()
            output = self._retire(proc, 1.0)
        if startup:
            self.reporter.init_error(payload)
        elif inv is not None:
            self._complete(inv, proc, ok=False, body=payload, output=output)
        return HTTPStatus.ACCEPTED


class _RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True
    environment: HostEnvironment

    def handle_error(self, request, client_address) -> None:
        # A killed bootstrap leaves connections that fail on the next write: expected.
        LOG.debug("runtime api %s: error serving %s", self.environment.executor_id, client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps the bootstrap's connection alive between /next calls.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the second waits
    # for the client's delayed ACK, which adds 40 ms to every call.
    disable_nagle_algorithm = True
    server: _RuntimeApiServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (signature of the base class)
        LOG.debug("runtime api %s: " + format, self.server.environment.executor_id, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers, up to the blank line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: HTTPStatus, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body or "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", (headers or {}).get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        env = self.server.environment
        if self.path != f"{RUNTIME_PREFIX}/invocation/next":
            self._reply(HTTPStatus.NOT_FOUND, b'{"errorType":"NotFound"}')
            return
        inv = env.handle_next(self.connection)
        if inv is None:
            # Environment stopping or this process replaced: no event will come.
            self.close_connection = True
            self._reply(HTTPStatus.GONE, b'{"errorType":"EnvironmentStopped"}')
            return
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": inv.function_arn,
        }
        if inv.trace_id:
            headers["Lambda-Runtime-Trace-Id"] = inv.trace_id
        if inv.client_context:
            headers["Lambda-Runtime-Client-Context"] = inv.client_context
        if inv.cognito_identity:
            headers["Lambda-Runtime-Cognito-Identity"] = inv.cognito_identity
        self._reply(HTTPStatus.OK, inv.payload, headers)

    def do_POST(self) -> None:
        env = self.server.environment
        body = self._read_body()
        path = self.path
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        if path == "/invoke":
            status = env.handle_invoke(body)
        elif path == f"{RUNTIME_PREFIX}/init/error":
            status = env.handle_init_error(body, error_type)
        elif path.startswith(f"{RUNTIME_PREFIX}/invocation/") and path.endswith(("/response", "/error")):
            request_id, _, kind = path[len(f"{RUNTIME_PREFIX}/invocation/") :].rpartition("/")
            status = env.handle_result(request_id, kind == "response", body, error_type)
        else:
            status = HTTPStatus.NOT_FOUND
        if status == HTTPStatus.ACCEPTED:
            self._reply(status, b'{"status":"OK"}')
        else:
            self._reply(status, json.dumps({"errorType": status.phrase.replace(" ", "")}).encode())
