"""requirements-deploy.txt, the deployed dependency set: every package pinned and hashed, and
exactly the packages requirements.txt pulls in on the remote build's platform (Linux, CPython 3.11)."""

from __future__ import annotations

import re
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT

LOCK = ROOT / "requirements-deploy.txt"
ENTRY = re.compile(
    r"^([a-z0-9][a-z0-9.-]*)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\\n|\n))+)", re.M
)


def _top_level() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


def _locked() -> dict[str, str]:
    text = LOCK.read_text(encoding="utf-8")
    entries = ENTRY.findall(text)
    body = "\n".join(line for line in text.splitlines() if line and not line.startswith("#"))
    assert body.count("==") == len(entries), "every entry is name==version followed by its hashes"
    return {name: version for name, version, _ in entries}


def test_every_locked_package_is_pinned_with_hashes() -> None:
    text = LOCK.read_text(encoding="utf-8")
    locked = _locked()
    assert locked and list(locked) == sorted(locked)
    for name, _, hashes in ENTRY.findall(text):
        assert name == canonicalize_name(name), name
        assert hashes.count("--hash=sha256:") >= 1, name
    assert "infra/scripts/lock_requirements.py" in text.split("\n\n")[0], "the header says how it is made"


def test_the_lock_pins_what_requirements_txt_pins() -> None:
    locked = _locked()
    for name, version in _top_level().items():
        assert locked.get(name) == version, f"{name}: requirements.txt {version}, lock {locked.get(name)}"


def _closure(roots: set[str]) -> set[str]:
    """Names of what ``roots`` pull in, from installed metadata, markers evaluated here."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(name, frozenset()) for name in roots]
    while todo:
        name, extras = todo.pop()
        seen.add(name)
        for text in metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            wanted = any(
                requirement.marker is None or requirement.marker.evaluate({"extra": extra})
                for extra in (extras or {""})
            )
            dependency = canonicalize_name(requirement.name)
            if wanted and dependency not in seen:
                todo.append((dependency, frozenset(requirement.extras)))
    return seen


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11) or sys.platform != "linux",
    reason="markers are evaluated for the running interpreter: the lock is for Linux, CPython 3.11",
)
def test_the_lock_holds_exactly_what_requirements_txt_pulls_in() -> None:
    """Fails when requirements.txt changes without regenerating the lock (a dependency added,
    dropped or gaining a dependency of its own)."""
    try:
        needed = _closure(set(_top_level()))
    except metadata.PackageNotFoundError as missing:
        pytest.skip(f"{missing} is not installed here (make setup installs requirements.txt)")
    assert set(_locked()) == needed
