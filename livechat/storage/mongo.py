"""MongoDB storage: the only module that imports a driver (Motor, or PyMongo's AsyncMongoClient).

Repositories take and return attrs domain objects; documents never leave this module. Invariants
live in indexes (unique email, one active conversation per candidate, unique seq per
conversation) and state changes are single conditional updates, so races cannot break them.
Driver failures become ``Unavailable`` (503) and duplicate keys become domain errors.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import attrs
import pymongo
import pymongo.errors
from bson import ObjectId
from bson.codec_options import CodecOptions
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.bson import make_converter

from livechat.config import DatabaseSettings, Driver
from livechat.domain.models import Conversation, Message, Role, User
from livechat.errors import Conflict, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


# --- documents <-> attrs ------------------------------------------------------------------
# Documents keep the seed's camelCase field names (candidateId, passwordHash, createdAt), so a
# database written by the original Node.js service is read as it is.


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _make_document_converter():
    conv = make_converter()
    for cls in (User, Conversation, Message):
        renames = {
            f.name: override(rename="_id" if f.name == "id" else _camel(f.name))
            for f in attrs.fields(cls)
        }
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **renames))
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **renames))
    return conv


documents = _make_document_converter()


def to_document(obj: Any) -> dict[str, Any]:
    return documents.unstructure(obj)


def from_document(doc: dict[str, Any], cls: type[T]) -> T:
    return documents.structure(doc, cls)


# --- driver differences and failures ----------------------------------------------------------


async def _maybe_await(value: Any) -> Any:
    """Motor returns cursors and None where AsyncMongoClient returns coroutines."""
    return await value if inspect.isawaitable(value) else value


def _is_outage(exc: pymongo.errors.PyMongoError) -> bool:
    return isinstance(exc, pymongo.errors.ConnectionFailure) or exc.timeout


def translate_errors(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn a lost or slow database into ``Unavailable`` so the edge answers 503, not 500."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await method(*args, **kwargs)
        except pymongo.errors.PyMongoError as exc:
            if _is_outage(exc):
                log.warning("database unavailable: %s", type(exc).__name__)
                raise Unavailable() from exc
            raise

    return wrapper


# --- repositories -------------------------------------------------------------------------------


class MongoUserRepo:
    def __init__(self, collection: Any) -> None:
        self._c = collection

    async def ensure_indexes(self) -> None:
        await self._c.create_index("email", unique=True, name="email_unique")
        await self._c.create_index([("role", 1), ("supervisorId", 1)], name="role_supervisor")

    @translate_errors
    async def insert(self, user: User) -> User:
        try:
            await self._c.insert_one(to_document(user))
        except pymongo.errors.DuplicateKeyError:
            raise Conflict("Email already exists") from None
        return user

    @translate_errors
    async def get(self, user_id: ObjectId) -> User | None:
        doc = await self._c.find_one({"_id": user_id})
        return from_document(doc, User) if doc else None

    @translate_errors
    async def by_email(self, email: str) -> User | None:
        doc = await self._c.find_one({"email": email})
        return from_document(doc, User) if doc else None

    @translate_errors
    async def delete(self, user_id: ObjectId) -> bool:
        return (await self._c.delete_one({"_id": user_id})).deleted_count == 1

    @translate_errors
    async def count(self) -> int:
        return await self._c.count_documents({})

    @translate_errors
    async def list_by_role(self, role: Role, *, supervisor_id: ObjectId | None = None,
                           after: ObjectId | None = None, limit: int = 100) -> list[User]:
        query: dict[str, Any] = {"role": role.value}
        if supervisor_id is not None:
            query["supervisorId"] = supervisor_id
        if after is not None:
            query["_id"] = {"$gt": after}
        docs = await self._c.find(query).sort("_id", 1).limit(limit).to_list(None)
        return [from_document(d, User) for d in docs]


class MongoStore:
    """One database: its repositories plus the health probe."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.users = MongoUserRepo(db["users"])

    async def ensure_indexes(self) -> None:
        await self.users.ensure_indexes()

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the server answers."""
        try:
            await self._db.command("ping")
        except pymongo.errors.PyMongoError as exc:
            raise Unavailable() from exc


def _client_factory(driver: Driver) -> Callable[..., Any]:
    if driver is Driver.PYMONGO:
        return pymongo.AsyncMongoClient
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncIOMotorClient


@contextlib.asynccontextmanager
async def open_store(cfg: DatabaseSettings, uri: str | None = None, *,
                     database: str | None = None) -> AsyncIterator[MongoStore]:
    """Connect, check the server answers (fail fast on a wrong URI), create indexes (a no-op
    when they exist), yield the store, close the client."""
    uri = uri or cfg.uri
    client = _client_factory(cfg.driver)(
        uri,
        tz_aware=True,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=cfg.timeout_ms,
        connectTimeoutMS=cfg.timeout_ms,
        timeoutMS=cfg.timeout_ms,
        appname="livechat",
    )
    try:
        db = client.get_database(database or cfg.name, codec_options=CodecOptions(tz_aware=True))
        store = MongoStore(db)
        await store.ping()
        await store.ensure_indexes()
        yield store
    finally:
        await _maybe_await(client.close())


def redact_uri(uri: str) -> str:
    """mongodb://user:pass@host → mongodb://user:***@host, for log lines."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", uri)
