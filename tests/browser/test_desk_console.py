"""The support desk in the console (issue #12), in a real Chromium against the real server: lists
pushed by the inbox (no reload, no polling), presence dots, the routing form, the candidate's queue
position, transfer and watch.

Screenshots go to artifacts/screenshots/ like the other browser tests'.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Console, Server

REST_LIST = re.compile(r"/conversations(\?|$)")  # GET /conversations, the list the inbox replaces


def uid() -> str:
    return uuid.uuid4().hex[:6]


def team(server: Server, agents: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A supervisor and its agents, with names unique to this test (the server is shared)."""
    u = uid()
    sup = server.user("supervisor", name=f"Sue Supervisor {u}")
    return sup, [server.user("agent", name=f"Agent {n} {u}", supervisor_id=sup["_id"])
                 for n in ("Ann", "Ben", "Cy")[:agents]]


def signed_in(open_console, user: dict[str, Any], role: str) -> Console:
    console = open_console()
    console.login(user["email"], role=role)
    expect(console.page.locator("#inbox-connection")).to_have_attribute("data-state", "live")
    return console


def start_conversation(cand: Console, supervisor_name: str) -> str:
    cand.page.get_by_label("Supervisor", exact=True).select_option(label=supervisor_name)
    cand.page.get_by_role("button", name="Start conversation").click()
    cand.expect_status("open")
    return cand.page.locator("#chat-id").text_content()


def sent_events(console: Console) -> list[str]:
    return [json.loads(f)["event"] for _, d, f in console.ws_frames if d == "sent"]


def test_the_supervisor_sees_conversations_and_presence_live_and_watches(open_console, server):
    sup, [agent] = team(server)
    cand_user = server.user("candidate", name=f"Cara Candidate {uid()}")
    supervisor = signed_in(open_console, sup, "supervisor")
    dot = supervisor.page.locator(f"#agent-roster li[data-agent-id='{agent['_id']}']")
    expect(dot).to_have_attribute("data-presence", "offline")

    # The agent comes to the desk, steps away and back: the supervisor's dot follows each change.
    desk = signed_in(open_console, agent, "agent")
    expect(dot).to_have_attribute("data-presence", "available")
    expect(desk.page.locator("#my-presence")).to_have_text("available")
    desk.page.get_by_role("button", name="Set away").click()
    expect(desk.page.locator("#my-presence")).to_have_text("away")
    expect(dot).to_have_attribute("data-presence", "away")
    expect(dot.locator(".presence-text")).to_have_text("away")
    supervisor.screenshot("supervisor-presence")
    desk.page.get_by_role("button", name="Set available").click()
    expect(dot).to_have_attribute("data-presence", "available")

    # A candidate opens a conversation: it appears in the supervisor's list, with the candidate's
    # name, without a reload; so does the candidate's first line.
    cand = signed_in(open_console, cand_user, "candidate")
    conv_id = start_conversation(cand, sup["name"])
    item = supervisor.page.locator(f"#supervisor-list li[data-id='{conv_id}']")
    expect(item).to_have_attribute("data-status", "open")
    expect(item.locator(".conv-title")).to_have_text(cand_user["name"])
    expect(item).to_contain_text("Agent: none")
    cand.send("My parcel never came")
    expect(item.locator(".last-line")).to_have_text("Candidate: My parcel never came")

    # Assigned: the agent's list shows it at once, named; the supervisor's item names the agent.
    item.get_by_label(f"Agent for conversation {conv_id}").select_option(label=agent["name"])
    item.get_by_role("button", name="Assign").click()
    expect(item.locator(".agent-name")).to_have_text(f"Agent: {agent['name']}")
    mine = desk.page.locator(f"#agent-list li[data-id='{conv_id}']")
    expect(mine.locator(".conv-title")).to_have_text(cand_user["name"])
    mine.get_by_role("button", name="Join").click()
    desk.expect_connection("connected")

    # The supervisor watches: the history, then live lines, read-only; the candidate sees no one new.
    supervisor.page.locator("#supervisor-status").select_option("")
    item.get_by_role("button", name="Watch").click()
    expect(supervisor.page.locator("#chat-title")).to_have_text("Watching")
    supervisor.expect_connection("connected")
    supervisor.expect_lines(["My parcel never came"])
    desk.send("Sorry about that, let me look")
    supervisor.expect_lines(["My parcel never came", "Sorry about that, let me look"])
    expect(supervisor.page.get_by_label("Message", exact=True)).to_be_hidden()
    expect(supervisor.page.locator("#chat-watch-note")).to_be_visible()
    expect(supervisor.page.locator("#chat-people")).to_have_text(
        f"Candidate: {cand_user['name']} · Agent: {agent['name']}")
    supervisor.screenshot("supervisor-watch")
    cand.expect_lines(["My parcel never came", "Sorry about that, let me look"])
    supervisor.page.get_by_role("button", name="Back to list").click()
    expect(supervisor.page.locator("#chat-view")).to_be_hidden()

    # The agent closes it: the supervisor's list follows.
    desk.page.get_by_role("button", name="Close conversation").click()
    expect(item).to_have_attribute("data-status", "closed")
    expect(item.get_by_role("button", name="Transcript")).to_be_visible()

    # All of it came over the sockets: the staff pages never polled the conversation list.
    for console in (supervisor, desk):
        assert not [u for u in console.urls if REST_LIST.search(u)], console.urls
    assert "SUBSCRIBE_INBOX" in sent_events(supervisor)
    assert {"WATCH_CONVERSATION", "UNWATCH_CONVERSATION"} <= set(sent_events(supervisor))
    assert "SET_PRESENCE" in sent_events(desk)
    received = [json.loads(f)["event"] for _, d, f in cand.ws_frames if d == "received"]
    assert not [e for e in received if "WATCH" in e]


