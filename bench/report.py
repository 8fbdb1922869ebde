"""The report: the verdicts against the targets, and the one table ``render`` makes of a run's
figures (header, the storm, mixed, overhead and cold-start sections, the targets line, notes)."""

from __future__ import annotations

import json
import math
from typing import Any, get_args

from shared.ports import ApiGroup

from .config import (
    FUNCTION_MODULES,
    MINUTE,
    RATE_PER_HOUR,
    RATE_PER_MINUTE,
    TARGETS,
    TRACKING_SCHEDULE,
    Config,
)
from .trails import STORAGE_PREFIXES
from .workload import SHAPES

Phase = dict[str, Any]  # one phase's figures, as ``analysis.analyse`` returns them
_HEADERS = ("figure", "ours", "naive", "ours/naive", "target", "")
_ATTEMPTS = "highest attempt of a request (limit: 20 / 4)"
API_GROUPS = get_args(ApiGroup)  # in the order the rows show them


def verdicts(report: dict[str, Any]) -> dict[str, bool | None]:
    """Each target of the parts that ran: met, missed, or None when not measured (cold start in a
    quick run)."""
    v: dict[str, bool | None] = {}
    if "storm" in report:
        v |= _storm_verdicts(report["storm"], report["mixed"])
    if "quiet" in report:
        v |= _quiet_verdicts(report["quiet"])
    if "scale" in report:
        v |= _scale_verdicts(report["scale"])
    if "overhead" in report:
        cold = report.get("cold")
        v["overhead"] = report["overhead"]["p50_ms"] < TARGETS["overhead_p50_ms"]
        v["cold"] = (
            None if not cold else max(cold[f"{m}_ratio"] for m in FUNCTION_MODULES) <= TARGETS["cold_ratio"]
        )
    return v


def _storm_verdicts(storm: Phase, mixed: Phase) -> dict[str, bool | None]:
    lost_ok = all(_nothing_lost(p) for p in (storm, mixed))
    return {
        "writes": max(
            storm["isolate_writes_per_device"],
            mixed["isolate_writes_per_device"],
            mixed["unisolate_writes_per_device"] or 0,
        )
        <= TARGETS["writes_per_device"],
        "drain": storm["drain_ratio"] is not None and storm["drain_ratio"] <= TARGETS["drain_ratio"],
        "mixed_drain": mixed["drain_ratio"] is not None and mixed["drain_ratio"] <= TARGETS["drain_ratio"],
        "releases": mixed["releases_submitted"] == mixed["release_devices"],
        "lost": lost_ok,
        "tokens": storm["tokens_per_process"] <= 1 and mixed["tokens_per_process"] <= 1,
    }


def _nothing_lost(phase: Phase) -> bool:
    """Every expected result exactly once: none lost, none twice, none unexpected."""
    return bool(phase["lost"] == 0 and phase["duplicates"] + phase["unexpected"] == 0)


def _hosts(label: str) -> int:
    """``"mixed x4"`` -> 4: the host processes of a scale-out run."""
    return int(label.rsplit("x", 1)[1])


def _widest(scale: dict[str, Phase]) -> set[str]:
    """The labels of the runs with the most host processes: the ones the targets are for."""
    most = max((_hosts(label) for label in scale), default=0)
    return {label for label in scale if _hosts(label) == most}


def _scaled_drain_ok(phase: Phase) -> bool:
    return phase["drain_ratio"] is not None and bool(phase["drain_ratio"] <= TARGETS["scaled_drain_ratio"])


def _scaled_429_ok(phase: Phase) -> bool:
    return bool(phase["throttled_share"] <= TARGETS["scaled_throttled_share"])


def _scale_verdicts(scale: dict[str, Phase]) -> dict[str, bool | None]:
    """The runs with the most host processes: drain and 429 share (the 4-instance targets)."""
    widest = [scale[label] for label in _widest(scale)]
    return {
        "scaled_drain": all(_scaled_drain_ok(p) for p in widest),
        "scaled_429": all(_scaled_429_ok(p) for p in widest),
        "scaled_lost": all(_nothing_lost(p) for p in scale.values()),
    }


