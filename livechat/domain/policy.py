"""Who may do what: the one place for access rules, used by REST and WebSocket alike.

Each action has a rule: the roles that may attempt it at all (checked first, before the request
is even parsed) and the relationships to the conversation that let a user of such a role act on
one (checked once the conversation is loaded). The error texts are part of the rule, because
the contract words them differently for HTTP and for the WebSocket events.
"""

from __future__ import annotations

import enum

from attrs import frozen
from bson import ObjectId

from livechat.domain.models import Conversation, Role, User
from livechat.errors import FORBIDDEN, Forbidden

FORBIDDEN_FOR_ROLE = "Forbidden for this role"
NOT_ALLOWED = "Not allowed to access this conversation"


class Action(enum.Enum):
    # REST
    CREATE_CONVERSATION = "create conversation"
    ASSIGN = "assign"
    VIEW = "view conversation"
    LIST_CONVERSATIONS = "list conversations"
    CLOSE_OVER_HTTP = "close over HTTP"
    READ_ANALYTICS = "read analytics"
    READ_ANALYTICS_SUMMARY = "read the analytics summary"
    LIST_SUPERVISORS = "list supervisors"
    LIST_AGENTS = "list agents"
    TRANSFER = "transfer"
    READ_ROUTING = "read routing"
    CHANGE_ROUTING = "change routing"
    CHANGE_ROLE = "change a user's role"
    # WebSocket
    JOIN = "join"
    SEND = "send message"
    LEAVE = "leave"
    CLOSE_IN_CHAT = "close in chat"
    SUBSCRIBE_INBOX = "subscribe to the inbox"
    SET_PRESENCE = "set presence"
    WATCH = "watch"
    UNWATCH = "unwatch"
    TYPING = "typing"
    MARK_READ = "mark read"
    SEND_NOTE = "send a note"


class Relation(enum.Enum):
    """How a user stands to one conversation."""

    ADMIN = "admin"
    OWNER = "the candidate who opened it"
    SUPERVISOR = "the supervisor it is addressed to"
    ASSIGNED_AGENT = "the agent currently assigned"
    NONE = "no relation"


@frozen
class Rule:
    roles: frozenset[Role]
    relations: frozenset[Relation] = frozenset()
    role_error: str = FORBIDDEN
    access_error: str = FORBIDDEN
    # WebSocket events must not reveal whether an id exists: unknown reads like foreign.
    unknown_is_forbidden: bool = False


ANYONE = frozenset(Role)
ADMIN, SUPERVISOR, AGENT, CANDIDATE = Role.ADMIN, Role.SUPERVISOR, Role.AGENT, Role.CANDIDATE
STAFF = frozenset({ADMIN, SUPERVISOR, AGENT})
# Relations to a conversation, named by who holds them.
EVERY_PARTY = frozenset({Relation.ADMIN, Relation.OWNER, Relation.SUPERVISOR, Relation.ASSIGNED_AGENT})
IN_CHARGE = frozenset({Relation.ADMIN, Relation.SUPERVISOR})
IN_THE_CHAT = frozenset({Relation.OWNER, Relation.ASSIGNED_AGENT})

RULES: dict[Action, Rule] = {
    Action.CREATE_CONVERSATION: Rule(frozenset({CANDIDATE})),
    Action.ASSIGN: Rule(frozenset({SUPERVISOR}), frozenset({Relation.SUPERVISOR}), access_error="cannot assign agent"),
    Action.VIEW: Rule(ANYONE, EVERY_PARTY),
    Action.LIST_CONVERSATIONS: Rule(ANYONE),
    Action.CLOSE_OVER_HTTP: Rule(frozenset({ADMIN, SUPERVISOR}), IN_CHARGE),
    Action.READ_ANALYTICS: Rule(frozenset({ADMIN})),
    Action.READ_ANALYTICS_SUMMARY: Rule(frozenset({ADMIN, SUPERVISOR})),  # scope: see analytics_team
    Action.LIST_SUPERVISORS: Rule(ANYONE),
    Action.LIST_AGENTS: Rule(frozenset({ADMIN, SUPERVISOR})),
    Action.TRANSFER: Rule(STAFF, IN_CHARGE | {Relation.ASSIGNED_AGENT}),
    Action.READ_ROUTING: Rule(frozenset({ADMIN, SUPERVISOR})),
    Action.CHANGE_ROUTING: Rule(frozenset({ADMIN, SUPERVISOR})),
    Action.CHANGE_ROLE: Rule(frozenset({ADMIN})),
    Action.JOIN: Rule(frozenset({CANDIDATE, AGENT}), IN_THE_CHAT,
                      FORBIDDEN_FOR_ROLE, NOT_ALLOWED, unknown_is_forbidden=True),
    Action.SEND: Rule(frozenset({CANDIDATE, AGENT}), IN_THE_CHAT,
                      FORBIDDEN_FOR_ROLE, NOT_ALLOWED, unknown_is_forbidden=True),
    Action.LEAVE: Rule(frozenset({CANDIDATE, AGENT}), role_error=FORBIDDEN_FOR_ROLE),
    Action.CLOSE_IN_CHAT: Rule(frozenset({AGENT}), frozenset({Relation.ASSIGNED_AGENT}),
                               FORBIDDEN_FOR_ROLE, NOT_ALLOWED, unknown_is_forbidden=True),
    Action.SUBSCRIBE_INBOX: Rule(ANYONE, role_error=FORBIDDEN_FOR_ROLE),
    Action.SET_PRESENCE: Rule(frozenset({AGENT}), role_error=FORBIDDEN_FOR_ROLE),
    Action.WATCH: Rule(frozenset({ADMIN, SUPERVISOR}), IN_CHARGE,
                       FORBIDDEN_FOR_ROLE, NOT_ALLOWED, unknown_is_forbidden=True),
    Action.UNWATCH: Rule(frozenset({ADMIN, SUPERVISOR}), role_error=FORBIDDEN_FOR_ROLE),
    # The chat's two parties type; watchers are invisible, so they never do. No relation is listed:
    # TYPING reads no database, being in the room (joined, so once authorized) is the check.
    Action.TYPING: Rule(frozenset({CANDIDATE, AGENT}), role_error=FORBIDDEN_FOR_ROLE),
    # Everyone in the room reads: the parties (joined) and the staff in charge (watching).
    Action.MARK_READ: Rule(ANYONE, EVERY_PARTY, FORBIDDEN_FOR_ROLE, NOT_ALLOWED, unknown_is_forbidden=True),
    Action.SEND_NOTE: Rule(STAFF, IN_CHARGE | {Relation.ASSIGNED_AGENT}, FORBIDDEN_FOR_ROLE, NOT_ALLOWED,
                           unknown_is_forbidden=True),
}


