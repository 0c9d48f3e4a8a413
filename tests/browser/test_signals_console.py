"""Signals in the console (issue #13), in a real Chromium against the real server: "… is typing"
that goes away after 5 s, ✓ sent / ✓✓ read on one's own lines, unread badges in the lists, and
private notes that staff write and see, styled apart, and that the candidate never sees.

Screenshots go to artifacts/screenshots/ like the other browser tests'.
"""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.browser.test_desk_console import signed_in, start_conversation, team, uid


def test_typing_read_ticks_unread_badges_and_notes(open_console, server):
    sup, [agent] = team(server)
    cand_user = server.user("candidate", name=f"Cara Candidate {uid()}")
    desk = signed_in(open_console, agent, "agent")
    cand = signed_in(open_console, cand_user, "candidate")
    conv_id = start_conversation(cand, sup["name"])
    cand.send("Where is my parcel?")
    server.call("POST", f"/conversations/{conv_id}/assign", sup["token"], {"agentId": agent["_id"]})

    # Unread: the agent's list counts the candidate's line until the agent opens the chat.
    item = desk.page.locator(f"#agent-list li[data-id='{conv_id}']")
    expect(item.locator(".unread-badge")).to_have_text("1")
    item.get_by_role("button", name="Join").click()
    desk.expect_connection("connected")
    desk.expect_lines(["Where is my parcel?"])

    # The agent opened it: the candidate's own line gets ✓✓ once the agent's MARK_READ is in.
    own = cand.page.locator("#messages li.mine").first
    expect(own.locator(".delivery")).to_have_text("✓✓ read")
    expect(own).to_have_attribute("data-read", "true")

    # Typing: the candidate sees "Agent is typing…", and it is gone 5 s later.
    desk.page.get_by_label("Message", exact=True).press_sequentially("Let me ch", delay=20)
    typing = cand.page.locator("#chat-typing")
    expect(typing).to_be_visible()
    expect(typing).to_have_text("Agent is typing…")
    cand.screenshot("candidate-typing")
    expect(typing).to_be_hidden(timeout=8000)
    desk.page.get_by_label("Message", exact=True).fill("")
    desk.send("Let me check")
    mine = desk.page.locator("#messages li.mine").last
    expect(mine.locator(".delivery")).to_have_text("✓✓ read")  # the candidate has the chat open

    # A private note: styled apart, shown to staff, never to the candidate.
    desk.page.get_by_label("Private note (staff only, never shown to the candidate)").fill("Parcel lost by courier")
    desk.page.get_by_role("button", name="Add note").click()
    note = desk.page.locator("#messages li.note")
    expect(note.locator(".note-text")).to_have_text("Parcel lost by courier")
    expect(note.locator(".delivery")).to_have_text("✓ saved")
    desk.screenshot("agent-note")
    supervisor = signed_in(open_console, sup, "supervisor")
    supervisor.page.locator("#supervisor-status").select_option("")
    supervisor.page.locator(f"#supervisor-list li[data-id='{conv_id}']").get_by_role("button", name="Watch").click()
    supervisor.expect_connection("connected")
    expect(supervisor.page.locator("#messages li.note .note-text")).to_have_text("Parcel lost by courier")
    expect(cand.page.get_by_label("Private note (staff only, never shown to the candidate)")).to_be_hidden()
    expect(cand.page.locator("#messages li.note")).to_have_count(0)
    cand.page.reload()
    cand.page.locator(f"#candidate-list li[data-id='{conv_id}']").get_by_role("button", name="Open").click()
    cand.expect_lines(["Where is my parcel?", "Let me check"])
    expect(cand.page.locator("#messages li.note")).to_have_count(0)
    received = [f for _, d, f in cand.ws_frames if d == "received"]
    assert not any(json.loads(f)["event"] == "NEW_NOTE" or "Parcel lost" in f for f in received)
    for console in (desk, cand, supervisor):
        console.assert_clean()