def _quiet_verdicts(quiet: Phase) -> dict[str, bool | None]:
    spread = quiet["to_post"]
    return {
        "contain_p50": None if spread is None else spread["p50"] <= TARGETS["contain_p50_s"],
        "contain_p99": None if spread is None else spread["p99"] <= TARGETS["contain_p99_s"],
        "quiet_results": quiet["missing"] == 0 and quiet["duplicates"] == 0 and quiet["poison"] == 0,
    }


def render(report: dict[str, Any]) -> str:
    """The whole report as text: what ``python -m bench.storm`` prints."""
    v = verdicts(report)
    table = Table()
    if "storm" in report:
        _storm_section(table, report["storm"], report["naive"], v)
        _mixed_section(table, report["mixed"], report["storm"], report["naive"], v)
    if "scale" in report:
        _scale_section(table, report["scale"])
    if "quiet" in report:
        quiet_sections(table, report["quiet"], v)
    if "overhead" in report:
        _overhead_section(table, report["overhead"], v)
        _cold_section(table, report.get("cold"))
    notes = [f"note: {note}" for note in _notes(report)]
    return "\n".join([*_header(report), *table.lines(), _targets_line(v), *notes])


class Table:
    """Rows of six columns (figure, ours, naive, ours/naive, target, verdict) under section titles."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def row(
        self, name: str, ours: Any, base: Any = None, ratio: str | None = None, target: str = "", ok: str = ""
    ) -> None:
        """A figure; numbers are formatted, and the ratio is ours/base unless given."""
        shown_ours = ours if isinstance(ours, str) else _f(ours)
        shown_base = base if isinstance(base, str) else _f(base)
        self.rows.append(
            (name, shown_ours, shown_base, _ratio(ours, base) if ratio is None else ratio, target, ok)
        )

    def section(self, title: str) -> None:
        self.rows.append((title,))

    def lines(self) -> list[str]:
        """The table laid out: a blank line, the headers, each section after a rule, a closing rule."""
        figures = [r for r in self.rows if len(r) > 1]
        widths = [max(len(r[i]) for r in [*figures, _HEADERS]) for i in range(len(_HEADERS))]
        fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
        rule = "-" * (sum(widths) + 10)
        lines = ["", fmt.format(*_HEADERS).rstrip()]
        for r in self.rows:
            lines += [rule, r[0]] if len(r) == 1 else [fmt.format(*r).rstrip()]
        return [*lines, rule]


# --- header and footer ----------------------------------------------------------------------------


def _header(report: dict[str, Any]) -> list[str]:
    cfg: Config = report["config"]
    ts = cfg.time_scale
    policy = json.dumps(report["policy"])
    wall = f"{report['wall_s']:.0f} s wall clock"
    lines = [
        f"mde-containment storm benchmark ({cfg.name}), {report['when']}, {wall}",
        f"machine: {report['machine']}",
        f"pipeline settings: ISOLATION_POLICY={policy} TRACKING_SCHEDULE={TRACKING_SCHEDULE}",
        f"MDE simulator: real limits {RATE_PER_MINUTE}/min and {RATE_PER_HOUR}/h per API group; time_scale "
        f"{ts:g} (1 simulated min = {MINUTE / ts:.0f} s real); every storm time below is simulated seconds",
    ]
    if "storm" in report:
        storm, mixed = report["storm"], report["mixed"]
        lines.append(
            f"storm: {storm['alert_messages']:,} alerts = {storm['alert_devices']:,} alert-devices over "
            f"{storm['storm_devices']} devices within {cfg.window_s:.0f} s (device k first alerts at "
            f"k x {cfg.window_s / cfg.devices:.1f} s), {len(SHAPES)} shapes; mixed: + "
            f"{mixed['release_devices']} release tickets for other devices; naive: the mixed workload, "
            "one POST per alert-device"
        )
    return lines


def _targets_line(v: dict[str, bool | None]) -> str:
    summary = [
        ("writes/device <= 1.02", "writes"),
        ("storm drain <= 1.1 x bound", "drain"),
        ("mixed drain <= 1.1 x bound", "mixed_drain"),
        ("releases all submitted", "releases"),
        ("zero lost", "lost"),
        ("1 token/process", "tokens"),
        (f"quiet alert -> POST p50 <= {TARGETS['contain_p50_s']} s", "contain_p50"),
        (f"p99 <= {TARGETS['contain_p99_s']} s", "contain_p99"),
        ("quiet results all once", "quiet_results"),
        (f"most hosts: drain <= {TARGETS['scaled_drain_ratio']} x bound", "scaled_drain"),
        (f"429s <= {TARGETS['scaled_throttled_share']:.0%} of calls", "scaled_429"),
        ("scaled-out zero lost", "scaled_lost"),
        ("overhead p50 < 2 ms", "overhead"),
        ("cold import <= 1.2 x deps", "cold"),
    ]
    return "TARGETS: " + ", ".join(f"{name} {_verdict(v[key])}" for name, key in summary if key in v)


def _notes(report: dict[str, Any]) -> list[str]:
    """When the timing includes the local stack's own capacity, and when the tail was sped up."""
    cfg: Config = report["config"]
    ts = cfg.time_scale
    notes = []
    for phase in [report[p] for p in ("storm", "mixed") if p in report]:
        lag, bound = phase["onset_lag_max_s"], phase["bound_s"]
        if lag is not None and bound and lag > 0.1 * bound:
            notes.append(
                f"{phase['label']}: the local stack ran up to {lag:.0f} s behind on a device's first alert "
                f"(> 10% of the bound): its timing includes the stack's own capacity at time_scale {ts:g}"
            )
        if phase["tail"] and cfg.tail_time_scale > ts:
            notes.append(
                f"{phase['label']}: results still due after the measured window were collected with the "
                f"simulator at time_scale {cfg.tail_time_scale:g} (their 429s are listed as tail)"
            )
    return notes


