"""Typed domain errors. Services raise them; the HTTP middleware and the WebSocket loop render them.

``message`` is the contract's exact text (docs/openapi.json, docs/asyncapi.yaml); ``status`` is the HTTP status.
"""

from __future__ import annotations

UNAUTHORIZED = "Unauthorized, token missing or invalid"
FORBIDDEN = "Forbidden, insufficient permissions"
INVALID_SCHEMA = "Invalid request schema"
UNAVAILABLE = "Service unavailable"
BUSY = "Server busy, retry"  # the message writer's queue is full: resend later, same clientMessageId
INTERNAL = "Internal server error"
ALREADY_CLOSED = "Conversation already closed"


class DomainError(Exception):
    status: int = 400
    default_message: str = INVALID_SCHEMA

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidInput(DomainError):
    status, default_message = 400, INVALID_SCHEMA


class Unauthenticated(DomainError):
    status, default_message = 401, UNAUTHORIZED


class Forbidden(DomainError):
    status, default_message = 403, FORBIDDEN


class NotFound(DomainError):
    status, default_message = 404, "Not found"


class Conflict(DomainError):
    status, default_message = 409, "Conflict"


class InvalidState(DomainError):
    """A rule about the object's current state (closed, not open…): 400 per the contract."""

    status, default_message = 400, "Invalid state"


class TooManyRequests(DomainError):
    status, default_message = 429, "Too many requests"

    def __init__(self, message: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """The database cannot be reached: 503 instead of a hang or a 500."""

    status, default_message = 503, UNAVAILABLE
