"""The demo's table: within 120 columns, wrapped rather than cut, one device label per device."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.demo import (
    MAX_WIDTH,
    SAMPLES,
    device_label,
    render_comments,
    render_key,
    render_results,
    render_table,
)

FIN = {"id": "c28460d93e441d30869ebb33920c06acbb6fd75e", "computerDnsName": "ws-fin-0142.contoso.local"}
ENG = {"id": "142b3441161eb63d57b41d1338407a04c781740d", "computerDnsName": "ws-eng-0007.contoso.local"}
KNOWN = [FIN, ENG]


def result(request_id: str, sequence: int, outcome: str, **fields: Any) -> dict[str, Any]:
    return {"requestId": request_id, "sequence": sequence, "outcome": outcome, **fields}


def test_a_device_is_labelled_the_same_whether_a_result_names_it_by_id_name_or_both() -> None:
    labels = {
        device_label({"id": FIN["id"], "computerDnsName": None}, KNOWN),
        device_label({"id": None, "computerDnsName": "WS-FIN-0142.contoso.local"}, KNOWN),
        device_label(FIN, KNOWN),
    }
    assert labels == {"ws-fin-0142 c28460d9"}


def test_a_result_without_a_device_shows_a_dash_and_an_unknown_one_keeps_what_it_has() -> None:
    assert device_label(None, KNOWN) == "-"
    assert device_label({"id": "ab" * 20, "computerDnsName": None}, KNOWN) == "? abababab"


def test_long_cells_wrap_within_the_width_and_no_text_is_lost() -> None:
    detail = "NotApproved: release.requireApproval: ticket INC0012399 is not approved " * 3
    request_id = "msg-7471b8b5-f767-471e-bbb6-b8e94474f64d"
    table = render_table(
        ("sample", "outcome", "detail"),
        (20, 10),
        [(f"Release ticket that is not approved ({request_id})", [("Rejected", detail)])],
        60,
    )
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert " ".join(line[34:].strip() for line in lines[2:]) == detail.strip()
    assert request_id in "".join(line[:20].strip() for line in lines[2:])


def test_a_group_label_longer_than_its_rows_gets_lines_of_its_own() -> None:
    table = render_table(("a", "b"), (6,), [("one two three four", [("x",)])], 20)
    assert table.splitlines()[2:] == ["one     x", "two", "three", "four"]


def test_columns_that_cannot_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="fit"):
        render_table(("a", "b"), (50,), [], 55)


def test_the_demo_table_and_key_fit_120_columns_and_show_every_sample() -> None:
    samples = [(s.description, s.request_id or "msg-7471b8b5-f767-471e-bbb6-b8e94474f64d") for s in SAMPLES]
    results = [
        result(
            "demo-isolate-1",
            1,
            "Submitted",
            machine=FIN,
            machineAction={"id": "91ff7bdd-1", "status": "Pending"},
        ),
        result(
            "demo-isolate-dup",
            1,
            "AlreadyPending",
            machine={"id": FIN["id"], "computerDnsName": None},
            duplicateOf="demo-isolate-1",
            machineAction={"id": "91ff7bdd-1", "status": "Unknown"},
        ),
        result(
            "demo-release-unapproved",
            1,
            "Rejected",
            machine={"id": None, "computerDnsName": ENG["computerDnsName"]},
            error={
                "code": "NotApproved",
                "message": "release.requireApproval: ticket INC0012399 is not approved",
            },
        ),
    ]
    table = render_results(samples, results, KNOWN)
    key = render_key(results)
    assert max(len(line) for line in (table + "\n" + key).splitlines()) <= MAX_WIDTH
    assert table.count("ws-fin-0142 c28460d9") == 2 and "ws-eng-0007 142b3441" in table
    assert "(no result)" in table  # samples whose results did not arrive still have their row
    first_column = "".join(line[:26].replace(" ", "") for line in table.splitlines()[2:])
    assert all(f"{d}({r})".replace(" ", "") in first_column for d, r in samples)
    assert "AlreadyPending" in key and "Succeeded" not in key


def test_the_ticket_comments_are_shown_whole_within_120_columns() -> None:
    text = (
        "mde-containment: release of ws-eng-0007.contoso.local (142b3441161eb63d57b41d1338407a04c781740d): "
        "Submitted, 2026-11-30 11:49 UTC.\nMDE action 4aef61b7-363e-45f9-b205-bc16d6a79222: Pending."
    )
    shown = render_comments({"SEC-1001": [{"text": text}], "SEC-1002": []})
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= MAX_WIDTH and len(lines) == 4
    assert lines[1].startswith("  SEC-1001  mde-containment: release of") and lines[3].startswith(
        " " * 12 + "MDE"
    )
    assert " ".join(shown.split()).endswith(" ".join(text.split()))  # wrapped, nothing cut


def test_the_held_back_sample_waits_for_a_request_the_demo_sends_earlier() -> None:
    ids = [s.request_id for s in SAMPLES]
    held = [(i, s.after) for i, s in enumerate(SAMPLES) if s.after]
    assert held and all(after in ids[:i] for i, after in held)