# --- sections -------------------------------------------------------------------------------------


def _storm_section(table: Table, storm: Phase, naive: Phase, v: dict[str, bool | None]) -> None:
    table.section(f"STORM: {storm['alert_messages']:,} alerts, {storm['storm_devices']} devices")
    table.row(
        "MDE write calls per distinct device",
        storm["isolate_writes_per_device"],
        naive["isolate_writes_per_device"],
        target=f"<= {TARGETS['writes_per_device']}",
        ok=_verdict(v["writes"]),
    )
    _api_rows(table, storm, naive)
    drain, ratio = _drain(storm)
    naive_drain, naive_ratio = _drain(naive, naive=True)
    table.row(
        "time until every device isolated (s)", drain, naive_drain, _ratio(storm["drain_s"], naive["drain_s"])
    )
    table.row("  rate-limit lower bound (s)", storm["bound_s"], naive["bound_s"], "")
    table.row("  drain / bound", ratio, naive_ratio, "", f"<= {TARGETS['drain_ratio']}", _verdict(v["drain"]))
    _lag_row(table, storm)
    naive_expected = f"{naive['expected_results'] - naive['release_devices']:,} / -"
    _first_result_rows(table, storm, naive_expected, _outcomes(naive, "alert"))
    table.row(
        "requests lost (no result, gave up, poison)",
        storm["lost"],
        naive["lost_alerts"],
        "",
        "0",
        _verdict(v["lost"]),
    )
    _token_row(table, storm, v)
    table.row("tracking reads (GET machineactions/{id})", storm["tracking_reads"], 0, "")
    _host_rows(table, storm, naive)


