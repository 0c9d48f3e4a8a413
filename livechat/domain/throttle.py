"""Login throttling: too many failures for one account, or from one client address, within a
window → 429 with Retry-After. Failures age out, so nobody is locked out for good."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable

from livechat.errors import TooManyRequests

TOO_MANY_ATTEMPTS = "Too many login attempts, try again later"


class FailureWindow:
    """Failure timestamps per key over a sliding window; bounded memory (least recent keys go)."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_keys, self.clock = limit, window, max_keys, clock
        self._failures: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def _live(self, key: Hashable) -> deque[float] | None:
        stamps = self._failures.get(key)
        if stamps is None:
            return None
        horizon = self.clock() - self.window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return None
        return stamps

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        stamps = self._live(key)
        if stamps is None or len(stamps) < self.limit:
            return 0.0
        return stamps[-self.limit] + self.window - self.clock()

    def fail(self, key: Hashable) -> None:
        stamps = self._live(key)
        if stamps is None:
            stamps = self._failures[key] = deque()
        self._failures.move_to_end(key)
        stamps.append(self.clock())
        while len(stamps) > self.limit:
            stamps.popleft()
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def clear(self, key: Hashable) -> None:
        self._failures.pop(key, None)


class LoginThrottle:
    def __init__(self, per_account: int, per_client: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._accounts = FailureWindow(per_account, window, clock=clock)
        self._clients = FailureWindow(per_client, window, clock=clock)

    def check(self, email: str, client: str) -> None:
        wait = max(self._accounts.retry_after(email), self._clients.retry_after(client))
        if wait > 0:
            raise TooManyRequests(TOO_MANY_ATTEMPTS, retry_after=max(1, math.ceil(wait)))

    def failed(self, email: str, client: str) -> None:
        self._accounts.fail(email)
        self._clients.fail(client)

    def succeeded(self, email: str) -> None:
        self._accounts.clear(email)
