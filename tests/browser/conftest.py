"""Browser tests: a real ``python -m livechat`` process and Debian's Chromium driven by Playwright.

The browser is the system one (``/usr/bin/chromium``, installed by ``.ci/run``); Playwright never
downloads a browser here. A missing browser FAILS these tests: it is never a reason to skip them.
Playwright's sync API runs its own event loop, so these tests are plain (non-async) functions and
the server runs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from livechat.storage.embedded import free_port
from tests.processes import http

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("LIVECHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
PASSWORD = "correct horse battery"
JWT_SECRET = "browser-test-secret-" + "Zq8v3" * 8
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# Console messages that are expected while a test deliberately breaks things (HTTP errors the page
# shows to the user, sockets refused while the context is offline). Anything else, CSP violations
# included, fails the test.
EXPECTED_CONSOLE = ("Failed to load resource", "WebSocket connection to")

expect.set_options(timeout=15_000)


class Server:
    """``python -m livechat serve`` on a free loopback port, on the session's database server."""

    def __init__(self, mongo_uri: str, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "server.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("LIVECHAT_") and k not in {"PORT", "MONGODB_URI", "JWT_SECRET", "CORS_ORIGIN"}}
        env.update({
            "MONGODB_URI": mongo_uri,
            "LIVECHAT_DATABASE_NAME": f"browser_{uuid.uuid4().hex[:10]}",
            "JWT_SECRET": JWT_SECRET,
            "LIVECHAT_DATA_DIR": str(data_dir),
            "LIVECHAT_AUTH_BCRYPT_ROUNDS": "4",
        })
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "livechat", "serve", "--port", str(self.port)],
                                         cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if http("GET", self.base + "/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("livechat was not ready in time:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    # REST shortcuts for test set-up (the flows under test go through the pages)
    def user(self, role: str, name: str | None = None, supervisor_id: str | None = None) -> dict[str, Any]:
        payload = {"name": name or f"{role.title()} {uuid.uuid4().hex[:6]}",
                   "email": f"{role}-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD, "role": role}
        if supervisor_id:
            payload["supervisorId"] = supervisor_id
        status, body = http("POST", self.base + "/auth/signup", payload)
        assert status == 201, body
        user = body["data"]
        status, body = http("POST", self.base + "/auth/login", {"email": payload["email"], "password": PASSWORD})
        assert status == 200, body
        return {**user, "password": PASSWORD, "token": body["data"]["token"]}

    def call(self, method: str, path: str, token: str, payload: dict | None = None, status: int = 200) -> Any:
        got, body = http(method, self.base + path, payload, token)
        assert got == status, body
        return body.get("data")


@pytest.fixture(scope="package")
def server(mongo_uri: str, tmp_path_factory) -> Iterator[Server]:
    server = Server(mongo_uri, tmp_path_factory.mktemp("browser-server"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# Module scope: Playwright's sync API keeps its own event loop current in this thread while it is
# started, so it must be stopped before any async (pytest-asyncio) test runs. Keep async tests in
# modules of their own (test_console_page.py), never beside browser tests.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (.ci/run does), "
                    "or point LIVECHAT_CHROMIUM at one. Browser tests never skip.")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Console:
    """One browser tab on the console, as one user: the steps a person takes, and what they see."""

    def __init__(self, context: BrowserContext, base: str) -> None:
        self.context = context
        self.base = base
        self.page: Page = context.new_page()
        self.dialogs: list[str] = []
        self.problems: list[str] = []
        self.urls: list[str] = []
        self.ws_frames: list[tuple[str, str, str]] = []  # (socket url, direction, frame)
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda err: self.problems.append(f"page error: {err}"))
        self.page.on("console", self._on_console)
        self.page.on("request", lambda req: self.urls.append(req.url))
        self.page.on("websocket", self._on_websocket)
        self.page.goto(base + "/")
        expect(self.page.locator("#auth-view")).to_be_visible()

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _on_console(self, msg) -> None:
        if msg.type in ("error", "warning") and not msg.text.startswith(EXPECTED_CONSOLE):
            self.problems.append(f"console {msg.type}: {msg.text}")

    def _on_websocket(self, ws) -> None:
        self.urls.append(ws.url)
        ws.on("framesent", lambda f: self.ws_frames.append((ws.url, "sent", f)))
        ws.on("framereceived", lambda f: self.ws_frames.append((ws.url, "received", f)))

    # --- signing in
    def signup(self, name: str, email: str, role: str, supervisor_id: str | None = None) -> None:
        p = self.page
        p.locator("#signup-name").fill(name)
        p.locator("#signup-email").fill(email)
        p.locator("#signup-password").fill(PASSWORD)
        p.locator("#signup-role").select_option(role)
        if supervisor_id:
            p.locator("#signup-supervisor").fill(supervisor_id)
        p.get_by_role("button", name="Sign up and log in").click()
        expect(p.locator(f"#{role}-view")).to_be_visible()

    def login(self, email: str, password: str = PASSWORD, role: str | None = None) -> None:
        p = self.page
        p.locator("#login-email").fill(email)
        p.locator("#login-password").fill(password)
        p.locator("#login-password").press("Enter")
        if role:
            expect(p.locator(f"#{role}-view")).to_be_visible()

    def token(self) -> str | None:
        return self.page.evaluate("sessionStorage.getItem('livechat.token')")

    # --- the conversation view
    @property
    def lines(self):
        return self.page.locator("#messages .msg-text")

    def send(self, text: str) -> None:
        box = self.page.get_by_label("Message", exact=True)
        box.fill(text)
        box.press("Enter")
        expect(box).to_have_value("")

    def expect_lines(self, texts: list[str]) -> None:
        expect(self.lines).to_have_text(texts)

    def expect_status(self, status: str) -> None:
        expect(self.page.locator("#chat-status")).to_have_text(status)

    def expect_connection(self, state: str) -> None:
        expect(self.page.locator("#chat-connection")).to_have_attribute("data-state", state)

    def notice(self):
        return self.page.locator("#notice-text")

    def screenshot(self, name: str, viewport: dict | None = None) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        if viewport:
            self.page.set_viewport_size(viewport)
        self.page.screenshot(path=str(path), full_page=True)
        if viewport:
            self.page.set_viewport_size(LAPTOP)
        return path

    def assert_clean(self) -> None:
        assert not self.dialogs, f"a dialog opened (script ran?): {self.dialogs}"
        assert not self.problems, self.problems


@pytest.fixture
def open_console(browser: Browser, server: Server) -> Iterator[Any]:
    """``open_console()`` → a fresh tab in its own browser context (its own sessionStorage)."""
    consoles: list[Console] = []

    def open_one(viewport: dict | None = None) -> Console:
        context = browser.new_context(viewport=viewport or LAPTOP)
        console = Console(context, server.base)
        consoles.append(console)
        return console

    yield open_one
    try:
        for console in consoles:
            console.assert_clean()
    finally:
        for console in consoles:
            console.context.close()
