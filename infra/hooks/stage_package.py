"""Stage the Function App package: the runtime code only, with the locked dependency set.

Copies host.json, shared/ and every function folder (one holding a function.json) into
build/functionapp/, and writes requirements-deploy.txt there as requirements.txt. The remote build
runs ``pip install -r requirements.txt``, and pip checks every download against the listed hashes
as soon as one line carries ``--hash`` (https://pip.pypa.io/en/stable/topics/secure-installs/):
the deployed set is exactly the locked one, or the build fails.

azd runs it as the api service's prepackage hook (azure.yaml, ``dist: build/functionapp``); the
GitHub workflow and the az CLI path run it before zipping that folder. It refuses a lock that no
longer pins what requirements.txt pins (regenerate it with infra/scripts/lock_requirements.py).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "functionapp"
LOCK = "requirements-deploy.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\#]+)", re.M)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by canonical name (PEP 503)."""
    return {_canonical(name): version for name, version in _PIN.findall(text)}


def check_lock(root: Path) -> None:
    wanted = pins((root / "requirements.txt").read_text(encoding="utf-8"))
    locked = pins((root / LOCK).read_text(encoding="utf-8"))
    stale = sorted(f"{name}=={version}" for name, version in wanted.items() if locked.get(name) != version)
    if stale:
        raise SystemExit(
            f"error: {LOCK} does not pin {', '.join(stale)} like requirements.txt: regenerate it with "
            "infra/scripts/lock_requirements.py"
        )


def function_folders(root: Path) -> list[Path]:
    return sorted(path.parent for path in root.glob("*/function.json"))


def stage(root: Path, out: Path) -> list[str]:
    """Fill ``out`` (emptied first) with the package; returns its top-level entries."""
    check_lock(root)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copy2(root / "host.json", out / "host.json")
    for folder in [root / "shared", *function_folders(root)]:
        shutil.copytree(folder, out / folder.name, ignore=ignore)
    shutil.copy2(root / LOCK, out / "requirements.txt")
    return sorted(entry.name for entry in out.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="package folder (default: build/functionapp)")
    parser.add_argument("--zip", type=Path, help="also write the package as this zip file")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if ROOT not in out.parents:
        raise SystemExit(f"error: the package folder must be inside the repository, not {out}")
    entries = stage(ROOT, out)
    print(f"staged {out.relative_to(ROOT)}: {', '.join(entries)}", file=sys.stderr)
    if args.zip is not None:
        archive = shutil.make_archive(str(args.zip.resolve().with_suffix("")), "zip", out)
        print(f"zipped {archive}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
