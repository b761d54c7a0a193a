"""The MAC addresses a pool uses (model.md §3.7), for every command that generates one:
vif-create, host-add and pool joins (physical PIFs), tunnel access PIFs, vm-clone/-copy/-install.

A generated MAC is the first hash of `<seed>:<k>` (vmctl.units.generated_mac) that no PIF or VIF
of the pool has, usually k = 0. Asking the transaction's indexes about that one MAC costs the
same whatever the pool holds; building the set of every MAC of the pool for each new one made a
batch of creates quadratic."""

from __future__ import annotations

from vmctl.units import generated_mac


class _UsedInPool:
    """`mac in used`: whether a PIF or VIF of the pool has the MAC, as the transaction sees it
    (rows inserted earlier in it included)."""

    def __init__(self, txn, pool_uuid: str) -> None:
        self.txn = txn
        self.pool = pool_uuid

    def __contains__(self, mac: object) -> bool:
        return self.txn.exists("pif", pool=self.pool, mac=mac) or self.txn.exists(
            "vif", pool=self.pool, mac=mac
        )


def generate_mac(txn, pool_uuid: str, seed: str) -> str:
    """The MAC for `seed` (`<vm uuid>:<device>`, or `<host uuid>:<device>` for a PIF) that no PIF
    or VIF of the pool has yet."""
    return generated_mac(seed, _UsedInPool(txn, pool_uuid))
