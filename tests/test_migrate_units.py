"""Direct (in-process) tests of the migration commands through the Python API and of their
helpers: the plan equals the engine's own prediction on the same snapshot, storage needs follow
vdi-copy, the renderers, and an evacuation and a rebalance applied through the API keep db-check
clean."""

from __future__ import annotations

import json
import math

import pytest

import vmctl
from vmctl.errors import VmctlError

GiB = 1024**3
MiB = 1024**2


@pytest.fixture
def api(tmp_path):
    inv = vmctl.open(str(tmp_path / "inv.db"))
    inv.run("pool-create", **{"name-label": "p1"})
    for i in (1, 2, 3):
        inv.run(
            "host-add",
            **{
                "name-label": f"h{i}",
                "address": f"10.0.0.{i}",
                "cpu-count": 16,
                "memory-total": "64GiB",
                "pool": "p1",
            },
        )
    inv.run("sr-create", **{"name-label": "nfs", "type": "nfs", "physical-size": "1TiB", "shared": "true"})
    inv.run("sr-create", **{"name-label": "thin", "type": "ext", "physical-size": "100GiB", "host": "h1"})
    inv.run("sr-create", **{"name-label": "thick", "type": "lvm", "physical-size": "100GiB", "host": "h1"})
    for n in range(6):
        inv.run(
            "vm-create",
            **{
                "name-label": f"v{n}",
                "memory": f"{n + 1}GiB",
                "vcpus": 1 + n % 2,
                "other-config:dirty-rate": f"{8 * (n + 1)}M",
            },
        )
        inv.run("vm-start", vm=f"v{n}", on="h1")
    return inv


def _uuid(inv, cls: str, name: str) -> str:
    return next(
        r["uuid"] for r in inv.run(f"{cls}-list", params="uuid,name-label") if r["name-label"] == name
    )


def test_plan_is_the_engines_prediction(api):
    from vmctl.engine import migration as mg

    plan = api.run("vm-migrate", vm="v5", host="h2", bandwidth="300M", dry_run=True)
    h2 = _uuid(api, "host", "h2")
    assert plan["host"] == h2
    e = mg.predict(6 * GiB, 48 * MiB, 300 * MiB)
    for k in ("rounds", "stop-reason", "converges"):
        assert plan[k] == e.as_dict()[k]
    for k in ("bytes", "total-time", "downtime"):
        assert math.isclose(plan[k], e.as_dict()[k], rel_tol=1e-12)
    # a dry run left everything in place
    assert all(r["resident-on"] == _uuid(api, "host", "h1") for r in api.run("vm-list", params="resident-on"))


def test_storage_need_counts_like_vdi_copy(api):
    api.run(
        "vm-disk-add",
        vm="v0",
        **{"disk-size": "10GiB", "sr-uuid": _uuid(api, "sr", "thick"), "name-label": "d-thick"},
    )
    api.run(
        "vm-disk-add",
        vm="v1",
        **{"disk-size": "10GiB", "sr-uuid": _uuid(api, "sr", "thin"), "name-label": "d-thin"},
    )
    api.run("vdi-param-set", uuid=_uuid(api, "vdi", "d-thin"), **{"physical-utilisation": str(3 * GiB)})
    thick, thin, nfs = _uuid(api, "vdi", "d-thick"), _uuid(api, "vdi", "d-thin"), _uuid(api, "sr", "nfs")
    plan = api.run("vm-migrate", vm="v1", host="h2", **{f"vdi:{thin}": nfs}, dry_run=True)
    assert plan["storage-bytes"] == 3 * GiB  # thin: the bytes written
    plan = api.run("vm-migrate", vm="v0", host="h2", **{f"vdi:{thick}": nfs}, dry_run=True)
    assert plan["storage-bytes"] == 10 * GiB  # thick: its virtual-size


def test_storage_motion_refuses_a_full_target_before_anything_moves(api):
    api.run("sr-create", **{"name-label": "tiny", "type": "nfs", "physical-size": "1GiB", "shared": "true"})
    api.run(
        "vm-disk-add",
        vm="v0",
        **{"disk-size": "10GiB", "sr-uuid": _uuid(api, "sr", "thick"), "name-label": "d-thick"},
    )
    with pytest.raises(VmctlError) as e:
        api.run("vm-migrate", vm="v0", host="h2", **{f"vdi:{_uuid(api, 'vdi', 'd-thick')}": "tiny"})
    assert e.value.code == "SR_FULL"
    assert dict(e.value.params)["requested"] == 10 * GiB


