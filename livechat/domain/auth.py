"""Accounts and tokens: signup, login, and turning a bearer token into a user.

Passwords: bcrypt in a bounded thread pool (bcrypt releases the GIL, so hashes run in parallel
and the event loop never waits). bcrypt reads at most 72 bytes and bcrypt 5 refuses more, so the
password is first reduced with SHA-256 and base64 (44 ASCII bytes, no NUL): every character of
a 128-character password counts, whatever its encoding length. This is passlib's
``bcrypt_sha256`` construction.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import attrs
import bcrypt
import jwt
from attrs import field, frozen
from bson import ObjectId

from livechat.domain import policy
from livechat.domain.models import Role, TokensRevoked, User, utcnow
from livechat.domain.policy import Action
from livechat.domain.ports import UserRepo
from livechat.domain.throttle import LoginThrottle
from livechat.errors import DomainError, InvalidInput, NotFound, Unauthenticated

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid email or password"
INVALID_CURRENT_PASSWORD = "Invalid current password"
MAX_PASSWORD_CHARS = 128


class PasswordHasher:
    def __init__(self, rounds: int, threads: int) -> None:
        self.rounds = rounds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bcrypt")
        self._dummy_hash: bytes | None = None

    @staticmethod
    def _prehash(password: str) -> bytes:
        # surrogatepass: JSON can carry lone surrogates; they must hash, not crash.
        return base64.b64encode(hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest())

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def hash(self, password: str) -> str:
        hashed = await self._run(bcrypt.hashpw, self._prehash(password), bcrypt.gensalt(self.rounds))
        return hashed.decode("ascii")

    async def verify(self, password: str, hashed: str) -> bool:
        try:
            return await self._run(bcrypt.checkpw, self._prehash(password), hashed.encode("ascii"))
        except ValueError:  # a corrupt stored hash is a failed login, not a 500
            log.error("stored password hash is not a valid bcrypt hash")
            return False

    async def waste_time(self, password: str) -> None:
        """A full-cost check for an unknown email, so it takes as long as a wrong password."""
        if self._dummy_hash is None:
            self._dummy_hash = (await self.hash("livechat-dummy-password")).encode("ascii")
        await self._run(bcrypt.checkpw, self._prehash(password), self._dummy_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class TokenCodec:
    """HS256 JWTs with ``sub``/``userId``/``role``/``iat``/``exp`` (the seed's claims plus the standard
    ones) and ``tv``, the user's token version at issue (revocation; a token without it is version 0)."""

    ALGORITHM = "HS256"

    def __init__(self, secret: str, expires_in: timedelta, leeway: timedelta) -> None:
        self._secret = secret
        self._expires_in = expires_in
        self._leeway = leeway

    def issue(self, user: User, now: datetime | None = None) -> str:
        now = now or utcnow()
        claims = {
            "sub": str(user.id),
            "userId": str(user.id),
            "role": user.role.value,
            "iat": int(now.timestamp()),
            "exp": int((now + self._expires_in).timestamp()),
            "tv": user.token_version,
        }
        return jwt.encode(claims, self._secret, algorithm=self.ALGORITHM)

    def subject(self, token: str) -> tuple[ObjectId, int]:
        """The user id and token version a valid token names; ``Unauthenticated`` for anything else."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[self.ALGORITHM], leeway=self._leeway,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError:
            raise Unauthenticated() from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not ObjectId.is_valid(sub) or len(sub) != 24:
            raise Unauthenticated()
        version = claims.get("tv", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise Unauthenticated()
        return ObjectId(sub), version


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _chars(lo: int, hi: int):
    def check(instance: object, attribute: attrs.Attribute, value: str) -> None:
        if not lo <= len(value) <= hi:
            raise ValueError(f"{attribute.name}: {lo}-{hi} characters")

    return check


def _email(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if len(value) > 254 or not EMAIL.match(value):
        raise ValueError("email: not an email address")


@frozen
class SignupRequest:
    name: str = field(converter=str.strip, validator=_chars(1, 100))
    email: str = field(converter=normalize_email, validator=_email)
    password: str = field(validator=_chars(8, MAX_PASSWORD_CHARS))
    role: Role
    supervisor_id: ObjectId | None = None


@frozen
class PasswordChange:
    current_password: str = field(validator=_chars(1, 1 << 20))  # a wrong one is a 401, like login
    new_password: str = field(validator=_chars(8, MAX_PASSWORD_CHARS))  # signup's rule


@frozen
class RoleChange:
    role: Role
    supervisor_id: ObjectId | None = None  # required when the new role is agent


@frozen
class LoginRequest:
    email: str = field(converter=normalize_email, validator=_email)
    # Any non-empty length: an overlong or odd password is a wrong password (401), never a 400.
    password: str = field(validator=_chars(1, 1 << 20))


class AuthService:
    def __init__(self, users: UserRepo, hasher: PasswordHasher, tokens: TokenCodec, throttle: LoginThrottle, *,
                 open_signup: bool, on_revoked: Callable[[TokensRevoked], None] = lambda revoked: None) -> None:
        self._users = users
        self._hasher = hasher
        self._tokens = tokens
        self._throttle = throttle
        self._open_signup = open_signup
        # This process's sockets of that user close at once; other processes hear it from the change feed.
        self._on_revoked = on_revoked

    async def signup(self, actor: User | None, req: SignupRequest, *, trusted: bool = False) -> User:
        """``trusted``: the operator's CLI, which may create any account."""
        supervisor_id = req.supervisor_id
        if req.role is Role.AGENT and supervisor_id is None and actor is not None and actor.role is Role.SUPERVISOR:
            supervisor_id = actor.id  # a supervisor creating an agent means one of its own
        if req.role is Role.AGENT and supervisor_id is None:
            raise InvalidInput()
        if not trusted:
            policy.ensure_may_create_account(actor, req.role, supervisor_id, open_signup=self._open_signup)
        if req.role is Role.AGENT:
            await self._ensure_supervisor(supervisor_id)
        user = User.new(name=req.name, email=req.email, role=req.role,
                        password_hash=await self._hasher.hash(req.password), supervisor_id=supervisor_id)
        return await self._users.insert(user)

    async def _ensure_supervisor(self, supervisor_id: ObjectId) -> None:
        supervisor = await self._users.get(supervisor_id)
        if supervisor is None:
            raise NotFound("Supervisor not found")
        if supervisor.role is not Role.SUPERVISOR:
            raise InvalidInput("Invalid supervisor role")

    # --- revocation (C.9): each raises the user's token version, so every earlier token is void ----

    def _revoked(self, user: User | None) -> User:
        if user is None:
            raise NotFound("User not found")
        self._on_revoked(TokensRevoked(user.id, user.token_version))
        return user

    async def logout_all(self, user: User) -> None:
        self._revoked(await self._users.revoke_tokens(user.id))

    async def change_password(self, user: User, req: PasswordChange, client: str) -> str:
        """A new token for the caller: its other sessions end, this one may go on. Wrong current
        passwords count as failed logins (a stolen token cannot guess the password faster)."""
        self._throttle.check(user.email, client)
        if not await self._hasher.verify(req.current_password, user.password_hash):
            self._throttle.failed(user.email, client)
            raise InvalidInput(INVALID_CURRENT_PASSWORD)
        new_hash = await self._hasher.hash(req.new_password)
        return self._tokens.issue(self._revoked(await self._users.revoke_tokens(user.id, password_hash=new_hash)))

    async def change_role(self, actor: User, user_id: ObjectId, req: RoleChange) -> User:
        """An admin's decision (the policy's CHANGE_ROLE gate is the caller's first check)."""
        policy.ensure_role(actor, Action.CHANGE_ROLE)
        supervisor_id = req.supervisor_id if req.role is Role.AGENT else None
        if req.role is Role.AGENT:
            if supervisor_id is None:
                raise InvalidInput()
            await self._ensure_supervisor(supervisor_id)
        if await self._users.get(user_id) is None:
            raise NotFound("User not found")
        return self._revoked(await self._users.revoke_tokens(user_id, role=req.role, supervisor_id=supervisor_id))

    async def login(self, req: LoginRequest, client: str) -> tuple[str, User]:
        """``client`` is the caller's address: failures are throttled per account and per client."""
        self._throttle.check(req.email, client)
        user = await self._users.by_email(req.email)
        if user is None:
            await self._hasher.waste_time(req.password)
        elif await self._hasher.verify(req.password, user.password_hash):
            self._throttle.succeeded(req.email)
            return self._tokens.issue(user), user
        self._throttle.failed(req.email, client)
        raise Unauthenticated(INVALID_CREDENTIALS)

    async def authenticate(self, token: str | None, *, deleted: DomainError | None = None) -> User:
        """The user behind a bearer token; 401 when the token is bad, and when its user is gone
        unless ``deleted`` says otherwise (``/auth/me`` answers 404, docs/openapi.json)."""
        if not token:
            raise Unauthenticated()
        user_id, version = self._tokens.subject(token)
        user = await self._users.get(user_id)
        if user is None:
            raise deleted or Unauthenticated()
        if version != user.token_version:  # revoked: logout-all, a password or a role change
            raise Unauthenticated()
        return user