def relation(user: User, conv: Conversation) -> Relation:
    if user.role is ADMIN:
        return Relation.ADMIN
    if user.role is CANDIDATE and conv.candidate_id == user.id:
        return Relation.OWNER
    if user.role is SUPERVISOR and conv.supervisor_id == user.id:
        return Relation.SUPERVISOR
    if user.role is AGENT and conv.agent_id == user.id:
        return Relation.ASSIGNED_AGENT
    return Relation.NONE


def ensure_role(user: User, action: Action) -> None:
    """The coarse gate: 403 before anything about the request is looked at."""
    rule = RULES[action]
    if user.role not in rule.roles:
        raise Forbidden(rule.role_error)


def ensure_access(user: User, action: Action, conv: Conversation) -> None:
    """The relationship check on a loaded conversation."""
    rule = RULES[action]
    if user.role not in rule.roles:
        raise Forbidden(rule.role_error)
    if relation(user, conv) not in rule.relations:
        raise Forbidden(rule.access_error)


def can(user: User, action: Action, conv: Conversation) -> bool:
    rule = RULES[action]
    return user.role in rule.roles and relation(user, conv) in rule.relations


def unknown_conversation_error(action: Action) -> Forbidden | None:
    """What to raise for an unknown id: ``None`` means the caller's 404 stands."""
    rule = RULES[action]
    return Forbidden(rule.access_error) if rule.unknown_is_forbidden else None


def visible(user: User, conv: Conversation) -> bool:
    """Does ``conv`` belong in ``user``'s lists and pushed inbox? The relations of VIEW."""
    return can(user, Action.VIEW, conv)


def ensure_manages(user: User, supervisor_id: ObjectId) -> None:
    """A supervisor's team settings: the supervisor itself, or an admin."""
    if user.role is not ADMIN and user.id != supervisor_id:
        raise Forbidden()


def sees_agent(user: User, supervisor_id: ObjectId | None) -> bool:
    """Whose presence a user is told about: an admin everyone's, a supervisor its own agents'."""
    return user.role is ADMIN or (user.role is SUPERVISOR and user.id == supervisor_id)


def analytics_team(user: User) -> ObjectId | None:
    """Whose conversations a user's analytics cover: an admin everyone's (``None``), a supervisor
    the conversations addressed to it — its own team's work."""
    if user.role is ADMIN:
        return None
    if user.role is SUPERVISOR:
        return user.id
    raise Forbidden()


def listing_scope(user: User) -> dict[str, ObjectId]:
    """Which conversations a user sees in lists (B.7): the same relationships as VIEW."""
    if user.role is ADMIN:
        return {}
    field = {CANDIDATE: "candidate_id", SUPERVISOR: "supervisor_id", AGENT: "agent_id"}[user.role]
    return {field: user.id}


# --- accounts (README "Profiles") -------------------------------------------------------------


def ensure_may_create_account(actor: User | None, role: Role, supervisor_id: ObjectId | None,
                              *, open_signup: bool) -> None:
    """Development (``open_signup``): anyone may take any role, as the seed allowed.
    Production: the public may only become candidates; an admin may create any account;
    a supervisor may create agents that report to itself."""
    if open_signup or role is CANDIDATE:
        return
    if actor is not None and actor.role is ADMIN:
        return
    if actor is not None and actor.role is SUPERVISOR and role is AGENT and supervisor_id == actor.id:
        return
    raise Forbidden()
