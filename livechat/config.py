"""Settings: ``config.toml`` → environment overrides → validated, frozen attrs objects.

Every setting is declared once, below, with its type and its check; the loader refuses unknown
keys and bad values with a one-line message that names the key (``ConfigError``) — every problem
of the configuration at once, separated by "; ", so one start-up attempt shows them all.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
from attrs import field, frozen

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.toml"
MIN_SECRET_BYTES = 32
# Secrets that appear in tutorials and .env examples; production refuses them however long.
PLACEHOLDER_SECRETS = frozenset(
    {"secret", "changeme", "change-me", "changethis", "your-secret", "yoursecret", "jwt-secret", "jwtsecret",
     "supersecret", "mysecret", "password", "development", "test", "example"}
)


class ConfigError(Exception):
    """A setting is missing, unknown or invalid; the message is one line naming the key."""


class Profile(enum.Enum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Driver(enum.Enum):
    MOTOR = "motor"
    PYMONGO = "pymongo"


class FanoutMode(enum.Enum):
    """How events reach sockets on other processes."""

    CHANGESTREAM = "changestream"  # follow the database's change stream (needs a replica set)
    PROCESS = "process"  # this process only: one livechat process per database


class LogFormat(enum.Enum):
    TEXT = "text"  # one human-readable line per record
    JSON = "json"  # one JSON object per line (livechat/logs.py)


def _between(lo: float, hi: float):
    def check(instance: Any, attribute: attrs.Attribute, value: float) -> None:
        if not lo <= value <= hi:
            raise ValueError(f"{attribute.name}: must be between {lo} and {hi}, got {value}")

    return check


@frozen
class ServerSettings:
    host: str = ""  # empty: 127.0.0.1 in development, 0.0.0.0 in production
    port: int = field(default=3000, validator=_between(0, 65535))
    data_dir: str = "./data"
    max_body_bytes: int = field(default=1024 * 1024, validator=_between(1024, 64 * 1024 * 1024))
    keepalive_timeout: float = field(default=75.0, validator=_between(1, 3600))
    shutdown_timeout: float = field(default=10.0, validator=_between(0, 600))


@frozen
class DatabaseSettings:
    uri: str = field(default="", repr=False)  # may carry credentials
    name: str = "livechat"
    driver: Driver = Driver.MOTOR
    timeout_ms: int = field(default=3000, validator=_between(100, 120_000))
    embedded_command: str = "secantusd-py"
    embedded_start_timeout: float = field(default=15.0, validator=_between(1, 300))
    # Seconds between writes of the conversations' message facts (last message, unread, counts).
    facts_interval: float = field(default=2.0, validator=_between(0.01, 60))


@frozen
class AuthSettings:
    jwt_secret: str = field(default="", repr=False)
    jwt_expires_in: timedelta = timedelta(hours=24)
    jwt_leeway: timedelta = timedelta(seconds=10)
    bcrypt_rounds: int = field(default=12, validator=_between(4, 31))
    hash_threads: int = field(default=2, validator=_between(1, 64))
    login_failures_per_account: int = field(default=5, validator=_between(1, 1_000_000))
    login_failures_per_client: int = field(default=30, validator=_between(1, 1_000_000))
    login_window: timedelta = timedelta(minutes=15)


@frozen
class HttpSettings:
    cors_origin: tuple[str, ...] = ()  # empty: "*" in development, none in production
    # Browser origins allowed to open a WebSocket; empty = loopback origins and our own host.
    allowed_origins: tuple[str, ...] = ()


@frozen
class WebSocketSettings:
    heartbeat: float = field(default=30.0, validator=_between(1, 3600))
    max_frame_bytes: int = field(default=64 * 1024, validator=_between(1024, 16 * 1024 * 1024))
    outbox_size: int = field(default=1024, validator=_between(8, 1_000_000))
    send_timeout: float = field(default=10.0, validator=_between(0.1, 600))
    max_sockets_per_user: int = field(default=20, validator=_between(1, 10_000))
    # Sends waiting for the message writer, all sockets together; more get ERROR "Server busy, retry".
    max_queued_sends: int = field(default=2_000, validator=_between(1, 1_000_000))
    rate_burst: int = field(default=200, validator=_between(1, 1_000_000))
    rate_per_second: float = field(default=20.0, validator=_between(0.1, 1_000_000))
    abuse_strikes: int = field(default=100, validator=_between(1, 1_000_000))
    # Upgrades refused for a bad token, per client address within the window; then 429 before upgrading.
    unauthenticated_per_client: int = field(default=30, validator=_between(1, 1_000_000))
    unauthenticated_window: timedelta = timedelta(minutes=1)
    fanout: FanoutMode = FanoutMode.CHANGESTREAM


@frozen
class RoutingSettings:
    # An open conversation whose agent is offline this long without joining goes back to the queue.
    requeue_after: timedelta = timedelta(seconds=60)


@frozen
class MetricsSettings:
    # GET /metrics answers loopback clients; others need "Authorization: Bearer <token>" (empty: none may).
    token: str = field(default="", repr=False)


@frozen
class LogSettings:
    format: LogFormat = LogFormat.TEXT


@frozen
class Settings:
    profile: Profile = Profile.DEVELOPMENT
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    http: HttpSettings = HttpSettings()
    ws: WebSocketSettings = WebSocketSettings()
    routing: RoutingSettings = RoutingSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()

    @property
    def is_production(self) -> bool:
        return self.profile is Profile.PRODUCTION

    @property
    def bind_host(self) -> str:
        return self.server.host or ("0.0.0.0" if self.is_production else "127.0.0.1")

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return self.http.cors_origin or (() if self.is_production else ("*",))

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "database": DatabaseSettings,
    "auth": AuthSettings,
    "http": HttpSettings,
    "ws": WebSocketSettings,
    "routing": RoutingSettings,
    "metrics": MetricsSettings,
    "log": LogSettings,
}

# The seed's variable names, kept so that existing deployments work unchanged.
ENV_ALIASES: dict[str, tuple[str, str]] = {
    "PORT": ("server", "port"),
    "MONGODB_URI": ("database", "uri"),
    "JWT_SECRET": ("auth", "jwt_secret"),
    "JWT_EXPIRES_IN": ("auth", "jwt_expires_in"),
    "CORS_ORIGIN": ("http", "cors_origin"),
    "LIVECHAT_DATA_DIR": ("server", "data_dir"),
}
# Not settings: read by __main__ itself.
ENV_NOT_SETTINGS = frozenset({"LIVECHAT_ENV", "LIVECHAT_CONFIG", "LIVECHAT_ADMIN_PASSWORD", "LIVECHAT_LOG_LEVEL"})


def load_settings(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file, apply the environment, validate. Raises ``ConfigError``."""
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get("LIVECHAT_CONFIG") or DEFAULT_CONFIG_PATH)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    elif path != DEFAULT_CONFIG_PATH:
        raise ConfigError(f"{path}: no such configuration file")
    problems: list[str] = []
    values = _from_toml(raw, problems)
    for name, text in sorted(environ.items()):
        try:
            target = _env_target(name)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if target is not None:
            values[target] = (_FROM_ENV, text, name)
    return _build(values, problems)


