"""Typing for the other processes (README "Signals").

A forwarded ``TYPING`` (already throttled to one per socket per 2 s) reaches this process's sockets
at once (``Fanout.typing``); the other processes only see the database, so it is also written to
the short-lived ``typing`` collection that their change feeds follow — but only while another
process is alive (its heartbeat is fresh): one process alone writes nothing. The socket never
waits for that write: signals wait here, one per typing person and conversation, and one
``insert_many`` at a time carries all that came meanwhile. A signal that cannot be written is
dropped (a late "is typing" is worse than none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from bson import ObjectId

from livechat.domain.models import TypingSignal
from livechat.domain.ports import TypingRepo
from livechat.errors import DomainError

log = logging.getLogger(__name__)

WARN_EVERY = 10.0  # seconds between two warnings about signals that could not be written


class TypingRelay:
    def __init__(self, repo: TypingRepo, others_alive: Callable[[], bool]) -> None:
        self._repo = repo
        self._others_alive = others_alive
        self._pending: dict[tuple[ObjectId, ObjectId], TypingSignal] = {}
        self._wake = asyncio.Event()
        self._warned = float("-inf")

    def offer(self, signal: TypingSignal) -> None:
        if not self._others_alive():
            return
        self._pending[(signal.conversation_id, signal.user_id)] = signal  # a newer one replaces the older
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._run(), name="typing-relay")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = list(self._pending.values()), {}
            try:
                await self._repo.insert_many(batch)
            except DomainError as exc:
                self._warn("typing signals not passed to other processes (%s); dropped", exc.message)
            except Exception:  # noqa: BLE001 — typing must never stop for good: the next ones try again
                self._warn("typing signals not passed to other processes (unexpected error); dropped",
                           exc_info=True)

    def _warn(self, text: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._warned > WARN_EVERY:
            self._warned = now
            log.warning(text, *args, exc_info=exc_info)