def test_plan_views_format_units_and_plans():
    from vmctl.cli.views import aligned as table
    from vmctl.cli.views import migration_plan as plan_text
    from vmctl.cli.views import plan_value as human

    assert human("bytes", 17876.5 * MiB) == "17.5 GiB"
    assert human("downtime", 0.0972) == "97.2 ms"
    assert human("total-time", 128.0) == "2m08s"
    assert human("rate", 128 * MiB) == "128 MiB/s"
    assert human("converges", True) == "true"
    assert table(["a", "bb"], [["x", "y"]]) == "a  bb\nx  y\n"
    text = plan_text(
        {
            "host": "h",
            "rounds": 4,
            "bytes": 3 * GiB,
            "downtime": 1.5,
            "stop-reason": "byte-cap",
            "hints": {"required-bandwidth": 150 * MiB, "throttle-to": None},
        }
    )
    lines = text.splitlines()
    assert lines[0] == "h"
    assert lines[1].split() == ["rounds", "4"]
    assert lines[-2].split() == ["required-bandwidth", "150", "MiB/s"]
    assert lines[-1].split() == ["throttle-to", "none"]


def test_evacuation_and_rebalance_through_the_api(api):
    h1 = _uuid(api, "host", "h1")
    plan = api.run("host-evacuate", host="h1", dry_run=True)
    assert plan["vms"] == 6
    assert api.run("host-evacuate", host="h1") is None
    rows = api.run("vm-list", params="uuid,resident-on,other-config")
    assert all(r["resident-on"] != h1 for r in rows)
    assert all(json.loads(r["other-config"]["last-migration"])["from"] == h1 for r in rows)
    assert api.run("db-check") == "db-check: all 16 invariants hold\n"
    reb = api.run("pool-rebalance", dry_run=True)
    applied = {m["vm"]: m["to"] for m in reb["moves"]}
    api.run("pool-rebalance")
    after = {r["uuid"]: r["resident-on"] for r in api.run("vm-list", params="uuid,resident-on")}
    assert all(after[v] == h for v, h in applied.items())


@pytest.mark.parametrize(
    "text,want", [(None, 50), ("unlimited", None), ("UNLIMITED", None), ("0", 0), ("7", 7)]
)
def test_max_moves(text, want):
    from vmctl.commands.rebalance import _max_moves
    from vmctl.commands.table import Ctx

    ctx = Ctx(txn=None, cmd=None, a={} if text is None else {"max-moves": text})
    assert _max_moves(ctx) == want


@pytest.mark.parametrize("text", ["-1", "x", "1.5", ""])
def test_max_moves_refused(text):
    from vmctl.commands.rebalance import _max_moves
    from vmctl.commands.table import Ctx

    with pytest.raises(VmctlError) as e:
        _max_moves(Ctx(txn=None, cmd=None, a={"max-moves": text}))
    assert e.value.code == "INVALID_VALUE"


def test_a_disk_another_vm_holds_is_not_moved(api):
    thin = _uuid(api, "sr", "thin")
    d = api.run(
        "vdi-create", **{"sr-uuid": thin, "name-label": "shared", "virtual-size": "1GiB", "sharable": "true"}
    )
    for vm in ("v0", "v1"):
        api.run("vm-shutdown", vm=vm)
        api.run("vbd-create", **{"vm-uuid": _uuid(api, "vm", vm), "vdi-uuid": d, "device": "0"})
        api.run("vm-start", vm=vm, on="h1")
    with pytest.raises(VmctlError) as e:
        api.run("vm-migrate", vm="v0", host="h2", **{f"vdi:{d}": "nfs"})
    assert e.value.code == "VDI_IN_USE" and dict(e.value.params)["operation"] == "migrate"
    # the VM itself holding it is no obstacle once the other one has stopped
    api.run("vm-shutdown", vm="v1")
    api.run("vm-migrate", vm="v0", host="h2", **{f"vdi:{d}": "nfs"})
    assert [r["sr"] for r in api.run("vdi-list", params="name-label,sr") if r["name-label"] == "shared"] == [
        _uuid(api, "sr", "nfs")
    ]
