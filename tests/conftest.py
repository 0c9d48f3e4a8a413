"""Test fixtures: one real SecantusDB process per session, a fresh database per test, and the
real app served over real HTTP/WebSocket on a loopback port (pytest-aiohttp's test server)."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pymongo
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from livechat.app import create_app
from livechat.config import AuthSettings, DatabaseSettings, Driver, Profile, Settings
from livechat.storage.embedded import EmbeddedServer
from livechat.web.access_log import AccessLogger
from tests.api_documents import ResponseChecker

TEST_SECRET = "test-secret-" + "x7Qp2" * 8  # >= 32 bytes: PyJWT warns below that, and warnings are errors
PASSWORD = "correct horse battery"
_counter = itertools.count()


@pytest.fixture(scope="session")
def mongo_uri() -> str:
    """The session's database server: SecantusDB in memory, started once, stopped at the end."""
    server = EmbeddedServer(os.environ.get("LIVECHAT_TEST_DB_COMMAND", "secantusd-py"), ":memory:")
    server.start()
    try:
        server.wait_ready(30)
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _mongo_admin(mongo_uri: str):
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _drop_databases_after_each_test(_mongo_admin: pymongo.MongoClient):
    """Drop the databases ``make_settings`` named during the test (``test_…``: apps that live as
    long as one test) when it ends — after its apps have stopped: this fixture is set up first, so
    torn down last. Servers that outlive a test (the browser tests', the fuzz target's) use other
    names and keep theirs. In some full runs a database command near the end passed the 2 s
    timeout the tests had then; the ~800 databases (tens of thousands of WiredTiger tables) that
    one shared server had accumulated by then are the first suspect."""
    yield
    for name in _mongo_admin.list_database_names():
        if name.startswith(DATABASE_PREFIX):
            _mongo_admin.drop_database(name)


DATABASE_PREFIX = "test_"


def make_settings(mongo_uri: str, *, profile: Profile = Profile.DEVELOPMENT,
                  driver: Driver | None = None, **sections: Any) -> Settings:
    driver = driver or Driver(os.environ.get("LIVECHAT_TEST_DRIVER", "motor"))
    settings = Settings(
        profile=profile,
        database=DatabaseSettings(uri=mongo_uri, name=f"{DATABASE_PREFIX}{next(_counter)}_{uuid.uuid4().hex[:8]}",
                                  driver=driver, timeout_ms=3000),  # the production default
        auth=AuthSettings(jwt_secret=TEST_SECRET, bcrypt_rounds=4),
    )
    for section, changes in sections.items():
        settings = attrs.evolve(settings, **{section: attrs.evolve(getattr(settings, section), **changes)})
    return settings


@pytest.fixture
def settings(mongo_uri: str) -> Settings:
    return make_settings(mongo_uri)


INTERNALS = re.compile(r"Traceback \(most recent call last\)|\b[A-Z]\w*(?:Error|Exception)\b|File \"/")


