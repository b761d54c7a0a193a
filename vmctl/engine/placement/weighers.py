"""Weighers and policies of engine.md §2.2, vectorised over all hosts of a HostTable.

Each term is one small function returning an array over hosts; :func:`score_terms` combines them.
Scores never depend on filter 11, so the scheduler can rank first and run the HA filter lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vmctl.engine.placement.request import Request
from vmctl.engine.placement.table import HostTable

SQRT2 = math.sqrt(2.0)
DEFAULT_SKEW_WEIGHT = 2.0  # α, other-config:placement-skew-weight
DEFAULT_GROUP_WEIGHT = 0.5  # γ, other-config:placement-group-weight
DEFAULT_MASTER_PENALTY = 0.1  # β, other-config:placement-master-penalty
TINY = 1e-300  # keeps 0/0 finite without a NumPy error-state context (costly on the hot path)


#: The weigher terms the ``--explain`` report shows, by name, in report order (fields of Terms):
#: usage after placement (mem, vcpu), the policy's base weigher, skew, soft groups, master.
TERM_NAMES = ("mem", "vcpu", "base", "skew", "group", "master")


@dataclass(slots=True)
class Terms:
    """Per-host arrays: usage after placement (mem, vcpu), base score, skew, group and master
    terms, the total score S and the memory tier."""

    mem: Any
    vcpu: Any
    base: Any
    skew: Any
    group: Any
    master: Any
    score: Any
    tier: Any


def usage_after(table: HostTable, req: Request) -> Any:
    """u' as a 2 × n array: ((M_h + m(v))/A_h, (C_h + c(v))/V_h); under ``dynamic`` memory uses
    m_max, capped at 1."""
    import numpy as np

    dm = req.mem_max if table.dynamic else req.mem
    u = table.INV * np.array(((float(dm),), (float(req.vcpus),)))
    u += table.U0
    if table.dynamic:
        np.minimum(u[0], 1.0, out=u[0])
    return u


def demand_mix(table: HostTable, req: Request) -> tuple[float, float]:
    """g: per dimension (load of live enabled hosts + the demand) / their capacity, unit length."""
    gm, gc = table.mix_sums(req)
    norm = math.hypot(gm, gc)
    if norm == 0.0:
        return 1.0 / SQRT2, 1.0 / SQRT2
    return gm / norm, gc / norm


def skew(u: Any, g: tuple[float, float]) -> Any:
    """skew(x) = 1 − cos(x, g), g of unit length. A zero vector (only on a host without capacity,
    which never passes the filters) gets skew 1 instead of a division by zero."""
    import numpy as np

    u0, u1 = u[0], u[1]
    cos = (u0 * g[0] + u1 * g[1]) / (np.sqrt(u0 * u0 + u1 * u1) + TINY)
    return 1.0 - cos


def base_pack(u: Any) -> Any:
    """best fit: 1 − ‖1 − u'‖₂ / √2."""
    import numpy as np

    r0 = 1.0 - u[0]
    r1 = 1.0 - u[1]
    return 1.0 - np.sqrt(r0 * r0 + r1 * r1) * (1.0 / SQRT2)


def base_spread(u: Any) -> Any:
    """worst fit: 1 − max_d u'_d."""
    import numpy as np

    return 1.0 - np.maximum(u[0], u[1])


def base_balanced(u: Any, sk: Any, alpha: float) -> Any:
    """spread, skew-aware: 1 − max_d u'_d · (1 + α·skew(u')).

    Like ``spread`` it prefers the host whose tightest dimension is least loaded after placement,
    with that load inflated by the host's skew from the pool's demand mix, so hosts whose memory
    and vCPU usage drift apart (one dimension filling while the other is stranded) are avoided.
    The penalty is proportional to the load: a nearly empty host has nothing to strand, so an
    empty host still beats a loaded one whatever the VM's shape (the policy spreads)."""
    import numpy as np

    return 1.0 - np.maximum(u[0], u[1]) * (1.0 + alpha * sk)


def group_term(table: HostTable, req: Request, gamma: float) -> Any:
    """+γ·f_h per soft affinity group, −γ·f_h per soft anti-affinity group (f_h = share of the
    group's running members on h); None when the VM has no soft group."""
    if not req.soft_aff and not req.soft_anti:
        return None
    total_term = None
    for sign, groups in ((1.0, req.soft_aff), (-1.0, req.soft_anti)):
        for g in groups:
            counts = table.group_counts(g, req)
            total = float(counts.sum())
            if total <= 0:
                continue
            t = (sign * gamma / total) * counts
            total_term = t if total_term is None else total_term + t
    return total_term


def tier(table: HostTable, req: Request) -> Any:
    """Memory tier under ``dynamic``: 0 if the m_st sums fit, 1 if the m_max sums fit, else 2."""
    import numpy as np

    if not table.dynamic:
        return None
    t = np.full(table.n, 2, dtype=np.int8)
    t[table.mem_max + req.mem_max <= table.mem_cap] = 1
    t[table.mem_st + req.mem_st <= table.mem_cap] = 0
    return t


def score_terms(table: HostTable, req: Request, policy: str, n_feasible: int, full: bool = False) -> Terms:
    """All terms for all hosts. ``n_feasible`` (hosts passing filters 1–10) decides the master
    penalty. With ``full`` every term is materialised as an array (explain); otherwise absent terms
    stay None to save work on the hot path."""
    import numpy as np

    pool = table.pool
    u = usage_after(table, req)
    sk = None
    if policy == "pack":
        base = base_pack(u)
    elif policy == "spread":
        base = base_spread(u)
    else:
        g = demand_mix(table, req)
        alpha = pool.knob("placement-skew-weight", DEFAULT_SKEW_WEIGHT)
        if full:
            sk = skew(u, g)
            base = base_balanced(u, sk, alpha)
        else:
            # Same value, fewer vector operations (hot path): 1 − max·(1 + α − α·cos).
            u0, u1 = u[0], u[1]
            adot = np.array((alpha * g[0], alpha * g[1])) @ u
            adot /= np.sqrt(u0 * u0 + u1 * u1) + TINY
            adot -= 1.0 + alpha
            adot *= np.maximum(u0, u1)
            adot += 1.0
            base = adot
    score = base
    grp = None
    if req.soft_aff or req.soft_anti:
        grp = group_term(table, req, pool.knob("placement-group-weight", DEFAULT_GROUP_WEIGHT))
        if grp is not None:
            score = score + grp
    master = None
    if pool.master_bias and n_feasible >= 2 and table.master_index is not None:
        beta = pool.knob("placement-master-penalty", DEFAULT_MASTER_PENALTY)
        if score is base:
            score = base.copy()
        score[table.master_index] -= beta
        if full:
            master = np.zeros(table.n)
            master[table.master_index] = -beta
    tr = tier(table, req)
    if full:
        zeros = np.zeros(table.n)
        if sk is None:
            sk = zeros
        grp = zeros if grp is None else grp
        master = zeros if master is None else master
        tr = np.zeros(table.n, dtype=np.int8) if tr is None else tr
    return Terms(u[0], u[1], base, sk, grp, master, score, tr)