def test_auto_routing_assigns_live_and_the_candidate_sees_the_queue(open_console, server):
    sup, [agent] = team(server)
    first_user, second_user = (server.user("candidate", name=f"Cand {n} {uid()}") for n in (1, 2))
    supervisor = signed_in(open_console, sup, "supervisor")
    expect(supervisor.page.locator("#routing-state")).to_have_text("Now: manual.")

    # Out-of-range capacity: the server's error is shown and nothing changes.
    supervisor.page.locator("#routing-mode").select_option("auto")
    supervisor.page.locator("#routing-max").fill("0")
    supervisor.page.get_by_role("button", name="Save routing").click()
    expect(supervisor.notice()).to_have_text("Invalid request schema")
    expect(supervisor.page.locator("#routing-state")).to_have_text("Now: manual.")
    supervisor.page.locator("#routing-max").fill("1")
    supervisor.page.get_by_role("button", name="Save routing").click()
    expect(supervisor.notice()).to_have_text("Routing saved: auto.")
    expect(supervisor.page.locator("#routing-state")).to_have_text("Now: auto, at most 1 active per agent.")
    assert server.call("GET", f"/supervisors/{sup['_id']}/routing", sup["token"])["mode"] == "auto"
    supervisor.screenshot("supervisor-routing")

    desk = signed_in(open_console, agent, "agent")
    expect(supervisor.page.locator(f"#agent-roster li[data-agent-id='{agent['_id']}']")).to_have_attribute(
        "data-presence", "available")

    # The first conversation goes to the only available agent: it shows up on their page by itself.
    first = signed_in(open_console, first_user, "candidate")
    first_id = start_conversation(first, sup["name"])
    auto = desk.page.locator(f"#agent-list li[data-id='{first_id}']")
    expect(auto.locator(".conv-title")).to_have_text(first_user["name"])
    expect(first.page.locator("#chat-people")).to_have_text(f"Agent: {agent['name']}")
    desk.screenshot("agent-auto-assigned")

    # The agent is at capacity (1): the next candidate waits, and is told their place.
    second = signed_in(open_console, second_user, "candidate")
    second_id = start_conversation(second, sup["name"])
    queue = second.page.locator("#chat-queue")
    expect(queue).to_have_attribute("data-position", "1")
    expect(queue).to_have_text("You are next in the queue: an agent will be with you shortly.")
    second.screenshot("candidate-queue")
    expect(desk.page.locator(f"#agent-list li[data-id='{second_id}']")).to_have_count(0)

    # Closing the first frees the agent: the waiting conversation is theirs, live on both pages.
    auto.get_by_role("button", name="Join").click()
    desk.expect_connection("connected")
    desk.page.get_by_role("button", name="Close conversation").click()
    desk.expect_status("closed")
    expect(desk.page.locator(f"#agent-list li[data-id='{second_id}']")).to_be_visible()
    expect(queue).to_be_hidden()
    expect(second.page.locator("#chat-people")).to_contain_text(f"Agent: {agent['name']}")
    assert not [u for u in desk.urls if REST_LIST.search(u)], desk.urls


