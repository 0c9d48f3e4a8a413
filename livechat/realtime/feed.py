"""The change feed: what other livechat processes wrote reaches this process's sockets.

Every process follows one change stream over the messages and conversations collections (one
stream, so a message stored before a close is seen before it, as in the database). Its own writes
are skipped there — they were delivered at once — and the rest go to the fanout, which delivers
each message once and in seq order. When the stream breaks (database restart, network) the feed
resumes from its last position; when that is impossible it starts afresh and has every room
re-read from the database by seq, so no live socket misses a message. A feed that falls behind
says so in the log with its lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from livechat.domain.models import Conversation, Message
from livechat.domain.ports import Change, ChangeSource, HistoryLost
from livechat.errors import DomainError
from livechat.realtime.fanout import Fanout

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.1, 5.0
LAG_WARNING = 1.0  # seconds behind the database before the log hears of it…
LAG_LOG_EVERY = 10.0  # …and at most this often while it stays behind


class ChangeFeed:
    def __init__(self, source: ChangeSource, fanout: Fanout, *,
                 observe_message: Callable[[Message], None] = lambda message: None,
                 observe_conversation: Callable[[Conversation], None] = lambda conv: None,
                 on_history_lost: Callable[[], None] = lambda: None,
                 handlers: dict[type, Callable[[Any], None]] | None = None) -> None:
        self._source = source
        self._fanout = fanout
        self._observe_message = observe_message  # the seq allocator skips seqs others took
        self._observe_conversation = observe_conversation  # the analytics read model
        self._on_history_lost = on_history_lost  # …which may have missed conversations meanwhile
        self._handlers = handlers or {}  # documents that are not messages or conversations (presence, routing)
        self._position: Any = None
        self._stream: AsyncIterator[Change] | None = None
        self._closer: contextlib.AsyncExitStack | None = None
        self._task: asyncio.Task | None = None
        self.lag = 0.0  # seconds between a change's write and our reading it
        self._lag_logged = 0.0

    async def start(self) -> None:
        """Open the stream now, so everything written from here on is seen; fail fast if the
        database has no change streams (``ChangeStreamUnsupported``)."""
        await self._open()
        self._task = asyncio.create_task(self._run(), name="change-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    async def _open(self) -> None:
        self._closer = contextlib.AsyncExitStack()
        stream = await self._closer.enter_async_context(self._source.changes(self._position))
        self._apply(await anext(stream))  # the first answer proves the stream works
        self._stream = stream

    async def _close(self) -> None:
        closer, self._closer, self._stream = self._closer, None, None
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer.aclose()

    async def _run(self) -> None:
        pause = RETRY_FIRST
        while True:
            try:
                if self._stream is None:
                    lost = self._position is None
                    await self._open()
                    log.info("change stream %s", "restarted; re-reading every room" if lost else "resumed")
                    if lost:
                        self._fanout.catch_up()
                        self._on_history_lost()
                pause = RETRY_FIRST
                async for change in self._stream:
                    self._apply(change)
            except HistoryLost as exc:
                log.warning("change stream cannot resume from its position (%s); starting afresh", exc)
                self._position = None
                await self._close()
            except (DomainError, OSError) as exc:
                log.warning("change stream interrupted (%s); resuming in %.1fs",
                            getattr(exc, "message", type(exc).__name__), pause)
                await self._close()
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX)

    def _apply(self, change: Change) -> None:
        self._position = change.position
        if change.wall_time is not None:
            self._measure(change.wall_time)
        document = change.document
        if document is None:
            return
        handler = self._handlers.get(type(document))
        if handler is not None:
            handler(document)
            return
        if isinstance(document, Message):
            self._observe_message(document)
        elif isinstance(document, Conversation):
            self._observe_conversation(document)
        self._fanout.apply_remote(document)

    def _measure(self, wall_time: datetime) -> None:
        if wall_time.tzinfo is None:
            wall_time = wall_time.replace(tzinfo=UTC)
        self.lag = max(0.0, (datetime.now(UTC) - wall_time).total_seconds())
        now = time.monotonic()
        if self.lag > LAG_WARNING and now - self._lag_logged > LAG_LOG_EVERY:
            self._lag_logged = now
            log.warning("change stream is %.1fs behind the database", self.lag)
