"""Text views of structured results (cli.md §3). A command that returns `Data` names its view;
in the text formats the view renders the result's `source` (the engine's plan or report, or the
data itself), while JSON and YAML print the data. Every aligned table of the CLI is laid out by
`aligned`, so no command formats text itself.

To add an output for a command: return Data(data, "my-view", source) and register a function
`@view("my-view")` here that turns the source into text.
"""

from __future__ import annotations

from collections.abc import Callable

from vmctl.units import humanise_duration, humanise_size

VIEWS: dict[str, Callable[[object], str]] = {}


def view(name: str) -> Callable:
    def deco(fn: Callable[[object], str]) -> Callable[[object], str]:
        if name in VIEWS:
            raise ValueError(f"view {name} declared twice")
        VIEWS[name] = fn
        return fn

    return deco


def render(result) -> str:
    """A Data result in the text formats."""
    return VIEWS[result.view](result.value() if result.source is None else result.source)


def aligned(head: list[str], rows: list[list[str]], headings: bool = True) -> str:
    """Columns left-aligned to their widest cell, two spaces apart, trailing blanks trimmed."""
    widths = [len(h) if headings else 0 for h in head]
    for row in rows:
        for i, c in enumerate(row):
            if len(c) > widths[i]:
                widths[i] = len(c)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()] if headings else []
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(out) + ("\n" if out else "")


@view("lines")
def lines(source: list) -> str:
    """One value a line (a chosen host, new uuids, `vm host` pairs)."""
    return "".join(f"{x}\n" for x in source)


# --- plans: sizes with binary suffixes, times in ms/s (cli.md §3) -------------------------------------------
_SIZE_KEYS = {"memory", "bytes", "storage-bytes", "required-bandwidth", "throttle-to", "rate", "dirty-rate"}
_TIME_KEYS = {"total-time", "downtime", "downtime-target", "cold-downtime", "time", "makespan"}
_RATE_KEYS = {"required-bandwidth", "throttle-to", "rate", "dirty-rate"}


def plan_value(key: str, v) -> str:
    """A plan figure in the text formats, by its key."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if key in _SIZE_KEYS and isinstance(v, (int, float)):
        s = humanise_size(int(round(v)))
        return s + "/s" if key in _RATE_KEYS else s
    if key in _TIME_KEYS and isinstance(v, (int, float)):
        return humanise_duration(float(v))
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# --- placement (engine.md §2.4) ------------------------------------------------------------------------------
def _num(x) -> str:
    return "" if x is None else f"{x:.3f}"


@view("placement-report")
def placement_report(source) -> str:
    """(report, limit): one row per host (limit: the best few per verdict), then the footer."""
    report, limit = source
    rows, rest = report.limited(limit) if limit is not None else (report.rows, [])
    head = ["host", "verdict", "tier", "mem", "vcpu", "base", "skew", "group", "master", "score/reason"]
    lines = []
    for r in rows:
        t = r.terms or {}
        if r.verdict == "rejected":
            cells = [r.host, r.verdict, "", "", "", "", "", "", "", r.reason(humanise_size)]
        else:
            cells = [
                r.host,
                r.verdict,
                str(r.tier),
                _num(t.get("mem")),
                _num(t.get("vcpu")),
                _num(t.get("base")),
                _num(t.get("skew")),
                _num(t.get("group")),
                _num(t.get("master")),
                _num(r.score),
            ]
        lines.append(cells)
    out = aligned(head, lines)
    for key, n in rest:
        out += f"… {n} more host{'s' if n != 1 else ''}: {key}\n"
    return out + report.footer() + "\n"


@view("placement-reports")
def placement_reports(source: list) -> str:
    return "".join(placement_report(s) for s in source)


# --- migration (engine.md §4) --------------------------------------------------------------------------------
def migration_plan(plan: dict) -> str:
    """The dry-run text: the destination's uuid on the first line (as vm-start and vm-place print
    it), then one ``key: value`` line per prediction figure and hint."""
    from vmctl.engine.migration import HINT_FIELDS, PREDICTION_FIELDS

    lines = [plan["host"] or "-"]
    keys = [k for k in PREDICTION_FIELDS if k in plan]
    hints = plan.get("hints") or {}
    width = max([len(k) for k in keys] + [len(k) for k in hints] + [0])
    for k in keys:
        lines.append(f"{k.ljust(width)}  {plan_value(k, plan[k])}")
    for k in HINT_FIELDS:
        if k in hints:
            v = hints[k]
            lines.append(f"{k.ljust(width)}  {plan_value(k, v) if v is not None else 'none'}")
    return "\n".join(lines) + "\n"


@view("migration-plans")
def migration_plans(source) -> str:
    """(plans, explain reports): each VM's plan, after its placement report with --explain."""
    plans, reports = source
    out = []
    for p, rep in zip(plans, reports):
        t = migration_plan(p)
        if rep is not None:
            t = placement_report((rep, None)) + t
        if len(plans) > 1:
            t = f"vm {p['vm']}\n" + t
        out.append(t)
    return "".join(out)