def _mixed_section(table: Table, mixed: Phase, storm: Phase, naive: Phase, v: dict[str, bool | None]) -> None:
    table.section(f"MIXED: the storm + {mixed['release_devices']} release tickets")
    drain, ratio = _drain(mixed)
    naive_drain, naive_ratio = _drain(naive, naive=True)
    table.row(
        "containment: every device isolated (s)",
        drain,
        naive_drain,
        _ratio(mixed["drain_s"], naive["drain_s"]),
    )
    table.row(
        "  drain / bound", ratio, naive_ratio, "", f"<= {TARGETS['drain_ratio']}", _verdict(v["mixed_drain"])
    )
    delay = mixed["drain_s"] - storm["drain_s"] if mixed["drain_s"] and storm["drain_s"] else None
    table.row("  delay vs the storm alone (s)", delay, None, "", "~0")
    _release_rows(table, mixed, naive, v)
    table.row(
        "write calls per device: isolate / unisolate",
        f"{_f(mixed['isolate_writes_per_device'])} / {_f(mixed['unisolate_writes_per_device'])}",
        f"{_f(naive['isolate_writes_per_device'])} / {_f(naive['unisolate_writes_per_device'])}",
        "",
        f"<= {TARGETS['writes_per_device']}",
        _verdict(v["writes"]),
    )
    _api_rows(table, mixed, naive)
    _lag_row(table, mixed)
    _first_result_rows(table, mixed, f"{naive['expected_results']:,} / -", _outcomes(naive))
    table.row("requests lost", mixed["lost"], naive["lost"], "", "0", _verdict(v["lost"]))
    _token_row(table, mixed, v)
    _host_rows(table, mixed, naive)


def _release_rows(table: Table, mixed: Phase, naive: Phase, v: dict[str, bool | None]) -> None:
    table.row(
        "releases: unisolate submitted",
        f"{mixed['releases_submitted']}/{mixed['release_devices']}",
        f"{naive['releases_submitted']}/{naive['release_devices']}",
        "",
        "all",
        _verdict(v["releases"]),
    )
    table.row(
        "  wait after the ticket p50 / max (s)",
        f"{_f(mixed['release_wait_p50_s'], 1)} / {_f(mixed['release_wait_max_s'], 1)}",
        f"{_f(naive['release_wait_p50_s'], 1)} / {_f(naive['release_wait_max_s'], 1)}",
        "",
    )
    table.row(
        "  last release submitted / its bound (s)",
        f"{_f(mixed['release_drain_s'], 1)} / {_f(mixed['release_bound_s'], 1)}",
        f"{_f(naive['release_drain_s'], 1)} / {_f(naive['release_bound_s'], 1)}",
        "",
    )
    table.row("  release results with deviceOnline unknown", mixed["release_state_unknown"], "-", "")


def _overhead_section(table: Table, overhead: dict[str, Any], v: dict[str, bool | None]) -> None:
    table.section(f"PER-MESSAGE OVERHEAD: CPU in our code, no I/O ({overhead['samples']:,} messages)")
    table.row(
        "p50 per message (ms)",
        overhead["p50_ms"],
        None,
        "",
        f"< {TARGETS['overhead_p50_ms']}",
        _verdict(v["overhead"]),
    )
    table.row("p99 per message (ms)", overhead["p99_ms"], None, "")
    table.row(
        "mean per message / per alert-device (ms)",
        f"{overhead['mean_ms']:.3f} / {overhead['per_request_ms']:.3f}",
        None,
        "",
    )
    table.row("first message of a process (ms)", overhead["first_ms"], None, "")