class Audit:
    """What every test is checked for at its end (SECURITY.md): no password or token it used in any
    log line, and no stack trace or exception class name in any HTTP response body."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.leaky_responses: list[str] = []

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        body = getattr(response, "body", None)
        if isinstance(body, bytes | bytearray) and INTERNALS.search(body.decode("utf-8", "replace")):
            self.leaky_responses.append(f"{request.method} {request.path}: {body[:300]!r}")
        if request.path in ("/auth/signup", "/auth/login") and request.can_read_body:
            with contextlib.suppress(Exception):
                sent = json.loads(await request.read())
                if isinstance(sent.get("password"), str) and len(sent["password"]) >= 8:
                    self.secrets.add(sent["password"])
        if isinstance(body, bytes | bytearray) and b'"token"' in body:
            with contextlib.suppress(Exception):
                self.secrets.add(json.loads(body)["data"]["token"])

    def check_logs(self, records: list[logging.LogRecord]) -> None:
        for record in records:
            text = record.getMessage() + (logging.Formatter().formatException(record.exc_info)
                                          if record.exc_info else "")
            for secret in self.secrets:
                assert secret not in text, f"a secret reached the log: {record.name}: {text[:200]}"
        assert not self.leaky_responses, self.leaky_responses


@pytest.fixture(autouse=True)
def audit(caplog) -> Audit:
    caplog.set_level(logging.INFO)
    audit = Audit()
    yield audit
    audit.check_logs(caplog.get_records("setup") + caplog.get_records("call"))


@pytest.fixture
def documented() -> ResponseChecker:
    """Every answer of an ``app_client`` app is checked against docs/openapi.json: a test whose
    app answered something the document does not say fails at its end."""
    checker = ResponseChecker()
    yield checker
    survey = os.environ.get("LIVECHAT_TEST_API_SURVEY")  # a file: collect instead of failing
    if survey:
        with open(survey, "a", encoding="utf-8") as out:
            out.writelines(line + "\n" for line in checker.mismatches)
        return
    assert not checker.mismatches, "answers that docs/openapi.json does not describe:\n" + "\n".join(
        checker.mismatches[:10])


@pytest.fixture
def app_client(aiohttp_server, aiohttp_client, audit: Audit, documented: ResponseChecker) -> Callable[[Settings], Any]:
    """Start the real app for some settings on a loopback port; return an HTTP/WS client for it."""

    async def start(settings: Settings, **app_options: Any) -> TestClient:
        app = create_app(settings, **app_options)  # e.g. clock=: a scripted time (tests/test_analytics.py)
        app.on_response_prepare.append(audit.on_response_prepare)
        app.on_response_prepare.append(documented.on_response_prepare)
        server = await aiohttp_server(app, access_log_class=AccessLogger,
                                      keepalive_timeout=settings.server.keepalive_timeout)
        return await aiohttp_client(server)

    return start


@pytest.fixture
async def client(app_client, settings: Settings) -> TestClient:
    return await app_client(settings)


async def body(resp: ClientResponse) -> dict[str, Any]:
    """The JSON envelope, after checking that it is one."""
    assert resp.content_type == "application/json", await resp.text()
    data = await resp.json()
    assert isinstance(data, dict) and set(data) in ({"success", "data"}, {"success", "error"}), data
    return data


async def expect(resp: ClientResponse, status: int, error: str | None = None) -> Any:
    """Assert status (and the exact error message); return ``data`` of a success envelope."""
    data = await body(resp)
    assert resp.status == status, (resp.status, data)
    if status < 400:
        assert data["success"] is True
        return data["data"]
    assert data["success"] is False
    if error is not None:
        assert data["error"] == error
    return data["error"]


class Api:
    """Small helpers over the public API, so tests read as the steps a client takes."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def signup(self, role: str = "candidate", *, name: str | None = None, email: str | None = None,
                     password: str = PASSWORD, supervisor_id: str | None = None, token: str | None = None,
                     status: int = 201) -> dict[str, Any]:
        payload = {"name": name or f"{role.title()} {uuid.uuid4().hex[:6]}",
                   "email": email or f"{role}-{uuid.uuid4().hex[:10]}@example.com",
                   "password": password, "role": role}
        if supervisor_id is not None:
            payload["supervisorId"] = supervisor_id
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await self.client.post("/auth/signup", json=payload, headers=headers)
        data = await expect(resp, status)
        if status == 201:
            data["password"] = password
        return data

    async def login(self, email: str, password: str = PASSWORD) -> str:
        resp = await self.client.post("/auth/login", json={"email": email, "password": password})
        return (await expect(resp, 200))["token"]

    async def user(self, role: str = "candidate", **kwargs: Any) -> dict[str, Any]:
        """Sign up and log in; the user's fields plus ``token``."""
        data = await self.signup(role, **kwargs)
        data["token"] = await self.login(data["email"], data["password"])
        return data

    @staticmethod
    def auth(user_or_token: dict[str, Any] | str) -> dict[str, str]:
        token = user_or_token if isinstance(user_or_token, str) else user_or_token["token"]
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)


# --- the casts of the conversation and WebSocket tests (tests/conversations_helpers.py, tests/ws_helpers.py).
# Those helpers build on ``Api`` and ``expect`` above, so they are imported inside the fixtures: a
# module-level import would be circular.


@pytest.fixture
def chat(client: TestClient) -> Any:
    from tests.conversations_helpers import Chat

    return Chat(client)


@pytest.fixture
async def world(chat: Any) -> Any:
    """Supervisors S and S2 with agents A and A2, candidates C and C2, an admin, and C's conversation X
    addressed to S and assigned to A (see ``World``)."""
    from tests.conversations_helpers import World

    return await World.create(chat)


@pytest.fixture
async def scene(client: TestClient) -> Any:
    """Supervisor, agent, candidate and the candidate's conversation, assigned to the agent, on the
    default test app (see ``Scene``)."""
    from tests.ws_helpers import Scene

    return await Scene.create(client)
