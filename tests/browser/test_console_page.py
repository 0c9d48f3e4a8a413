"""The console page as the app serves it (in-process, no browser): profiles, headers, static files."""

from __future__ import annotations

import re

import pytest

from livechat.config import Profile
from tests.conftest import make_settings


def signup_roles(html: str) -> list[str]:
    select = re.search(r'<select id="signup-role"[^>]*>(.*?)</select>', html, re.DOTALL)
    assert select, html
    return re.findall(r'<option value="([a-z]+)">', select.group(1))


@pytest.mark.parametrize(("profile", "roles"), [
    (Profile.DEVELOPMENT, ["candidate", "agent", "supervisor", "admin"]),
    (Profile.PRODUCTION, ["candidate"]),
])
async def test_the_signup_form_offers_the_roles_the_profile_allows(app_client, mongo_uri, profile, roles):
    client = await app_client(make_settings(mongo_uri, profile=profile))
    resp = await client.get("/console")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert signup_roles(await resp.text()) == roles
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


async def test_static_files_are_served_by_exact_name_only(client):
    resp = await client.get("/static/console.js")
    assert resp.status == 200 and resp.content_type == "application/javascript"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/static/", "/static/missing.js", "/static/%2e%2e/setup.py", "/static/..%2fsetup.py",
                 "/static/%2e%2e%2flivechat%2fapp.py"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert await resp.json() == {"success": False, "error": "Route not found"}


async def test_the_page_links_versioned_local_assets(client):
    html = await (await client.get("/")).text()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert sorted(a.split("?")[0] for a in assets) == ["/static/console.css", "/static/console.js"]
    for asset in assets:
        assert re.search(r"\?v=[0-9a-f]+$", asset)
        assert (await client.get(asset)).status == 200
