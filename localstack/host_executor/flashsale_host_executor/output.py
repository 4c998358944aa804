"""Capture of a bootstrap process's combined stdout/stderr.

The function's log lines must end up in the invocation they belong to. A function
writes its last lines and then posts its response; by the time the response reaches
us those bytes are in the pipe, but a background reader may not have picked them up
yet. So `drain()` does not rely on the reader thread: it reads whatever is in the
pipe itself, under the same lock, before handing the collected bytes out. Anything
written before the response was sent is therefore part of that invocation's logs.
"""

from __future__ import annotations

import os
import select
import threading

# get_logs() (LocalStack prints it when a start-up fails) keeps this much history.
HISTORY_LIMIT = 256 * 1024


class OutputCapture:
    def __init__(self, fd: int, name: str) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._lock = threading.Lock()
        self._pending = bytearray()  # not yet handed to an invocation
        self._history = bytearray()  # everything, bounded, for get_logs()
        self._eof = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name=f"lambda-host-output-{name}", daemon=True)
        self._thread.start()

    def _read_available(self) -> None:
        """Move everything currently in the pipe into the buffers. Caller holds the lock."""
        while not self._closed:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._eof.set()
                self._close()
                return
            self._pending += chunk
            self._history += chunk
            if len(self._history) > HISTORY_LIMIT:
                del self._history[: len(self._history) - HISTORY_LIMIT]

    def _close(self) -> None:
        # Only ever closed under the lock and only once, so no reader can touch a
        # descriptor number that the process has reused meanwhile.
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def _pump(self) -> None:
        # poll, not select: LocalStack holds many descriptors and select() breaks above 1024.
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not self._eof.is_set():
            # The pipe closes when the process group dies, which wakes us; the timeout
            # is only a safety net against a descriptor closed under a blocked poll.
            events = poller.poll(5000)
            with self._lock:
                if self._closed:
                    return
                if events:
                    self._read_available()

    def drain(self) -> bytes:
        """Everything written since the last drain, including bytes still in the pipe."""
        with self._lock:
            self._read_available()
            out = bytes(self._pending)
            self._pending.clear()
        return out

    def drain_to_eof(self, timeout: float) -> bytes:
        """After the process died: wait (bounded) for the pipe to close, then drain.

        The write end can outlive the process only in a child that escaped its process
        group; the timeout keeps such a straggler from blocking the error report.
        """
        self._eof.wait(timeout)
        return self.drain()

    def history(self) -> bytes:
        with self._lock:
            self._read_available()
            return bytes(self._history)

    def close(self) -> None:
        with self._lock:
            self._close()
