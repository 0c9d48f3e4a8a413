"""Security floors of the dependencies: what is installed, and what setup.py asks for.

aiohttp 3.14.3 fixes request-smuggling/DoS advisories, PyJWT 2.12 rejects short HMAC keys and
non-string subjects, bcrypt 5 refuses input over 72 bytes instead of truncating it."""

from __future__ import annotations

import re
from importlib import metadata

import pytest

from tests.processes import ROOT

FLOORS = {"aiohttp": (3, 14, 3), "PyJWT": (2, 12, 0), "bcrypt": (5, 0, 0)}


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a PEP 440 version (``3.14.3rc1`` → (3, 14, 3), ``1!2.0`` → (2, 0, 0))."""
    match = re.match(r"^\s*v?(?:\d+!)?(\d+(?:\.\d+)*)", version)
    assert match, f"not a version: {version!r}"
    parts = tuple(int(p) for p in match.group(1).split("."))
    return (parts + (0, 0, 0))[:3]


def is_prerelease(version: str) -> bool:
    return bool(re.search(r"(a|b|rc|c|alpha|beta|pre|preview|dev)\d*", version.lower()))


def test_version_parsing():
    assert release("3.14.3") == (3, 14, 3) and release("2.12") == (2, 12, 0) and release("5") == (5, 0, 0)
    assert release("3.14.10.post1") == (3, 14, 10) and release("1!4.0.0") == (4, 0, 0)
    assert release("3.14.3rc1") == (3, 14, 3) and is_prerelease("3.14.3rc1") and not is_prerelease("3.14.3")
    assert release("3.9.10") < (3, 14, 3) < release("3.14.12")  # numeric, not string, comparison


@pytest.mark.parametrize("package", FLOORS)
def test_installed_versions_meet_the_security_floors(package):
    version = metadata.version(package)
    floor = FLOORS[package]
    assert release(version) >= floor, f"{package} {version} is below the security floor {floor}"
    # A pre-release of the floor itself predates the fix.
    assert not (release(version) == floor and is_prerelease(version)), version


@pytest.mark.parametrize("package", FLOORS)
def test_setup_py_requires_the_security_floors(package):
    """Nobody can lower a floor in setup.py without this test noticing."""
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    match = re.search(rf'"{package}\s*>=\s*([0-9.]+)', text, re.IGNORECASE)
    assert match, f"setup.py has no floor for {package}"
    assert release(match.group(1)) >= FLOORS[package], match.group(0)
