"""Regenerate requirements-deploy.txt: the deployed dependency set, every package pinned, hashed.

    .venv/bin/python infra/scripts/lock_requirements.py

Run it on Linux with CPython 3.11 (the .venv: it has ``packaging``), the platform of the Flex
Consumption remote build: pip evaluates environment markers (``; sys_platform == "win32"`` and
the like) for the interpreter it runs in.
It resolves requirements.txt against PyPI with ``pip install --dry-run --report`` (isolated from
local pip configuration, so no mirror or constraint file changes the answer), then lists, for each
pinned version, the sha256 of every file PyPI has for it (PyPI's JSON simple API, PEP 691): the
remote build may pick another wheel than this machine would, and must still match a hash.
requirements.txt stays the list of direct dependencies; this file is derived from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
INDEX = "https://pypi.org/simple"
HEADER = """\
# The deployed Python dependency set: requirements.txt with every transitive dependency pinned and
# the sha256 of every file PyPI has for each version. Generated, do not edit:
#   .venv/bin/python infra/scripts/lock_requirements.py   (Linux, CPython 3.11: the remote build's platform)
# infra/hooks/stage_package.py ships it as the package's requirements.txt; pip then refuses any
# download whose hash is not listed.
"""


def canonical(name: str) -> str:
    return str(canonicalize_name(name))


def resolve(requirements: Path) -> dict[str, str]:
    """name -> version of everything pip would install for ``requirements`` here."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--isolated",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--quiet",
                "--disable-pip-version-check",
                "--index-url",
                INDEX,
                "--report",
                str(report),
                "-r",
                str(requirements),
            ],
            check=True,
        )
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}


def _release(filename: str) -> tuple[str, Version] | None:
    """(canonical name, version) a wheel or sdist file name carries; None for other files."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return str(name), version


def file_hashes(name: str, version: str) -> list[str]:
    """sha256 of every file of ``name`` ``version`` on PyPI (wheels for each platform, sdist)."""
    request = urllib.request.Request(  # noqa: S310 - a fixed https URL
        f"{INDEX}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - a fixed https URL
        files = json.load(response)["files"]
    wanted = (name, Version(version))
    hashes = sorted({f["hashes"]["sha256"] for f in files if _release(f["filename"]) == wanted})
    if not hashes:
        raise SystemExit(f"error: PyPI lists no file of {name} {version}")
    return hashes


def main() -> int:
    if sys.version_info[:2] != (3, 11) or sys.platform != "linux":
        raise SystemExit("error: run this with CPython 3.11 on Linux (the remote build's platform)")
    resolved = resolve(ROOT / "requirements.txt")
    lines = [HEADER]
    for name in sorted(resolved):
        hashes = file_hashes(name, resolved[name])
        lines.append(
            f"{name}=={resolved[name]} \\\n" + " \\\n".join(f"    --hash=sha256:{h}" for h in hashes) + "\n"
        )
    (ROOT / "requirements-deploy.txt").write_text("".join(lines), encoding="utf-8")
    print(f"requirements-deploy.txt: {len(resolved)} packages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
