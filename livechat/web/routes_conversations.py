"""Conversations, directories and analytics over REST (docs/openapi.json).

Each handler: authenticate (401) → role gate (403) → parse (400) → one service call → render.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from bson import ObjectId

from livechat.domain import policy
from livechat.domain.conversations import AssignAgent, CreateConversation
from livechat.domain.messages import MAX_SEQ
from livechat.domain.models import ConversationStatus, Role, User, unread
from livechat.domain.routing import RoutingUpdate
from livechat.domain.policy import Action
from livechat.errors import InvalidInput
from livechat.keys import services_key
from livechat.serialization import (assignments_view, conversation_item, conversation_view, message_view, note_view,
                                    parse_object_id, routing_view, stats_view)
from livechat.web.http import bearer_token, json_body, ok, parse_body

routes = web.RouteTableDef()

DEFAULT_LIMIT, MAX_LIMIT = 100, 500


async def authorized(request: web.Request, action: Action) -> User:
    """The caller, if it may attempt ``action`` at all: 401, then the role's 403."""
    user = await request.app[services_key].auth.authenticate(bearer_token(request))
    policy.ensure_role(user, action)
    return user


def path_id(request: web.Request) -> ObjectId:
    return parse_object_id(request.match_info["id"])


def query_param(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise InvalidInput()
    return values[0] if values else None


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    text = query_param(request, name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not lo <= int(text) <= hi:
        raise InvalidInput()
    return int(text)


def query_cursor(request: web.Request) -> ObjectId | None:
    text = query_param(request, "cursor")
    return None if text is None else parse_object_id(text)


def limit_param(request: web.Request) -> int:
    return query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)


def with_messages(conv_data: dict[str, Any], messages: list) -> dict[str, Any]:
    return {**conv_data, "messages": [message_view(m) for m in messages]}


@routes.post("/conversations")
async def create_conversation_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.CREATE_CONVERSATION)
    req = await parse_body(request, CreateConversation)
    conv = await request.app[services_key].conversations.create(user, req)
    return ok(conversation_view(conv), status=201)


@routes.get("/conversations")
async def list_conversations_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.LIST_CONVERSATIONS)
    status_text = query_param(request, "status")
    try:
        status = None if status_text is None else ConversationStatus(status_text)
    except ValueError:
        raise InvalidInput() from None
    conversations = request.app[services_key].conversations
    convs = await conversations.list(user, status=status, before=query_cursor(request), limit=limit_param(request))
    names = await conversations.names(convs)
    marks = await request.app[services_key].signals.watermarks(user, convs)  # one indexed read, no messages
    return ok([conversation_item(c, names, unread(c, user, marks.get(c.id, 0))) for c in convs])


@routes.post("/conversations/{id:[^/]+}/assign")
async def assign_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.ASSIGN)
    conv_id = path_id(request)
    req = await parse_body(request, AssignAgent)
    conv = await request.app[services_key].conversations.assign(user, conv_id, req)
    return ok({"conversationId": str(conv.id), "agentId": str(conv.agent_id), "supervisorId": str(conv.supervisor_id)})


@routes.post("/conversations/{id:[^/]+}/transfer")
async def transfer_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.TRANSFER)
    conv_id = path_id(request)
    req = await parse_body(request, AssignAgent)
    conv = await request.app[services_key].conversations.transfer(user, conv_id, req)
    return ok({"conversationId": str(conv.id), "agentId": str(conv.agent_id), "supervisorId": str(conv.supervisor_id),
               "status": conv.status.value, "assignments": assignments_view(conv)})


@routes.get("/conversations/{id:[^/]+}/transfer-targets")
async def transfer_targets_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.TRANSFER)
    services = request.app[services_key]
    agents = await services.conversations.transfer_targets(user, path_id(request), after=query_cursor(request),
                                                          limit=limit_param(request))
    active = await services.teams.active_counts([a.id for a in agents])
    return ok([{"_id": str(a.id), "name": a.name, "presence": services.presence.of(a.id)[0].value,
                "activeConversations": active.get(a.id, 0)} for a in agents])


@routes.get("/conversations/{id:[^/]+}")
async def get_conversation_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.VIEW)
    services = request.app[services_key]
    conversations = services.conversations
    conv, messages = await conversations.get(user, path_id(request))
    marks = await services.signals.watermarks(user, [conv])
    data = with_messages(conversation_item(conv, await conversations.names([conv]),
                                           unread(conv, user, marks.get(conv.id, 0))), messages)
    if user.role is not Role.CANDIDATE:  # staff only: the candidate's answer never holds these
        data["assignments"] = assignments_view(conv)
        data["notes"] = [note_view(n) for n in await services.signals.notes(user, conv)]
    return ok(data)


@routes.get("/conversations/{id:[^/]+}/messages")
async def history_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.VIEW)
    conv_id = path_id(request)
    after_seq = query_int(request, "afterSeq", 0, 0, MAX_SEQ)
    page = await request.app[services_key].conversations.history(
        user, conv_id, after_seq=after_seq, limit=limit_param(request))
    return ok({"messages": [message_view(m) for m in page.messages], "nextAfterSeq": page.next_after_seq})


@routes.post("/conversations/{id:[^/]+}/close")
async def close_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.CLOSE_OVER_HTTP)
    conv_id = path_id(request)
    await json_body(request, optional=True)  # `{}` or no body; anything else must still be a JSON object
    conv = await request.app[services_key].conversations.close_over_http(user, conv_id)
    return ok({"conversationId": str(conv.id), "status": conv.status.value})


@routes.get("/admin/analytics")
async def analytics_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.READ_ANALYTICS)
    stats = await request.app[services_key].teams.analytics(user)
    return ok([stats_view(s) for s in stats])


@routes.get("/supervisors")
async def supervisors_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.LIST_SUPERVISORS)
    users = await request.app[services_key].teams.supervisors(user, after=query_cursor(request),
                                                              limit=limit_param(request))
    return ok([{"_id": str(u.id), "name": u.name} for u in users])


@routes.get("/agents")
async def agents_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.LIST_AGENTS)
    services = request.app[services_key]
    agents = await services.teams.agents(user, after=query_cursor(request), limit=limit_param(request))
    active = await services.teams.active_counts([a.id for a in agents])
    return ok([{"_id": str(a.id), "name": a.name, "email": a.email, "supervisorId": str(a.supervisor_id),
                "presence": services.presence.of(a.id)[0].value, "activeConversations": active.get(a.id, 0)}
               for a in agents])


@routes.get("/supervisors/{id:[^/]+}/routing")
async def get_routing_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.READ_ROUTING)
    routing = await request.app[services_key].routing.settings(user, path_id(request))
    return ok(routing_view(routing))


@routes.put("/supervisors/{id:[^/]+}/routing")
async def put_routing_handler(request: web.Request) -> web.Response:
    user = await authorized(request, Action.CHANGE_ROUTING)
    supervisor_id = path_id(request)
    req = await parse_body(request, RoutingUpdate)
    routing = await request.app[services_key].routing.change(user, supervisor_id, req)
    return ok(routing_view(routing))