def _cold_section(table: Table, cold: dict[str, Any] | None) -> None:
    if not cold:
        table.section("COLD START: skipped (--quick)")
        return
    table.section(
        f"COLD START: import in a fresh interpreter, {cold['runs']} rounds; ms CPU / wall (medians), "
        "ratio = median of per-round ratios"
    )
    deps = f"{cold['deps_cpu_ms']:.0f} / {cold['deps_ms']:.0f}"
    table.row("third-party dependencies alone", deps, None, "")
    for m in FUNCTION_MODULES:
        table.row(
            f"{m}; CPU ratio to the dependencies (wall)",
            f"{cold[f'{m}_cpu_ms']:.0f} / {cold[f'{m}_ms']:.0f}",
            deps,
            f"{cold[f'{m}_ratio']:.3f} ({cold[f'{m}_wall_ratio']:.2f})",
            f"<= {TARGETS['cold_ratio']}",
            _verdict(cold[f"{m}_ratio"] <= TARGETS["cold_ratio"]),
        )
        table.row("  of which our own modules (self, -X importtime)", cold[f"{m}_own_ms"], None, "")


# --- several host processes, and the burst ---------------------------------------------------------


def _scale_section(table: Table, scale: dict[str, Phase]) -> None:
    """One row per run: the storm and mixed phases with 2 and 4 host processes, the burst with 1-4."""
    table.section(
        "SCALE-OUT: the same queues served by n host processes (each with its own MDE call budget); "
        "drain / bound; 429s (share of MDE calls); lost; tokens per process"
    )
    widest = _widest(scale)
    target = f"<= {TARGETS['scaled_drain_ratio']}; <= {TARGETS['scaled_throttled_share']:.0%}; 0"
    for label, phase in scale.items():
        kind, processes = label.rsplit(" x", 1)
        ratio = phase["drain_ratio"]
        drain = _drain(phase)[1] if ratio is None else f"{ratio:.2f}"
        throttled = sum(phase["throttled"].values())
        met = _scaled_drain_ok(phase) and _scaled_429_ok(phase) and phase["lost"] == 0
        table.row(
            f"  {kind}, {processes} host process{'es' if processes != '1' else ''} "
            f"({phase['storm_devices']} devices, bound {phase['bound_s']:.1f} s)",
            f"{drain}; {throttled:,} ({100 * phase['throttled_share']:.1f}%); {phase['lost']}; "
            f"{phase['tokens_per_process']:.2f}",
            target=target if label in widest else "",
            ok=_verdict(met) if label in widest else "",
        )
        if phase.get("storage_per_device") is not None:
            table.row(
                "    storage transactions per device, polls included; throttle notices read / written",
                f"{phase['storage_per_device']:.1f}; {phase['notice_reads']} / {phase['notice_writes']}",
            )


# --- the quiet system -----------------------------------------------------------------------------


def quiet_sections(table: Table, quiet: Phase, v: dict[str, bool | None]) -> None:
    """Time to contain on a quiet system, its steps, the cost per request and the polling trade-off."""
    table.section(
        f"QUIET SYSTEM: {quiet['alerts']} single alerts, one device each, idle between; maxPollingInterval "
        f"{_f(quiet['cap_s'], 1)} s; REAL seconds"
    )
    post = quiet["to_post"]
    table.row("alert -> MDE POST received, p50 / p95 / p99 / max (s)", _spread(post))
    for key in ("p50", "p99"):
        target = TARGETS[f"contain_{key}_s"]
        table.row(f"  {key} (s)", _pick(post, key), None, "", f"<= {target}", _verdict(v[f"contain_{key}"]))
    table.row("  of which waiting for the poll, p50 / p95 / p99 / max (s)", _spread(quiet["queue_wait"]))
    table.row("  of which poll start -> POST, p50 / p95 / p99 / max (s)", _spread(quiet["after_poll"]))
    table.row("alert -> Submitted result written, p50 / p95 / p99 / max (s)", _spread(quiet["to_submitted"]))
    table.row(
        "alert -> final result written (first check 1 s after), p50 / p99 (s)",
        f"{_f(_pick(quiet['to_final'], 'p50'))} / {_f(_pick(quiet['to_final'], 'p99'))}",
    )
    table.row(
        "first / final results; missing / twice / poison",
        f"{quiet['first_results']} / {quiet['final_results']}; {quiet['missing']} / {quiet['duplicates']} / "
        f"{quiet['poison']}",
        target="all once",
        ok=_verdict(v["quiet_results"]),
    )
    outcomes = " ".join(f"{k}:{n}" for k, n in sorted(quiet["outcomes"].items()))
    table.row("  outcomes (sequence:outcome)", outcomes)
    table.row("token requests (the whole phase, one process)", quiet["token_requests"])
    _quiet_steps(table, quiet)
    _quiet_costs(table, quiet)
    _quiet_tradeoff(table, quiet)


