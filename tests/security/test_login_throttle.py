"""Login brute force: 429 with Retry-After per account and per client address; never for good."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from livechat.domain.throttle import FailureWindow
from tests.conftest import PASSWORD, Api, expect, make_settings
from tests.contract import BAD_LOGIN

TOO_MANY = "Too many login attempts, try again later"


async def attempt(api: Api, email: str, password: str):
    return await api.client.post("/auth/login", json={"email": email, "password": password})


async def test_account_is_throttled_then_recovers(app_client, mongo_uri):
    api = Api(await app_client(make_settings(mongo_uri, auth={
        "login_failures_per_account": 3, "login_window": timedelta(seconds=1.5)})))
    user = await api.signup()
    for _ in range(3):
        await expect(await attempt(api, user["email"], "wrong-password"), 401, BAD_LOGIN)
    blocked = await attempt(api, user["email"], PASSWORD)  # even the right password waits
    await expect(blocked, 429, TOO_MANY)
    assert 1 <= int(blocked.headers["Retry-After"]) <= 2
    # Another account from the same address is not affected by this account's failures.
    other = await api.signup()
    await api.login(other["email"])
    await asyncio.sleep(1.6)
    await api.login(user["email"])  # the window passed: no permanent lockout


async def test_unknown_emails_are_throttled_like_known_ones(app_client, mongo_uri):
    api = Api(await app_client(make_settings(mongo_uri, auth={"login_failures_per_account": 2})))
    for _ in range(2):
        await expect(await attempt(api, "ghost@example.com", "whatever1"), 401)
    await expect(await attempt(api, "ghost@example.com", "whatever1"), 429, TOO_MANY)


async def test_client_address_is_throttled_across_accounts(app_client, mongo_uri):
    api = Api(await app_client(make_settings(mongo_uri, auth={"login_failures_per_client": 4})))
    for i in range(4):
        await expect(await attempt(api, f"spray{i}@example.com", "password1"), 401)
    resp = await attempt(api, "spray-next@example.com", "password1")
    await expect(resp, 429, TOO_MANY)
    assert int(resp.headers["Retry-After"]) >= 1


def test_failure_window_slides_and_stays_bounded():
    now = [0.0]
    window = FailureWindow(limit=2, window=10, max_keys=3, clock=lambda: now[0])
    window.fail("a")
    now[0] = 5
    window.fail("a")
    assert window.retry_after("a") == 5  # the first failure ages out at t=10
    now[0] = 10.5
    assert window.retry_after("a") == 0
    for key in "bcde":
        window.fail(key)
    assert window.retry_after("b") == 0 and len(window._failures) <= 3
