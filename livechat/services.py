"""The services and their assembly: everything with a lifetime, started in order and stopped in
reverse. The edges (``web/``, ``realtime/ws.py``) reach the domain only through ``Services``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from attrs import frozen

from livechat.config import ConfigError, FanoutMode, Settings
from livechat.domain.analytics import AnalyticsService
from livechat.domain.auth import AuthService, PasswordHasher, TokenCodec
from livechat.domain.conversations import ConversationService
from livechat.domain.events import EventBus
from livechat.domain.messages import MessageService
from livechat.domain.models import AgentPresence, ProcessBeat, Routing, TokensRevoked, utcnow
from livechat.domain.presence import PresenceService
from livechat.domain.routing import RoutingService
from livechat.domain.signals import SignalService
from livechat.domain.teams import TeamService
from livechat.domain.throttle import FailureWindow, LoginThrottle
from livechat.metrics import Metrics
from livechat.realtime.fanout import Fanout
from livechat.realtime.feed import ChangeFeed
from livechat.realtime.hub import Hub
from livechat.realtime.inbox import Inbox
from livechat.realtime.typing_relay import TypingRelay
from livechat.storage.embedded import embedded_database
from livechat.storage.mongo import MongoStore, open_store, redact_uri

log = logging.getLogger(__name__)


@frozen
class Services:
    store: MongoStore
    hub: Hub
    fanout: Fanout
    auth: AuthService
    conversations: ConversationService
    teams: TeamService
    messages: MessageService
    presence: PresenceService
    routing: RoutingService
    analytics: AnalyticsService
    signals: SignalService
    feed: ChangeFeed | None = None  # None: ws.fanout = "process"
    # WebSocket upgrades refused for a bad token, per client address (realtime/ws.py).
    upgrade_failures: FailureWindow | None = None

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the database answers (GET /health/ready)."""
        await self.store.ping()


@contextlib.asynccontextmanager
async def database_uri(settings: Settings) -> AsyncIterator[str]:
    """The configured MongoDB, or (development, no URI) an embedded SecantusDB for our lifetime."""
    if settings.database.uri:
        log.info("database: %s", redact_uri(settings.database.uri))
        yield settings.database.uri
        return
    if settings.is_production:
        raise ConfigError("database.uri: MONGODB_URI is required in production")
    async with embedded_database(settings.database.embedded_command, settings.data_dir,
                                 settings.database.embedded_start_timeout) as uri:
        yield uri


def login_throttle(settings: Settings) -> LoginThrottle:
    auth = settings.auth
    return LoginThrottle(auth.login_failures_per_account, auth.login_failures_per_client,
                         auth.login_window.total_seconds())


@contextlib.asynccontextmanager
async def open_services(settings: Settings, hub: Hub | None = None, *,
                        clock: Callable[[], datetime] = utcnow) -> AsyncIterator[Services]:
    """Database (embedded if need be), repositories, hashing threads, the message writer and,
    with ``ws.fanout = "changestream"``, the change feed. ``clock`` says when conversations and
    messages happen (their times are analytics facts; tests script them)."""
    if not settings.auth.jwt_secret:
        raise ConfigError("auth.jwt_secret: no JWT secret (call config.with_jwt_secret first)")
    hub = hub or Hub(settings.ws.max_sockets_per_user)
    metrics: Metrics = hub.metrics
    hasher = PasswordHasher(settings.auth.bcrypt_rounds, settings.auth.hash_threads)
    try:
        async with database_uri(settings) as uri, \
                open_store(settings.database, uri, observe_db=metrics.observe_db) as store:
            backfilled = await store.conversations.backfill_facts()
            if backfilled:
                log.info("analytics: backfilled the facts of %d earlier conversations", backfilled)
            tokens = TokenCodec(settings.auth.jwt_secret, settings.auth.jwt_expires_in, settings.auth.jwt_leeway)
            bus = EventBus()
            presence = PresenceService(store.presence, bus, process=store.writer, ttl=1.5 * settings.ws.heartbeat)
            routing = RoutingService(store.routing, store.conversations, store.users, presence, bus,
                                     requeue_after=settings.routing.requeue_after.total_seconds(), clock=clock)
            inbox = Inbox(store.conversations, store.users, store.reads, is_auto=routing.is_auto)
            changestream = settings.ws.fanout is FanoutMode.CHANGESTREAM
            typing = TypingRelay(store.typing, presence.others_alive if changestream else lambda: False)
            fanout = Fanout(hub, store.messages, store.conversations, inbox, relay_typing=typing.offer)
            bus.subscribe(fanout.publish)
            bus.subscribe(routing.on_event)
            messages = MessageService(store.conversations, store.messages, bus, clock=clock,
                                      facts_interval=settings.database.facts_interval,
                                      max_queued=settings.ws.max_queued_sends, on_busy=metrics.writer_busy.inc,
                                      on_batch=metrics.writer_batch.observe, on_stored=metrics.messages_stored.inc,
                                      shared=presence.others_alive)

            def revoke(revoked: TokensRevoked) -> None:
                hub.revoke(revoked.user_id, revoked.token_version)

            feed = None
            if changestream:
                feed = ChangeFeed(store, fanout, observe_message=messages.observe,
                                  observe_conversation=store.conversations.observe,
                                  on_history_lost=store.conversations.reload_facts,
                                  handlers={AgentPresence: presence.apply, ProcessBeat: presence.heard_beat,
                                            Routing: routing.apply, TokensRevoked: revoke})
                await feed.start()
                metrics.fanout_lag.set_function(lambda: feed.lag)
            sweep = min(5.0, settings.routing.requeue_after.total_seconds() / 4)
            try:
                # The analytics read model, loaded in the background.
                store.conversations.start_facts(shared=presence.others_alive if changestream else None)
                async with presence.running(), routing.running(sweep), messages.running(), typing.running():
                    yield Services(
                        store=store,
                        hub=hub,
                        fanout=fanout,
                        auth=AuthService(store.users, hasher, tokens, login_throttle(settings),
                                         open_signup=not settings.is_production, on_revoked=revoke),
                        conversations=ConversationService(store.conversations, store.users, store.messages,
                                                          bus, writes=messages, clock=clock),
                        teams=TeamService(store.users, store.conversations),
                        messages=messages,
                        presence=presence,
                        routing=routing,
                        analytics=AnalyticsService(store.conversations, store.users, clock=clock),
                        signals=SignalService(store.conversations, store.messages, store.reads, store.notes, bus,
                                              clock=clock),
                        feed=feed,
                        upgrade_failures=FailureWindow(settings.ws.unauthenticated_per_client,
                                                       settings.ws.unauthenticated_window.total_seconds()),
                    )
            finally:
                if feed is not None:
                    await feed.stop()
                await fanout.stop()
                await inbox.stop()
                await store.conversations.stop_facts()
    finally:
        hasher.close()
