"""Every Markdown link resolves inside the repository, and no file names a path a clone lacks.

Three checks over the project's files (tracked or new, not ignored; lock files and vendored
packages skipped):

* every relative Markdown link (inline or reference definition) names a file or directory inside
  the repository, and its ``#anchor`` a heading (GitHub's slugs) or an explicit anchor there;
* a path starting with ``..`` resolves, from its file's folder, inside the repository, and (when
  it names a file) to a file that exists;
* a path starting with a top-level folder of the project (``shared/...``, ``docs/...``) exists,
  unless git ignores it (a generated path such as the venv or ``node_modules``).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_NAMES = {"package-lock.json"}
SKIPPED_PARTS = {"node_modules", ".git"}
TEXT_SUFFIXES = {
    ".md", ".py", ".toml", ".txt", ".json", ".bicep", ".bicepparam", ".sh", ".yml", ".yaml", ".cfg", ".ini",
}  # fmt: skip
TEXT_NAMES = {"Makefile", "run", ".funcignore", ".gitignore"}

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# A path at a token boundary: not inside a URL, a longer path or an identifier.
BOUNDARY = r"(?<![\w./\\-])"
UP_PATH = re.compile(BOUNDARY + r"((?:\.\./)+[\w.*?{}<>\[\]$%/-]*)")
TEMPLATE = re.compile(r"[*?{}<>\[\]$%]")
FILE_LIKE = re.compile(r"\.[A-Za-z0-9]{1,10}$")


@cache
def project_files() -> tuple[Path, ...]:
    """The files a commit of the working tree would hold: tracked and new, not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    files = (ROOT / name for name in listed.split("\0") if name)
    return tuple(
        sorted(
            f
            for f in files
            if f.is_file()
            and f.name not in SKIPPED_NAMES
            and not SKIPPED_PARTS & set(f.relative_to(ROOT).parts)
        )
    )


def text_files() -> list[Path]:
    return [f for f in project_files() if f.suffix in TEXT_SUFFIXES or f.name in TEXT_NAMES]


def markdown_files() -> list[Path]:
    return [f for f in project_files() if f.suffix == ".md"]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Markdown lines outside fenced code blocks, with code spans blanked out."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def inside(path: Path) -> bool:
    return path == ROOT or ROOT in path.parents


@cache
def git_ignores(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False).returncode == 0


def link_problem(source: Path, target: str) -> str | None:
    """Why a Markdown link target does not resolve, or None."""
    if SCHEME.match(target) or target.startswith("//"):
        return None  # a URL: not ours to check here
    path_part, _, fragment = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    if path_part.startswith("/"):
        return "root-absolute link (renders differently outside GitHub): use a relative path"
    resolved = (source.parent / path_part).resolve() if path_part else source
    if not inside(resolved):
        return "leaves the repository"
    if not resolved.exists():
        return "no such file or directory"
    if (
        fragment
        and resolved.is_file()
        and resolved.suffix == ".md"
        and unquote(fragment) not in anchors(resolved)
    ):
        return f"no heading or anchor '#{fragment}' in {rel(resolved)}"
    return None


def markdown_link_problems() -> list[str]:
    problems = []
    for source in markdown_files():
        for number, line in prose_lines(source.read_text(encoding="utf-8")):
            targets = INLINE_LINK.findall(line) + REFERENCE_DEF.findall(line)
            for target in targets:
                problem = link_problem(source, target)
                if problem:
                    problems.append(f"{rel(source)}:{number}: ({target}) {problem}")
    return problems


def top_level_folders() -> list[str]:
    return sorted(
        {f.relative_to(ROOT).parts[0] for f in project_files() if len(f.relative_to(ROOT).parts) > 1}
    )


def path_problems() -> list[str]:
    folders = "|".join(re.escape(name) for name in top_level_folders())
    root_path = re.compile(BOUNDARY + rf"((?:{folders})/[\w.*?{{}}<>\[\]$%/-]*)")
    problems = []
    for source in text_files():
        for number, line in enumerate(source.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for token in UP_PATH.findall(line):
                problem = up_path_problem(source, token)
                if problem:
                    problems.append(f"{rel(source)}:{number}: {token} {problem}")
            for token in root_path.findall(line):
                problem = root_path_problem(token)
                if problem:
                    problems.append(f"{rel(source)}:{number}: {token} {problem}")
    return problems


def up_path_problem(source: Path, token: str) -> str | None:
    """A ``../`` path, read from its file's folder: it must stay inside and, if a file, exist."""
    path = TEMPLATE.split(token, maxsplit=1)[0].rstrip(".")
    if not path.strip("./"):
        return None  # only dots: test data or arithmetic, not a path
    resolved = (source.parent / path).resolve()
    if not inside(resolved):
        return "leaves the repository"
    if FILE_LIKE.search(path) and not TEMPLATE.search(token) and not resolved.exists():
        return "names a file the repository does not have"
    return None


def root_path_problem(token: str) -> str | None:
    """A path from the project root (``shared/app.py``): it must exist, unless git ignores it."""
    if TEMPLATE.search(token):
        token = TEMPLATE.split(token, maxsplit=1)[0]
        token = token[: token.rfind("/") + 1]  # the folder before the template part
    path = token.rstrip(".,:;")
    if not path or (ROOT / path).exists() or git_ignores(path):
        return None
    return "names a path the repository does not have"


def test_every_relative_markdown_link_resolves_inside_the_repository() -> None:
    assert markdown_link_problems() == []


def test_no_file_names_a_path_outside_the_repository_or_missing_from_it() -> None:
    assert path_problems() == []


def test_no_file_cites_issue_numbers_of_a_tracker_a_clone_cannot_see() -> None:
    cites = re.compile(r"\bissues?\s+#?\d+", re.IGNORECASE)
    found = [
        f"{rel(source)}:{number}: {line.strip()}"
        for source in text_files()
        for number, line in enumerate(source.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if cites.search(line)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Ticket field mapping (`TICKET_MAPPINGS`)", "ticket-field-mapping-ticket_mappings"),
        ("Queue settings (host.json) and why", "queue-settings-hostjson-and-why"),
        ("Permissions (application permissions on WindowsDefenderATP)",
         "permissions-application-permissions-on-windowsdefenderatp"),
        ("[Deploy](docs/deploy.md) in five steps", "deploy-in-five-steps"),
    ],
)  # fmt: skip
def test_anchors_follow_githubs_slugs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "x.md"
    assert link_problem(doc, "mde-api.md#hosts-and-tokens") is None
    assert link_problem(doc, "mde-api.md#no-such-heading") is not None
    assert link_problem(doc, "../" * 2 + "outside.md") == "leaves the repository"
    assert link_problem(doc, "missing.md") == "no such file or directory"
    assert link_problem(doc, "https://learn.microsoft.com/x") is None
    code = ROOT / "shared" / "x.py"
    parent_notes = "../" + "shared/" + "notes.md"  # a sibling folder's file, which a clone lacks
    assert up_path_problem(code, parent_notes) == "names a file the repository does not have"
    assert up_path_problem(code, "../../" + "elsewhere/file.md") == "leaves the repository"
    assert up_path_problem(code, "../") is None
    assert root_path_problem("shared/" + "nothing-here.md") is not None
    assert root_path_problem("shared/schemas/") is None
    assert root_path_problem("tests/fixtures/events/" + "*.json") is None
    assert root_path_problem("devstack/node_modules/.bin/azurite") is None  # ignored: generated
