"""The browser console, in a real Chromium: every role drives the product through the page.

Screenshots of each role's main view are written to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, PHONE

XSS = "<img src=x onerror=alert(1)>"


def uid() -> str:
    return uuid.uuid4().hex[:8]


def fetch(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def test_the_page_forbids_inline_script_and_loads_nothing_from_elsewhere(server):
    for path in ("/", "/console"):
        status, headers, html = fetch(server.base + path)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        policy = {d.split()[0]: d.split()[1:] for d in headers["Content-Security-Policy"].split(";")}
        assert policy["script-src"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
        assert "unsafe" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        # No inline script, no inline handler, nothing from a CDN.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
        assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE)
        assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", html)
    status, headers, js = fetch(server.base + "/static/console.js")
    assert status == 200 and headers["Content-Type"] == "application/javascript"
    assert headers["X-Content-Type-Options"] == "nosniff"
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    status, _, css = fetch(server.base + "/static/console.css")
    assert status == 200 and "@import" not in css and "url(" not in css
    status, _, body = fetch(server.base + "/static/nothing-here.js")
    assert status == 404 and json.loads(body) == {"success": False, "error": "Route not found"}


def test_the_browser_enforces_the_policy_on_injected_markup(open_console):
    console = open_console()
    ran = console.page.evaluate("""() => new Promise((resolve) => {
        const violations = [];
        document.addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));
        const script = document.createElement('script');
        script.textContent = 'window.__inlineRan = true';
        document.body.append(script);
        const img = document.createElement('img');
        img.setAttribute('onerror', 'window.__handlerRan = true');
        img.src = 'data:,not-an-image';
        document.body.append(img);
        setTimeout(() => resolve({inline: !!window.__inlineRan, handler: !!window.__handlerRan, violations}), 500);
    })""")
    assert ran["inline"] is False and ran["handler"] is False
    assert any(v.startswith("script-src") for v in ran["violations"]), ran
    console.problems.clear()  # the browser rightly logged the refusals


def test_candidate_agent_and_supervisor_hold_a_live_conversation(open_console, server):
    u = uid()
    sup_name, agent_name, agent_email = f"Sam Supervisor {u}", f"Alex Agent {u}", f"alex-{u}@example.com"

    # The supervisor signs up through the page and adds an agent to their team.
    sup = open_console()
    sup.screenshot("login")
    sup.screenshot("login-phone", PHONE)
    sup.signup(sup_name, f"sam-{u}@example.com", "supervisor")
    sup_id = sup.page.locator("#supervisor-own-id").text_content()
    sup.page.get_by_text("Add an agent to your team").click()
    sup.page.locator("#add-agent-name").fill(agent_name)
    sup.page.locator("#add-agent-email").fill(agent_email)
    sup.page.locator("#add-agent-password").fill(PASSWORD)
    sup.page.get_by_role("button", name="Create agent").click()
    expect(sup.notice()).to_contain_text(f"Created agent {agent_name}")
    expect(sup.page.locator("#agent-roster")).to_contain_text(agent_name)

    agent = open_console()
    agent.login(agent_email, role="agent")

    # The candidate signs up, picks the supervisor, opens a conversation and writes (Enter sends).
    cand = open_console()
    cand.signup(f"Cara Candidate {u}", f"cara-{u}@example.com", "candidate")
    cand.page.get_by_label("Supervisor", exact=True).select_option(label=sup_name)
    cand.page.get_by_role("button", name="Start conversation").click()
    cand.expect_status("open")
    cand.expect_connection("connected")
    conv_id = cand.page.locator("#chat-id").text_content()
    transcript = ["Hello, I need help with my order"]
    cand.send(transcript[0])
    expect(cand.page.locator("#messages li").last).to_have_attribute("data-delivery", "sent")

    # The supervisor's list picks it up without a reload; they assign it to their agent.
    item = sup.page.locator(f"#supervisor-list li[data-id='{conv_id}']")
    expect(item).to_have_attribute("data-status", "open")
    item.get_by_label(f"Agent for conversation {conv_id}").select_option(label=agent_name)
    item.get_by_role("button", name="Assign").click()
    expect(sup.notice()).to_have_text(f"Assigned to {agent_name}.")
    expect(item).to_contain_text(f"Agent: {agent_name}")
    sup.screenshot("supervisor")
    sup.screenshot("supervisor-phone", PHONE)

    # The agent sees it, joins, gets the history; the status moves to assigned on every page.
    agent.page.locator(f"#agent-list li[data-id='{conv_id}']").get_by_role("button", name="Join").click()
    agent.expect_connection("connected")
    agent.expect_status("assigned")
    agent.expect_lines(transcript)
    cand.expect_status("assigned")

    # A live exchange: each side sees the other's lines, in order.
    for who, text in [(agent, "Hi! I'm Alex. What is the order number?"), (cand, "It is 12345"),
                      (cand, XSS), (agent, "Thanks, checking now")]:
        who.send(text)
        transcript.append(text)
        cand.expect_lines(transcript)
        agent.expect_lines(transcript)
    # Markup in a message is shown literally and runs nothing.
    for console in (cand, agent):
        expect(console.page.locator("#messages img")).to_have_count(0)
        assert console.lines.nth(transcript.index(XSS)).inner_text() == XSS
    expect(cand.page.locator("#messages li.mine[data-delivery='sent']")).to_have_count(3)
    expect(agent.page.locator("#messages li.mine[data-delivery='sent']")).to_have_count(2)
    agent.screenshot("agent")
    cand.screenshot("candidate")
    cand.screenshot("candidate-phone", PHONE)

    # The candidate's network drops while the agent goes on writing.
    cand.context.set_offline(True)
    cand.page.evaluate("window.livechat.dropConnection()")
    expect(cand.page.locator("#chat-connection")).to_have_attribute("data-state", re.compile("reconnecting|connecting"))
    frames_before = len(cand.ws_frames)
    missed = ["First, while you were away", "Second, while you were away", "Third, while you were away"]
    for text in missed:
        agent.send(text)
    expect(agent.page.locator("#messages li.mine[data-delivery='sent']")).to_have_count(5)
    cand.send("Are you still there?")  # typed while offline: it waits for the connection
    expect(cand.page.locator("#messages li").last).to_have_attribute("data-delivery", "pending")
    cand.expect_lines(transcript + ["Are you still there?"])
    cand.screenshot("candidate-reconnecting")

    cand.context.set_offline(False)
    cand.expect_connection("connected")
    transcript += [*missed, "Are you still there?"]
    cand.expect_lines(transcript)  # every line exactly once, in order
    agent.expect_lines(transcript)
    expect(cand.page.locator("#messages li").last).to_have_attribute("data-delivery", "sent")
    # It was the resume that brought them back: JOIN with lastSeq, then the missed lines replayed.
    after = [(d, json.loads(f)) for _, d, f in cand.ws_frames[frames_before:]]
    joins = [f["data"] for d, f in after if d == "sent" and f["event"] == "JOIN_CONVERSATION"]
    assert joins == [{"conversationId": conv_id, "lastSeq": 5}]
    assert [f["data"]["content"] for d, f in after if d == "received" and f["event"] == "NEW_MESSAGE"] == missed

    # The agent closes it: both pages show it closed, and the candidate can no longer write.
    agent.page.get_by_role("button", name="Close conversation").click()
    agent.expect_status("closed")
    cand.expect_status("closed")
    expect(cand.page.get_by_label("Message", exact=True)).to_be_hidden()
    cand.expect_connection("ended")
    expect(cand.page.locator(f"#candidate-list li[data-id='{conv_id}']")).to_have_attribute("data-status", "closed")

    # The supervisor's list follows, by status.
    sup.page.locator("#supervisor-status").select_option("closed")
    expect(sup.page.locator(f"#supervisor-list li[data-id='{conv_id}']")).to_have_attribute("data-status", "closed")

    # An admin reads the analytics and the whole transcript.
    admin = open_console()
    admin.signup(f"Ada Admin {u}", f"ada-{u}@example.com", "admin")
    row = admin.page.locator(f"#analytics tr[data-supervisor-id='{sup_id}']")
    expect(row.locator("th")).to_have_text(sup_name)
    expect(row.locator("td")).to_have_text(["1", "1"])
    admin.page.locator(f"#admin-list li[data-id='{conv_id}']").get_by_role("button", name="Transcript").click()
    admin.expect_status("closed")
    admin.expect_lines(transcript)
    admin.screenshot("admin")

    # The token is kept for the tab only, and no URL but the WebSocket's ever carried it.
    ws_prefix = server.base.replace("http://", "ws://") + "/ws?token="
    for console in (sup, agent, cand, admin):
        token = console.token()
        assert token and console.page.evaluate("localStorage.length") == 0
        leaks = [url for url in console.urls if token in url and not url.startswith(ws_prefix)]
        assert not leaks, leaks


def test_server_errors_are_shown_and_sessions_end_cleanly(open_console, server):
    sup = server.user("supervisor")
    first, second = (server.user("agent", supervisor_id=sup["_id"]) for _ in range(2))
    cand = server.user("candidate")
    conv = server.call("POST", "/conversations", cand["token"], {"supervisorId": sup["_id"]}, status=201)
    conv_id = conv["_id"]
    server.call("POST", f"/conversations/{conv_id}/assign", sup["token"], {"agentId": first["_id"]})

    # A failed login shows the server's message; the right password gets in.
    page = open_console()
    page.login(first["email"], "not the password")
    expect(page.notice()).to_have_text("Invalid email or password")
    page.login(first["email"], role="agent")
    expect(page.notice()).to_be_hidden()
    page.page.locator(f"#agent-list li[data-id='{conv_id}']").get_by_role("button", name="Join").click()
    page.expect_connection("connected")
    page.expect_status("assigned")

    # Reassigned away while on the page: the inbox says so at once and the page re-reads the
    # conversation over REST — held back here, so that the socket answers the send first: the
    # WebSocket ERROR is shown and the line is marked as not sent.
    held = []
    page.page.route(f"**/conversations/{conv_id}", lambda route: held.append(route))
    server.call("POST", f"/conversations/{conv_id}/assign", sup["token"], {"agentId": second["_id"]})
    page.send("Are you still there?")
    line = page.page.locator("#messages li").last
    expect(line).to_have_attribute("data-delivery", "failed")
    expect(line).to_contain_text("not sent: You must join the conversation first")
    expect(page.notice()).to_have_text("You must join the conversation first")
    # Released before the route is removed: unroute() itself would settle the held requests.
    for route in held:
        route.continue_()
    page.page.unroute(f"**/conversations/{conv_id}")
    expect(page.notice()).to_contain_text("no longer have access")
    expect(page.page.get_by_label("Message", exact=True)).to_be_hidden()

    # The token lives in this tab's sessionStorage: a reload keeps the session, logout ends it.
    page.page.reload()
    expect(page.page.locator("#agent-view")).to_be_visible()
    page.page.get_by_role("button", name="Log out").click()
    expect(page.page.locator("#auth-view")).to_be_visible()
    assert page.token() is None
    page.page.reload()
    expect(page.page.locator("#auth-view")).to_be_visible()

    # A candidate with an active conversation gets it back on login, and the contract's 409 when
    # trying to open another one.
    candidate = open_console()
    candidate.login(cand["email"], role="candidate")
    expect(candidate.page.locator("#chat-id")).to_have_text(conv_id)
    candidate.expect_connection("connected")
    candidate.page.get_by_role("button", name="Start conversation").click()
    expect(candidate.notice()).to_have_text("Candidate already has an active conversation")