def _quiet_steps(table: Table, quiet: Phase) -> None:
    stages = quiet["stages"]
    table.section(
        f"QUIET SYSTEM, one request step by step: p50 / p99 (ms) over the {stages.get('requests', 0)} of "
        f"{stages.get('of', 0)} requests on the common path (the process's first also fetches its token)"
    )
    for n, step in enumerate(stages["steps"], start=1):
        table.row(f"  {n:2d}. {step['name']}", f"{step['p50_ms']:.1f} / {step['p99_ms']:.1f}")


def _quiet_costs(table: Table, quiet: Phase) -> None:
    table.section(
        "COST PER CONTAINED DEVICE: calls per request, mean; first result (dequeue -> Submitted) / "
        f"tracking check (-> final result; {_f(quiet['checks_per_request'])} per request here)"
    )
    first, check = quiet["cost_first"], quiet["cost_check"]
    storage_first = _pick(quiet["storage_per_request"], "mean")
    storage_check = _pick(quiet["storage_per_check"], "mean")
    total = (storage_first or 0) + (storage_check or 0) * quiet["checks_per_request"]
    shown = f"{_f(storage_first)} / {_f(storage_check)}; total {_f(total)}"
    table.row("storage transactions (queue + table)", shown)
    names = sorted(set(first) | set(check))
    for name in (n for n in names if n.startswith(STORAGE_PREFIXES)):
        table.row(f"  {name}", f"{_f(first.get(name, 0.0))} / {_f(check.get(name, 0.0))}")
    mde_first, mde_check = _pick(quiet["mde_per_request"], "mean"), _pick(quiet["mde_per_check"], "mean")
    table.row("MDE API calls (and token requests)", f"{_f(mde_first)} / {_f(mde_check)}")
    for name in (n for n in names if not n.startswith(STORAGE_PREFIXES)):
        table.row(f"  {name}", f"{_f(first.get(name, 0.0))} / {_f(check.get(name, 0.0))}")


def _quiet_tradeoff(table: Table, quiet: Phase) -> None:
    table.section(
        "maxPollingInterval TRADE-OFF: Get Messages per idle queue of a running instance; latency = a "
        "uniform wait for the next poll + this phase's poll start -> POST"
    )
    for row in quiet["tradeoff"]:
        polls = row["polls_per_day"]
        table.row(
            f"  {_f(row['cap_s'], 1)} s{' (measured here)' if row['measured'] else ''}: idle polls per day "
            "(per 30 days); alert -> POST p50 / p99 (s)",
            f"{polls:,.0f} ({polls * 30 / 1e6:.2f} M); {row['p50_s']:.2f} / {row['p99_s']:.2f}",
        )
    table.row(
        "  measured: poll cycle at the cap / an empty Get Messages (s)",
        f"{_f(quiet['idle_cycle_s'], 3)} / {_f(quiet['idle_poll_s'], 4)}",
    )


def _spread(spread: dict[str, float] | None) -> str:
    if spread is None:
        return "-"
    return " / ".join(f"{spread[k]:.3f}" for k in ("p50", "p95", "p99", "max"))


def _pick(spread: dict[str, float] | None, key: str) -> float | None:
    return None if spread is None else spread[key]


# --- rows both pipeline sections print ------------------------------------------------------------


