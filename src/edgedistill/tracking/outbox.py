"""Calls to a remote tracker made in order on one daemon thread, so a slow or unreachable server never holds up
training. The first call that fails is reported once and every call after it is dropped."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable


class Outbox:
    def __init__(self, on_failure: Callable[[BaseException], None]):
        self.on_failure = on_failure
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="edgedistill-tracking", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def put(self, call: Callable[[], Any]) -> Future:
        """Queue a call; its Future holds its result, or is cancelled once the outbox has failed or closed."""
        future: Future = Future()
        if self.failed or not self._thread.is_alive():
            future.cancel()
        else:
            self._queue.put((call, future))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            call, future = item
            if self.failed or not future.set_running_or_notify_cancel():
                future.cancel()
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # noqa: BLE001 (anything the tracker raises ends tracking, not the run)
                self.fail(exc)
                future.set_exception(exc)

    def fail(self, exc: BaseException) -> None:
        """Drop everything still queued; the owner is told once."""
        if self.error is None:
            self.error = exc
            self.on_failure(exc)

    def wait(self, timeout_s: float) -> bool:
        """Whether everything queued so far was sent within timeout_s."""
        try:
            self.put(lambda: None).result(timeout=timeout_s)
        except FutureTimeout:
            return False
        except CancelledError:  # failed or closed before: nothing more will be sent
            pass
        return True

    def close(self, timeout_s: float) -> bool:
        """Send what is queued, then stop the thread; False when it was still busy after timeout_s."""
        sent = self.wait(timeout_s)
        self._queue.put(None)
        return sent
