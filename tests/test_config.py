"""Settings: the committed config.toml, environment overrides, validation, profiles."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from livechat.config import (ConfigError, Driver, Profile, load_settings, parse_duration,
                             with_jwt_secret)

STRONG = "Zk3v9Qm2Lr8Xw4Tn6Yb1Hc5Jd7Fg0Sa2Pe"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_committed_config_toml_gives_the_defaults():
    s = load_settings(environ={})
    assert s.profile is Profile.DEVELOPMENT
    assert s.server.port == 3000 and s.bind_host == "127.0.0.1"
    assert s.database.driver is Driver.MOTOR and s.database.uri == ""
    assert s.auth.jwt_expires_in == timedelta(hours=24) and s.auth.bcrypt_rounds == 12
    assert s.cors_origins == ("*",)


def test_seed_environment_variables_override(tmp_path):
    s = load_settings(environ={
        "PORT": "4000", "MONGODB_URI": "mongodb://db:27017", "JWT_SECRET": STRONG,
        "JWT_EXPIRES_IN": "30m", "CORS_ORIGIN": "https://a.example, https://b.example",
        "LIVECHAT_DATA_DIR": str(tmp_path), "LIVECHAT_AUTH_BCRYPT_ROUNDS": "10",
        "LIVECHAT_DATABASE_DRIVER": "pymongo", "LIVECHAT_ENV": "production", "UNRELATED": "x",
        "LIVECHAT_LOG_LEVEL": "WARNING", "LIVECHAT_CONFIG": "", "LIVECHAT_ADMIN_PASSWORD": "not a setting",
    })
    assert s.server.port == 4000 and s.database.uri == "mongodb://db:27017"
    assert s.auth.jwt_expires_in == timedelta(minutes=30) and s.auth.bcrypt_rounds == 10
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.data_dir == tmp_path and s.database.driver is Driver.PYMONGO
    assert s.is_production and s.bind_host == "0.0.0.0"
    assert STRONG not in repr(s) and "db:27017" not in repr(s)  # secrets stay out of logs


@pytest.mark.parametrize(
    ("toml", "environ", "names"),
    [
        ("prot = 1\n", {}, "'prot'"),
        ("[server]\nprot = 8080\n", {}, "server.prot"),
        ("[server]\nport = \"3000\"\n", {}, "server.port"),
        ("[server]\nport = 70000\n", {}, "server.port"),
        ("[auth]\nbcrypt_rounds = 3\n", {}, "auth.bcrypt_rounds"),
        ("[auth]\njwt_expires_in = \"soon\"\n", {}, "auth.jwt_expires_in"),
        ("[database]\ndriver = \"mongoose\"\n", {}, "database.driver"),
        ("profile = \"staging\"\n", {}, "profile"),
        ("", {"PORT": "eighty"}, "PORT"),
        ("", {"LIVECHAT_SERVER_PROT": "1"}, "LIVECHAT_SERVER_PROT"),
        ("", {"LIVECHAT_ENV": "prod"}, "LIVECHAT_ENV"),
        ("[server\n", {}, "not valid TOML"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_key(tmp_path, toml, environ, names):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, toml), environ)
    message = str(err.value)
    assert names in message and "\n" not in message


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"JWT_SECRET": STRONG}, "MONGODB_URI"),
        ({"MONGODB_URI": "mongodb://db"}, "JWT_SECRET"),
        ({"MONGODB_URI": "mongodb://db", "JWT_SECRET": "short-secret"}, "at least 32 bytes"),
        ({"MONGODB_URI": "mongodb://db", "JWT_SECRET": "changeme" * 5}, "placeholder"),
        ({"MONGODB_URI": "mongodb://db", "JWT_SECRET": "a" * 40}, "placeholder"),
        ({"MONGODB_URI": "mongodb://db", "JWT_SECRET": STRONG, "CORS_ORIGIN": "*"}, "cors_origin"),
    ],
)
def test_production_refuses_missing_or_weak_secrets(tmp_path, environ, names):
    with pytest.raises(ConfigError, match=names):
        load_settings(write(tmp_path, ""), {"LIVECHAT_ENV": "production", **environ})


def test_development_secret_is_generated_once_and_kept(tmp_path):
    s = load_settings(write(tmp_path, ""), {"LIVECHAT_DATA_DIR": str(tmp_path / "data")})
    first = with_jwt_secret(s)
    second = with_jwt_secret(s)
    assert len(first.auth.jwt_secret) >= 32 and first.auth.jwt_secret == second.auth.jwt_secret
    assert (tmp_path / "data" / "jwt-secret").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(("text", "seconds"), [("24h", 86400), ("30m", 1800), ("7d", 604800),
                                               ("90", 90), ("1.5h", 5400), ("2 days", 172800)])
def test_durations_in_the_seeds_forms(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_every_problem_is_reported_at_once(tmp_path):
    """One start-up attempt names every bad setting, on one line, not only the first."""
    toml = '[server]\nport = 99999\nbogus = 1\n[ws]\nheartbeat = "often"\n[nope]\nx = 1\n'
    environ = {"LIVECHAT_SERVER_PROT": "1", "LIVECHAT_ENV": "production", "PORT": "eighty"}
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, toml), environ)
    message = str(err.value)
    for names in ("server.bogus", "'nope'", "ws.heartbeat", "LIVECHAT_SERVER_PROT", "PORT: expected a number",
                  "MONGODB_URI is required", "JWT_SECRET is required"):
        assert names in message, (names, message)
    assert "\n" not in message and message.count("; ") == 6


def test_a_refused_value_is_reported_with_the_others(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[server]\nport = 99999\n[ws]\nheartbeat = 0.5\n"), {})
    assert str(err.value).startswith("server.port: must be between") and "; ws.heartbeat: must be between" in str(err.value)
