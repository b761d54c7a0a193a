"""Hooks that let the storage and network layers follow VM power-state changes without the
compute commands knowing them (model.md §2: entering running or paused attaches every VBD and
plugs every VIF; leaving for halted or suspended detaches them).

Each hook is fn(txn, vm_row, host_uuid). Family modules append to these lists at import time;
the compute commands call `became_resident` / `leaving_host` in the same transaction.
"""

from __future__ import annotations

ON_RESIDENT: list = []  # after the VM is recorded running/paused on host_uuid
ON_LEAVE: list = []  # before the VM leaves host_uuid (halt, suspend, migration away, host failure)


def became_resident(txn, vm: dict, host_uuid: str) -> None:
    for fn in ON_RESIDENT:
        fn(txn, vm, host_uuid)


def leaving_host(txn, vm: dict, host_uuid: str) -> None:
    for fn in ON_LEAVE:
        fn(txn, vm, host_uuid)
