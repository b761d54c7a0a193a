"""The ``vm-place`` / ``--explain`` report of engine.md §2.4, as plain data.

:func:`explain` returns an :class:`ExplainReport`: one :class:`ExplainRow` per host (chosen, ok and
not-evaluated by rank, then rejected by filter number and name), the footer text, the JSON shape of
§2.4 and the ``limit=K`` cut. Rendering (table, sizes with binary suffixes) is the CLI's job; the
report keeps raw numbers and offers :func:`reason_text` with a default size formatter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import vmctl.engine.placement.filters as F
import vmctl.engine.placement.weighers as W
from vmctl.engine.placement.scheduler import ROUND, Scheduler
from vmctl.engine.snapshot import PoolState
from vmctl.errors import Ref

SIZE_PARAMS = {("HOST_NOT_ENOUGH_FREE_MEMORY", "needed"), ("HOST_NOT_ENOUGH_FREE_MEMORY", "available")}


def fmt_size(n: int) -> str:
    """Binary-suffixed size as ``-f table`` prints it: ``16 GiB``, ``9.5 GiB``."""
    for unit, k in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= k:
            v = n / k
            return f"{v:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} B"


def _param_text(v: Any) -> str:
    if isinstance(v, Ref):
        return v.name or v.uuid
    return str(v)


def reason_text(code: str, params: list[tuple[str, Any]], size: Callable[[int], str] = fmt_size) -> str:
    """``HOST_NOT_ENOUGH_FREE_MEMORY needed=16 GiB available=9.5 GiB``. Object refs (the host the
    row already names, the VM being placed) are left out except SRs, networks and groups."""
    parts = [code]
    for k, v in params:
        if k in ("host", "vm"):
            continue
        parts.append(f"{k}={size(v) if (code, k) in SIZE_PARAMS else _param_text(v)}")
    return " ".join(parts)


@dataclass(slots=True)
class ExplainRow:
    """One host. verdict: ``chosen`` | ``ok`` | ``not-evaluated`` | ``rejected``; ``filter`` is the
    rejecting filter's number (1–11) and ``code``/``params`` its reason; ``terms`` holds mem, vcpu
    (u'), base, skew, group, master (None for rejected hosts); ``rank`` is 1-based among hosts
    passing filters 1–10. In JSON ``filter`` is the filter number (names: ``FILTER_NAMES``)."""

    host: str
    host_uuid: str
    verdict: str
    tier: int | None = None
    terms: dict[str, float] | None = None
    score: float | None = None
    rank: int | None = None
    filter: int | None = None
    code: str | None = None
    params: list[tuple[str, Any]] = field(default_factory=list)

    def reason(self, size: Callable[[int], str] = fmt_size) -> str:
        return reason_text(self.code, self.params, size) if self.code else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "host-uuid": self.host_uuid,
            "verdict": self.verdict,
            "filter": self.filter,
            "code": self.code,
            "params": {k: (v.uuid if isinstance(v, Ref) else v) for k, v in self.params}
            if self.code
            else None,
            "tier": self.tier,
            "terms": self.terms,
            "score": self.score,
            "rank": self.rank,
        }


@dataclass(slots=True)
class ExplainReport:
    """The whole report. ``chosen`` is a host uuid or None when nothing fits."""

    vm: str
    vm_name: str
    policy: str
    seed: int
    chosen: str | None
    decided_by: str | None
    margin: float | None
    runner_up: str | None
    feasible: int
    examined: int
    rows: list[ExplainRow]

    def _name(self, uuid: str | None) -> str:
        for r in self.rows:
            if r.host_uuid == uuid:
                return r.host
        return uuid or ""

    def footer(self) -> str:
        """``chosen h07 by score, margin 0.024 over h02; policy balanced; seed 0; 41 of 48 hosts
        feasible``."""
        tail = f"policy {self.policy}; seed {self.seed}; {self.feasible} of {self.examined} hosts feasible"
        if self.chosen is None:
            return f"no host chosen; {tail}"
        head = f"chosen {self._name(self.chosen)} by {self.decided_by}"
        if self.runner_up is not None:
            if self.decided_by == "affinity":
                head += f" (preferred host) over {self._name(self.runner_up)}"
            elif self.decided_by == "tier":
                win = next(r for r in self.rows if r.host_uuid == self.chosen)
                run = next(r for r in self.rows if r.host_uuid == self.runner_up)
                head += f", tier {win.tier} over tier {run.tier} ({self._name(self.runner_up)})"
            else:
                head += f", margin {self.margin:.3f} over {self._name(self.runner_up)}"
        return f"{head}; {tail}"

    def limited(self, k: int) -> tuple[list[ExplainRow], list[tuple[str, int]]]:
        """``limit=K``: the first K rows, then (verdict or code, count) for the rest, in order."""
        kept = self.rows[:k]
        counts: dict[str, int] = {}
        for r in self.rows[k:]:
            key = r.code if r.verdict == "rejected" and r.code else r.verdict
            counts[key] = counts.get(key, 0) + 1
        return kept, list(counts.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "policy": self.policy,
            "seed": self.seed,
            "chosen": self.chosen,
            "decided-by": self.decided_by,
            "margin": self.margin,
            "runner-up": self.runner_up,
            "hosts": [r.to_json() for r in self.rows],
        }


def explain(
    pool: PoolState,
    vm: str,
    *,
    policy: str | None = None,
    seed: int | None = None,
    mode: str | None = None,
    force: bool = False,
    vdi_map: dict[str, str] | None = None,
    ha: bool = True,
    exclude: tuple[str, ...] | None = None,
) -> ExplainReport:
    """Evaluate every host for ``vm`` and explain the decision (read-only on ``pool``)."""
    s = Scheduler(pool, policy, seed)
    t = s.table
    v = pool.vms[vm]
    req = s.request(v, mode, force, vdi_map)
    if exclude is None:
        exclude = (v.resident_on,) if req.mode == F.MIGRATE and v.resident_on else ()
    excl = set(exclude)
    fail = s.first_failures(req)
    ok = s.feasible_mask(req, exclude)
    n_ok = int(ok.sum())
    terms = W.score_terms(t, req, s.policy, n_ok, full=True)
    # Rank on the very scores the decision path computes (its fused arithmetic may differ from the
    # term-by-term sum in the last bit), so the report always names the host a command would pick.
    terms.score = W.score_terms(t, req, s.policy, n_ok).score
    order = s.ranked(req, ok, terms)
    rank_of = {i: r + 1 for r, i in enumerate(order)}

    # Filter 11 lazily in rank order: hosts above the winner that fail it are rejected, the
    # winner is chosen, the next passing host is the runner-up, the rest are not evaluated.
    check_ha = s.ha_active(ha)
    ha_fail: dict[int, tuple[str, list]] = {}
    chosen = runner = None
    for i in order:
        if check_ha:
            rej = s.ha_rejection(req, t.uuids[i])
            if rej is not None:
                ha_fail[i] = (rej[1], rej[2])
                continue
        if chosen is None:
            chosen = i
        else:
            runner = i
            break

    def terms_of(i: int) -> dict[str, float]:
        return {name: round(float(getattr(terms, name)[i]), ROUND) for name in W.TERM_NAMES}

    ranked_rows: list[ExplainRow] = []
    rejected: list[tuple[int, str, str, ExplainRow]] = []
    for i in order:
        h = t.hosts[i]
        row = ExplainRow(
            host=h.name or h.uuid,
            host_uuid=h.uuid,
            verdict="ok",
            tier=int(terms.tier[i]),
            terms=terms_of(i),
            score=round(float(terms.score[i]), ROUND),
            rank=rank_of[i],
        )
        if i in ha_fail:
            row.verdict, row.filter = "rejected", F.HA_FILTER_INDEX
            row.code, row.params = ha_fail[i]
            rejected.append((F.HA_FILTER_INDEX, row.host, h.uuid, row))
            continue
        if i == chosen:
            row.verdict = "chosen"
        elif check_ha and i != runner and (chosen is None or rank_of[i] > rank_of[chosen]):
            row.verdict = "not-evaluated"
        ranked_rows.append(row)
    for i in range(t.n):
        fi = int(fail[i])
        if fi == 0 or t.uuids[i] in excl:
            continue
        h = t.hosts[i]
        code, params = F.BY_INDEX[fi].reason(t, req, i)
        rejected.append(
            (
                fi,
                h.name or h.uuid,
                h.uuid,
                ExplainRow(
                    host=h.name or h.uuid,
                    host_uuid=h.uuid,
                    verdict="rejected",
                    filter=fi,
                    code=code,
                    params=params,
                ),
            )
        )
    rejected.sort(key=lambda x: (x[0], x[1], x[2]))
    rows = ranked_rows + [r for *_, r in rejected]

    decided = margin = runner_uuid = None
    if chosen is not None:
        if runner is not None:
            decided = s.decided_by(s.rank_key(req, terms, chosen), s.rank_key(req, terms, runner))
            margin = round(
                round(float(terms.score[chosen]), ROUND) - round(float(terms.score[runner]), ROUND), ROUND
            )
            runner_uuid = t.uuids[runner]
        else:
            decided = "only-host"
    examined = t.n - len(excl & set(t.index))
    return ExplainReport(
        vm=v.uuid,
        vm_name=v.name or v.uuid,
        policy=s.policy,
        seed=s.seed,
        chosen=t.uuids[chosen] if chosen is not None else None,
        decided_by=decided,
        margin=margin,
        runner_up=runner_uuid,
        feasible=n_ok,
        examined=examined,
        rows=rows,
    )