def _from_toml(raw: dict[str, Any], problems: list[str]) -> dict[tuple[str, str], tuple]:
    values: dict[tuple[str, str], tuple] = {}
    for key, value in raw.items():
        if key == "profile":
            values[("", "profile")] = (_FROM_TOML, value, "profile")
            continue
        if key not in SECTIONS:
            problems.append(f"unknown setting {key!r} in config.toml")
            continue
        if not isinstance(value, dict):
            problems.append(f"[{key}] must be a table")
            continue
        names = {f.name for f in attrs.fields(SECTIONS[key])}
        for sub, subvalue in value.items():
            if sub not in names:
                problems.append(f"unknown setting '{key}.{sub}' in config.toml")
                continue
            values[(key, sub)] = (_FROM_TOML, subvalue, f"{key}.{sub}")
    return values


def _env_target(name: str) -> tuple[str, str] | None:
    if name in ENV_ALIASES:
        return ENV_ALIASES[name]
    if name == "LIVECHAT_ENV":
        return ("", "profile")
    if not name.startswith("LIVECHAT_") or name in ENV_NOT_SETTINGS:
        return None
    rest = name.removeprefix("LIVECHAT_").lower()
    for section, cls in SECTIONS.items():
        if rest.startswith(section + "_"):
            key = rest.removeprefix(section + "_")
            if key in {f.name for f in attrs.fields(cls)}:
                return (section, key)
    raise ConfigError(f"unknown setting in environment variable {name}")


def _build(values: dict[tuple[str, str], tuple], problems: list[str]) -> Settings:
    """Every bad value is a problem; the sections are still built from the good ones (and their
    defaults), so the profile's checks see as much as can be seen. Raise once, with them all."""
    kwargs: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        fields = {f.name: f for f in attrs.fields(cls)}
        args = {}
        for (sec, key), (source, value, label) in values.items():
            if sec == section:
                try:
                    args[key] = _coerce(source, value, fields[key].type, label)
                except ConfigError as exc:
                    problems.append(str(exc))
        kwargs[section] = _construct(cls, args, section, problems)
    if ("", "profile") in values:
        source, value, label = values[("", "profile")]
        try:
            kwargs["profile"] = _coerce(source, value, Profile, label)
        except ConfigError as exc:
            problems.append(str(exc))
    settings = Settings(**kwargs)
    problems.extend(_profile_problems(settings))
    if problems:
        raise ConfigError("; ".join(problems))
    return settings


