"""The analytics dashboard (/console/analytics) in a real Chromium: a supervisor and an admin see the
table, the inline SVG charts for a seeded range, and download the CSV.

The server is ``python -m livechat serve`` (real time, no scripted clock), so the seeded
conversations are today's (UTC); the figures themselves are checked exactly in tests/test_analytics.py.
"""

from __future__ import annotations

import csv
import io
import shutil
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def seed(server) -> dict:
    """A supervisor with one agent and three conversations today: two closed over HTTP, one open."""
    supervisor = server.user("supervisor", name="Dana Dashboard")
    agent = server.user("agent", name="Eli Agent", supervisor_id=supervisor["_id"])
    for i in range(3):
        candidate = server.user("candidate")
        conv = server.call("POST", "/conversations", candidate["token"], {"supervisorId": supervisor["_id"]}, 201)
        server.call("POST", f"/conversations/{conv['_id']}/assign", supervisor["token"], {"agentId": agent["_id"]})
        if i < 2:
            server.call("POST", f"/conversations/{conv['_id']}/close", supervisor["token"], {})
    return {"supervisor": supervisor, "agent": agent}


def test_a_supervisor_logs_in_and_sees_its_team_charted(open_console, server):
    cast = seed(server)
    today = datetime.now(UTC).date().isoformat()
    console = open_console()
    page = console.page
    page.goto(server.base + "/console/analytics")
    page.locator("#login-email").fill(cast["supervisor"]["email"])
    page.locator("#login-password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#whoami-role")).to_have_text("supervisor")

    # Conversations per day: today's bar says 3 created; its closed bar and the resolution point are there.
    bar = page.locator(f"#chart-volume rect.bar-created[data-day='{today}']")
    expect(bar).to_have_attribute("data-created", "3")
    assert float(bar.get_attribute("height")) > 0
    expect(page.locator(f"#chart-times circle.dot-resolution[data-day='{today}']")).to_have_count(1)
    expect(page.locator("#chart-times circle.dot-first-response")).to_have_count(0)  # nobody answered
    expect(page.locator("#chart-volume rect.bar-created")).to_have_count(30)  # the default: 30 days

    # The table, by agent for a supervisor: its one agent only.
    row = page.locator(f"#summary-table tbody tr[data-key='{cast['agent']['_id']}']")
    expect(row.locator("th")).to_have_text("Eli Agent")
    expect(row.locator("td[data-field='created']")).to_have_text("3")
    expect(row.locator("td[data-field='closed']")).to_have_text("2")
    expect(row.locator("td[data-field='firstResponseMedianS']")).to_have_text("—")
    expect(page.locator("#summary-table tbody tr")).to_have_count(1)

    # A shorter range redraws the chart.
    page.get_by_role("button", name="7 days").click()
    expect(page.locator("#chart-volume rect.bar-created")).to_have_count(7)

    # CSV: fetched with the token, handed over as a Blob URL.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename.startswith("livechat-agent-")
    lines = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert lines[0][:3] == ["agentId", "agentName", "created"]
    assert lines[1][:5] == [cast["agent"]["_id"], "Eli Agent", "3", "2", "1"]
    path = console.screenshot("analytics-supervisor")
    DOCS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS / "analytics.png")


def test_an_admin_signed_in_on_the_console_needs_no_second_login(open_console, server):
    cast = seed(server)
    admin = server.user("admin")
    console = open_console()
    console.login(admin["email"], role="admin")
    console.page.goto(server.base + "/console/analytics")  # same tab: the console's sessionStorage token
    page = console.page
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#login-view")).to_be_hidden()
    row = page.locator(f"#summary-table tbody tr[data-key='{cast['supervisor']['_id']}']")
    expect(row.locator("th")).to_have_text("Dana Dashboard")
    expect(row.locator("td[data-field='created']")).to_have_text("3")
    expect(page.locator("#chart-volume rect.bar-created")).to_have_count(30)
    assert page.locator("#chart-volume svg, #chart-volume").count() == 1


def test_an_agent_is_told_the_dashboard_is_not_for_it(open_console, server):
    supervisor = server.user("supervisor")
    agent = server.user("agent", supervisor_id=supervisor["_id"])
    console = open_console()
    page = console.page
    page.goto(server.base + "/console/analytics")
    page.locator("#login-email").fill(agent["email"])
    page.locator("#login-password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#notice-text")).to_have_text("The analytics are for admins and supervisors.")
    expect(page.locator("#dashboard")).to_be_hidden()