@view("migration-results")
def migration_results(shown) -> str:
    """Moves made on a real pool (vmctl/moves.py): per VM its hosts, then the engine's prediction
    and libvirt's measurement side by side."""
    out = []
    for m in shown.moves:
        p, r = m["predicted"], m["measured"]
        head = [
            ["vm", f"{m['vm']} ({m['name-label']})" if m["name-label"] else m["vm"]],
            ["from", f"{m['from']} ({m['from-name']})"],
            ["to", f"{m['to']} ({m['to-name']})"],
        ]
        keys = [k for k in _SHOWN_FIGURES if k != "storage-bytes" or p.get(k) or r.get(k)]
        figures = [[k, plan_value(k, p.get(k)), plan_value(k, r.get(k))] for k in keys]
        figures = [[k, a or "-", b or "-"] for k, a, b in figures]
        width = max(len(k) for k in keys)
        lines = "".join(f"{k.ljust(width)}  {v}\n" for k, v in head)
        out.append(lines + aligned(["", "predicted", "measured"], figures))
    return "\n".join(out)


_SHOWN_FIGURES = ("total-time", "downtime", "bytes", "storage-bytes", "rounds", "rate")


@view("evacuation-plan")
def evacuation_plan(plan) -> str:
    """One row per move (wave, vm, name-label, to, memory, bytes, time, downtime), then the footer."""
    from vmctl.engine.evacuate import MOVE_FIELDS

    head = list(MOVE_FIELDS)
    rows = [
        [
            str(r["wave"]),
            r["vm"],
            r["name-label"],
            r["to"],
            plan_value("memory", r["memory"]),
            plan_value("bytes", r["bytes"]),
            plan_value("time", r["time"]),
            plan_value("downtime", r["downtime"]),
        ]
        for r in plan.rows()
    ]
    return (aligned(head, rows) if rows else "") + plan.footer() + "\n"


@view("evacuation-blockers")
def evacuation_blockers(rows: list[dict]) -> str:
    if not rows:
        return ""
    return aligned(
        ["uuid", "name-label", "reason"], [[r["uuid"], r["name-label"], r["reason"]] for r in rows]
    )


def _sigmas(d: dict) -> str:
    return ", ".join(f"{k} {d[k]:.4f}" for k in ("memory", "vcpu") if k in d)


