"""The API's texts, formats and close codes (docs/openapi.json, docs/asyncapi.yaml), each spelled out
once for the whole suite. They are typed here by hand, never imported from ``livechat/``: a test then
checks the app's wording against the contract, so a typo in the app cannot hide behind its own constant."""

import re

# --- formats ---------------------------------------------------------------------------------------------

HEX_ID = re.compile(r"^[0-9a-f]{24}$")  # every id: 24 lowercase hex digits
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")  # every timestamp: UTC, milliseconds, Z

# --- HTTP errors (A.4, A.6) --------------------------------------------------------------------------

UNAUTHORIZED = "Unauthorized, token missing or invalid"
FORBIDDEN = "Forbidden, insufficient permissions"
INVALID = "Invalid request schema"
TOO_LARGE = "Request body too large"
EMAIL_EXISTS = "Email already exists"
BAD_LOGIN = "Invalid email or password"
USER_NOT_FOUND = "User not found"
BUSY = "Server busy, retry"  # the message writer's queue is full
UNAVAILABLE = "Service unavailable"  # the database is out of reach (also a WebSocket ERROR)
SUPERVISOR_NOT_FOUND = "Supervisor not found"
INVALID_SUPERVISOR_ROLE = "Invalid supervisor role"
AGENT_NOT_FOUND = "Agent not found"
INVALID_AGENT_ROLE = "Invalid agent role"
CONV_NOT_FOUND = "Conversation not found"
ALREADY_CLOSED = "Conversation already closed"
NOT_OPEN = "Conversation is not open"
ACTIVE_EXISTS = "Candidate already has an active conversation"
NOT_YOUR_CONVERSATION = "cannot assign agent"
NOT_YOUR_AGENT = "Agent doesn't belong to you"

# --- WebSocket ERROR messages (B.2, B.4); "Invalid request schema" and "Conversation already closed"
# are the same texts as over HTTP (INVALID, ALREADY_CLOSED) -------------------------------------------

WS_UNAUTHORIZED = "Unauthorized or invalid token"
INVALID_FORMAT = "Invalid message format"
UNKNOWN_EVENT = "Unknown event"
FORBIDDEN_FOR_ROLE = "Forbidden for this role"
NOT_ALLOWED = "Not allowed to access this conversation"
NOT_YET_ASSIGNED = "Conversation not yet assigned"
NOT_JOINED = "You must join the conversation first"
TOO_MANY_MESSAGES = "Too many messages"
TOO_MANY_CONNECTIONS = "Too many connections"

# --- WebSocket close codes (B.2, B.4) -----------------------------------------------------------------

UNAUTHORIZED_CLOSE = 4401  # the token was missing, invalid or expired
GOING_AWAY = 1001  # the server shuts down
UNSUPPORTED = 1003  # a frame that is not JSON text
POLICY = 1008  # sustained abuse: message flood, too many connections
TOO_BIG = 1009  # a frame over the size limit
SLOW_CONSUMER = 1013  # the client does not read what it is sent