def _api_rows(table: Table, phase: Phase, naive: Phase) -> None:
    table.row("API calls admitted, all groups", sum(phase["calls"].values()), sum(naive["calls"].values()))
    for api in _apis(phase, naive):
        table.row(
            f"  {api}: admitted / 429",
            _admitted_throttled(phase, api),
            _admitted_throttled(naive, api),
            "",
        )
    table.row(
        "429s received (measured window)",
        _throttled_total(phase),
        _throttled_total(naive),
        _ratio(sum(phase["window_throttled"].values()), sum(naive["window_throttled"].values())),
    )


def _lag_row(table: Table, phase: Phase) -> None:
    table.row(
        "  stack lag p50 / max; first alerts max (s)",
        f"{_f(phase['lag_p50_s'], 1)} / {_f(phase['lag_max_s'], 1)}; {_f(phase['onset_lag_max_s'], 1)}",
        "-",
        "",
    )


def _first_result_rows(table: Table, phase: Phase, naive_expected: str, naive_outcomes: str) -> None:
    table.row(
        "first results: expected / written",
        f"{phase['expected_results']:,} / {phase['written_results']:,}",
        naive_expected,
        "",
    )
    table.row(
        "  missing / extra", f"{phase['missing']} / {phase['duplicates'] + phase['unexpected']}", "-", ""
    )
    table.row("  outcomes", _outcomes(phase), naive_outcomes, "")


def _token_row(table: Table, phase: Phase, v: dict[str, bool | None]) -> None:
    table.row(
        "token requests per process", phase["tokens_per_process"], 1.0, target="1", ok=_verdict(v["tokens"])
    )


def _host_rows(table: Table, phase: Phase, naive: Phase) -> None:
    table.row(
        "host invocations / redeliveries / 429 re-enqueues",
        f"{phase['invocations']:,} / {phase['redeliveries']:,} / {phase['throttled_reenqueues']:,}",
        "-",
        "",
    )
    table.row(_ATTEMPTS, phase["max_attempt"], naive["max_attempt"], "")
    table.row("phase wall clock (s real)", phase["real_s"], naive["real_s"])


# --- formatting -----------------------------------------------------------------------------------


def _f(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def _ratio(ours: Any, base: Any) -> str:
    if not isinstance(ours, int | float) or not isinstance(base, int | float) or not base:
        return "-"
    return f"{ours / base:.3f}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def _apis(*phases: Phase) -> list[str]:
    seen = set().union(*(set(p["calls"]) | set(p["throttled"]) for p in phases))
    return [a for a in API_GROUPS if a in seen] + sorted(seen - set(API_GROUPS))


def _admitted_throttled(phase: Phase, api: str) -> str:
    return f"{phase['calls'].get(api, 0):,} / {phase['throttled'].get(api, 0):,}"


def _drain(phase: Phase, naive: bool = False) -> tuple[str, str]:
    """(time until every device isolated, its ratio to the bound) as shown."""
    if phase["drain_s"] is not None:
        return _f(phase["drain_s"], 1), _f(phase["drain_ratio"])
    shown = f"{phase['devices_isolated']}/{phase['storm_devices']}"
    if naive or phase["cutoff_s"] is None:
        return f"never ({shown})", "never"
    return f"> {phase['cutoff_s']:.0f} ({shown} by then)", f"> {phase['cutoff_s'] / phase['bound_s']:.2f}"


def _throttled_total(phase: Phase) -> str:
    window = sum(phase["window_throttled"].values())
    total = sum(phase["throttled"].values())
    return f"{window:,}" + (f" (+{total - window:,} tail)" if total != window else "")


def _outcomes(phase: Phase, kind: str | None = None) -> str:
    counts = phase["outcomes_alert"] if kind == "alert" and "outcomes_alert" in phase else phase["outcomes"]
    return " ".join(f"{k}:{n:,}" for k, n in sorted(counts.items())) or "-"