@view("rebalance-plan")
def rebalance_plan(source) -> str:
    """(plan, host names): the ordered moves (step, vm, name-label, from, to, memory, gain, cost,
    σ after the step, time), then σ before and after per resource, moves, bytes, waves and
    makespan."""
    from vmctl.engine.rebalance import MOVE_FIELDS

    plan, names = source
    head = list(MOVE_FIELDS)
    rows = [
        [
            str(r["step"]),
            r["vm"],
            r["name-label"],
            r["from"],
            r["to"],
            plan_value("memory", r["memory"]),
            f"{r['gain']:.4f}",
            f"{r['cost']:.4f}",
            f"{r['sigma-memory']:.4f}",
            f"{r['sigma-vcpu']:.4f}",
            plan_value("time", r["time"]),
        ]
        for r in plan.rows()
    ]
    out = aligned(head, rows) if rows else ""
    n = len(plan.moves)
    out += (
        f"sigma before: {_sigmas(plan.sigma_before)}; after: {_sigmas(plan.sigma_after)}; "
        f"target {plan.target:.4f}\n"
        if plan.target != float("inf")
        else f"sigma before: {_sigmas(plan.sigma_before)}; after: {_sigmas(plan.sigma_after)}; mandatory moves only\n"
    )
    swaps = len({m.step for m in plan.moves if m.exchange})
    in_swaps = f" ({swaps} exchange step{'s' if swaps != 1 else ''})" if swaps else ""
    out += (
        f"{n} move{'s' if n != 1 else ''}{in_swaps}, {humanise_size(int(round(plan.bytes)))}, "
        f"{plan.waves} wave{'s' if plan.waves != 1 else ''}, makespan {humanise_duration(plan.makespan)}; "
        f"policy {plan.policy}, threshold {plan.threshold}; stopped: {plan.stop_reason}\n"
    )
    if plan.freed_hosts:
        out += "hosts freed: " + ", ".join(names.get(h, h) for h in plan.freed_hosts) + "\n"
    for vm, reason in plan.unresolved:
        out += f"unresolved: {names.get(vm, vm)}: {reason}\n"
    return out


# --- HA (engine.md §3) ---------------------------------------------------------------------------------------
@view("ha-failover-plan")
def ha_failover_plan(rows: list[dict]) -> str:
    return aligned(
        ["vm", "name-label", "ha-restart-priority", "target/error"],
        [
            [r["vm"], r["name-label"], r["ha-restart-priority"], r.get("target") or r.get("error") or ""]
            for r in rows
        ],
    )


@view("ha-restarts")
def ha_restarts(rows: list[dict]) -> str:
    """engine.md §3.5 report: vm, name-label, priority, result, then the host or the code."""
    if not rows:
        return ""
    return aligned(
        ["vm", "name-label", "priority", "result", "host/code"],
        [[x["vm"], x["name-label"], x["priority"], x["result"], x["host"] or x["code"] or ""] for x in rows],
    )


# --- storage -------------------------------------------------------------------------------------------------
@view("vm-copy-report")
def vm_copy_report(data: dict) -> str:
    """vm-clone/vm-copy --explain: the new uuid, then the bytes each disk copy moves."""
    lines = [data["uuid"]] + [
        f"# device {c['device']}: {c['source']} -> {c.get('target', '')} on SR {c['sr']}: "
        f"{c['bytes']} bytes ({c['provisioning']})"
        for c in data["copies"]
    ]
    lines.append(f"# bytes to copy: {data['bytes-to-copy']}")
    return "\n".join(lines) + "\n"


@view("vdi-copy-report")
def vdi_copy_report(data: dict) -> str:
    """vdi-copy/vdi-clone --explain: the new uuid, then the bytes each copy moves."""
    lines = (
        [data["uuid"]]
        + [
            f"# copy {c['source']} -> {c['target']}: {c['bytes']} bytes ({c['provisioning']})"
            for c in data["copies"]
        ]
        + [f"# bytes to copy: {data['bytes-to-copy']}"]
    )
    return "\n".join(lines) + "\n"


@view("vm-disks")
def vm_disks(rows: list[dict]) -> str:
    """vm-disk-list: each VBD, then its VDI (or `empty`)."""
    lines = []
    for row in rows:
        lines.append(
            f"VBD {row['vbd']}: device {row['device']} {row['type']} {row['mode']}"
            f"{' attached' if row['currently-attached'] else ''}"
        )
        if row["vdi"]:
            lines.append(
                f"    VDI {row['vdi']} ({row['name-label']}) on SR {row['sr']}: virtual-size "
                f"{row['virtual-size']}, physical-utilisation {row['physical-utilisation']}, "
                f"{row['provisioning']}"
            )
        else:
            lines.append("    empty")
    return "".join(line + "\n" for line in lines)