def test_a_transfer_moves_the_conversation_live_between_agents(open_console, server):
    sup, [ann, ben] = team(server, agents=2)
    cand = server.user("candidate", name=f"Cam Candidate {uid()}")
    conv_id = server.call("POST", "/conversations", cand["token"], {"supervisorId": sup["_id"]}, status=201)["_id"]
    server.call("POST", f"/conversations/{conv_id}/assign", sup["token"], {"agentId": ann["_id"]})
    ann_page, ben_page = signed_in(open_console, ann, "agent"), signed_in(open_console, ben, "agent")
    in_ann = ann_page.page.locator(f"#agent-list li[data-id='{conv_id}']")
    in_ben = ben_page.page.locator(f"#agent-list li[data-id='{conv_id}']")
    expect(in_ann).to_be_visible()
    expect(in_ben).to_have_count(0)

    # Ann hands it to Ben, picked from her teammates (GET /conversations/:id/transfer-targets).
    in_ann.get_by_role("button", name="Join").click()
    ann_page.expect_connection("connected")
    ann_page.send("Ben will take over from here")
    choice = ann_page.page.get_by_label("Transfer to")
    expect(choice.locator("option")).to_have_text([f"{ben['name']} (available)"])
    choice.select_option(ben["_id"])
    ann_page.page.get_by_role("button", name="Transfer").click()
    expect(ann_page.notice()).to_have_text(f"Transferred to {ben['name']}.")
    expect(ann_page.page.locator("#chat-view")).to_be_hidden()
    expect(in_ann).to_have_count(0)
    expect(in_ben.locator(".conv-title")).to_have_text(cand["name"])
    in_ben.get_by_role("button", name="Join").click()
    ben_page.expect_lines(["Ben will take over from here"])
    ben_page.screenshot("agent-transferred")

    # The supervisor, watching, hands it back to Ann from the team list: both lists follow.
    supervisor = signed_in(open_console, sup, "supervisor")
    supervisor.page.locator("#supervisor-status").select_option("")
    supervisor.page.locator(f"#supervisor-list li[data-id='{conv_id}']").get_by_role("button", name="Watch").click()
    supervisor.expect_connection("connected")
    expect(supervisor.page.locator("#chat-people")).to_contain_text(f"Agent: {ben['name']}")
    choice = supervisor.page.get_by_label("Transfer to")
    expect(choice.locator("option")).to_have_text([f"{ann['name']} (available)"])
    choice.select_option(ann["_id"])
    supervisor.screenshot("supervisor-transfer")
    supervisor.page.get_by_role("button", name="Transfer").click()
    expect(supervisor.notice()).to_have_text(f"Transferred to {ann['name']}.")
    expect(supervisor.page.locator("#chat-people")).to_contain_text(f"Agent: {ann['name']}")
    expect(in_ben).to_have_count(0)
    expect(in_ann).to_be_visible()
    expect(ben_page.notice()).to_contain_text("no longer have access")
    history = server.call("GET", f"/conversations/{conv_id}", sup["token"])["assignments"]
    assert [(h["agentId"], h["by"]) for h in history] == [
        (ann["_id"], sup["_id"]), (ben["_id"], ann["_id"]), (ann["_id"], sup["_id"])]


def test_an_admin_picks_a_team_sees_its_presence_and_sets_its_routing(open_console, server):
    sup, [agent] = team(server)
    admin_user = server.user("admin")
    admin = signed_in(open_console, admin_user, "admin")
    admin.page.get_by_label("Team of").select_option(label=sup["name"])
    dot = admin.page.locator(f"#agent-roster li[data-agent-id='{agent['_id']}']")
    expect(dot).to_have_attribute("data-presence", "offline")
    expect(admin.page.locator("#routing-state")).to_have_text("Now: manual.")
    signed_in(open_console, agent, "agent")
    expect(dot).to_have_attribute("data-presence", "available")
    admin.page.locator("#routing-mode").select_option("auto")
    admin.page.locator("#routing-max").fill("3")
    admin.page.get_by_role("button", name="Save routing").click()
    expect(admin.page.locator("#routing-state")).to_have_text("Now: auto, at most 3 active per agent.")
    routing = server.call("GET", f"/supervisors/{sup['_id']}/routing", sup["token"])
    assert (routing["mode"], routing["maxConcurrent"]) == ("auto", 3)
    admin.screenshot("admin-team")


def test_without_the_socket_the_lists_fall_back_to_polling(open_console, server):
    sup, [agent] = team(server)
    cand = server.user("candidate", name=f"Poll Candidate {uid()}")
    conv_id = server.call("POST", "/conversations", cand["token"], {"supervisorId": sup["_id"]}, status=201)["_id"]
    desk = open_console()
    # Every WebSocket of this page is refused (a proxy that does not pass them, say).
    desk.page.route_web_socket(re.compile(r"/ws\?"), lambda ws: ws.close())
    desk.login(agent["email"], role="agent")
    expect(desk.page.locator("#inbox-connection")).to_have_text("polling")
    expect(desk.page.locator("#my-presence")).to_have_text("offline")
    expect(desk.page.locator("#presence-toggle")).to_be_disabled()
    server.call("POST", f"/conversations/{conv_id}/assign", sup["token"], {"agentId": agent["_id"]})
    expect(desk.page.locator(f"#agent-list li[data-id='{conv_id}'] .conv-title")).to_have_text(cand["name"])
    assert [u for u in desk.urls if REST_LIST.search(u)], "the list came from GET /conversations"