def _construct(cls: type, args: dict[str, Any], section: str, problems: list[str]) -> Any:
    """The section; a value its validator refuses is a problem, and that field keeps its default."""
    while True:
        try:
            return cls(**args)
        except ValueError as exc:  # our validators start their message with the field's name
            problems.append(f"{section}.{exc}")
            name = str(exc).split(":", 1)[0]
            if name not in args:
                return cls()
            del args[name]


def _profile_problems(s: Settings) -> list[str]:
    if s.profile is not Profile.PRODUCTION:
        return []
    problems = []
    if not s.database.uri:
        problems.append("database.uri: MONGODB_URI is required in production")
    secret = s.auth.jwt_secret
    if not secret:
        problems.append("auth.jwt_secret: JWT_SECRET is required in production")
    elif len(secret.encode()) < MIN_SECRET_BYTES:
        problems.append(f"auth.jwt_secret: JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes in production")
    elif _looks_like_placeholder(secret):
        problems.append("auth.jwt_secret: JWT_SECRET looks like a placeholder; use a random value")
    if "*" in s.http.cors_origin:
        problems.append("http.cors_origin: '*' is not allowed in production; list the allowed origins")
    return problems


def _looks_like_placeholder(secret: str) -> bool:
    folded = re.sub(r"[^a-z]", "", secret.lower())
    return (
        len(set(secret)) < 8
        or any(folded.startswith(p.replace("-", "")) for p in PLACEHOLDER_SECRETS)
        or "changeme" in folded
        or "changethis" in folded
    )


# --- coercion ------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_UNITS = {
    "": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "ms": 0.001, "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}


def parse_duration(text: str) -> timedelta:
    """``"24h"``, ``"30m"``, ``"7d"``, ``"90"`` (seconds) — the forms the seed's JWT_EXPIRES_IN used."""
    match = _DURATION.match(text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a duration: {text!r} (use e.g. 24h, 30m, 7d or seconds)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@frozen
class _Kind:
    """How one setting type is read: from TOML, whose values are typed already (no "3000" for an
    int), and from the environment, whose values are text."""

    from_toml: Callable[[Any], Any]
    from_env: Callable[[str], Any]


def _exactly(*types: type, expected: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(expected)
        return value
    return check


def _duration_from_toml(value: Any) -> timedelta:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("expected a duration such as \"24h\"")


def _list_from_toml(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return _split_list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _enum_kind(cls: type[enum.Enum]) -> _Kind:
    return _Kind(cls, lambda text: cls(text.strip().lower()))


_KINDS: dict[str, _Kind] = {  # by the type's name as the settings classes spell it
    "int": _Kind(_exactly(int, expected="expected an integer"), lambda text: int(text.strip())),
    "float": _Kind(lambda v: float(_exactly(int, float, expected="expected a number")(v)),
                   lambda text: float(text.strip())),
    "str": _Kind(_exactly(str, expected="expected a string"), str),
    "timedelta": _Kind(_duration_from_toml, parse_duration),
    "tuple[str, ...]": _Kind(_list_from_toml, _split_list),
    **{cls.__name__: _enum_kind(cls) for cls in (Profile, Driver, FanoutMode, LogFormat)},
}
_FROM_TOML, _FROM_ENV = "toml", "env"


def _coerce(source: str, value: Any, target: Any, label: str) -> Any:
    kind = _KINDS.get(target if isinstance(target, str) else target.__name__)
    if kind is None:
        raise ConfigError(f"{label}: unsupported setting type {target}")
    try:
        return (kind.from_toml if source == _FROM_TOML else kind.from_env)(value)
    except ValueError as exc:
        raise ConfigError(f"{label}: {_reason(exc, value)}") from None


def _reason(exc: ValueError, value: Any) -> str:
    text = str(exc)
    if "is not a valid" in text:  # enum lookup
        return f"invalid value {value!r}"
    if text.startswith("invalid literal") or text.startswith("could not convert"):
        return f"expected a number, got {value!r}"
    return text


# --- runtime secret -----------------------------------------------------------------------


def with_jwt_secret(settings: Settings) -> Settings:
    """Development without JWT_SECRET: a random secret kept in the data directory (with a warning)."""
    if settings.auth.jwt_secret:
        return settings
    path = settings.data_dir / "jwt-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
    else:
        secret = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secret + "\n")
    log.warning("JWT_SECRET is not set: using the development secret kept in %s (never do this in production)", path)
    return attrs.evolve(settings, auth=attrs.evolve(settings.auth, jwt_secret=secret))
