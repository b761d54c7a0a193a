"""VM copies, snapshots and disks (model.md §3.4, §3.5 chains): vm-clone, vm-copy, vm-snapshot,
vm-checkpoint, snapshot trees (revert, destroy of a middle snapshot, uninstall), the chain
length limit, vm-disk-*, and the constant SQL cost of vm-copy."""

from __future__ import annotations

import pytest
from test_storage_commands import Inv, _halt, _make_running, _p

from vmctl.copies import clone_vm, copy_vm
from vmctl.errors import VmctlError

MiB, GiB = 1024**2, 1024**3


@pytest.fixture
def vmd(tmp_path):
    """A pool with a default thin SR, an lvm SR, and VM `v` with a thin disk (device 0), a
    thick disk (device 1), an empty CD (device 3) and a VIF."""
    st = Inv(str(tmp_path / "inv.db"))
    st("pool-create", **{"name-label": "p1"})
    st(
        "host-add",
        **{"name-label": "h1", "address": "10.0.0.1", "cpu-count": 8, "memory-total": "64GiB", "pool": "p1"},
    )
    ext = st("sr-create", **{"name-label": "ext", "type": "nfs", "physical-size": "100GiB"})
    lvm = st("sr-create", **{"name-label": "lvm", "type": "lvm", "physical-size": "40GiB", "host": "h1"})
    st("pool-param-set", uuid="p1", **{"default-sr": ext})
    vm = st("vm-create", **{"name-label": "v", "memory": "2GiB", "vcpus": 2})
    a = st("vm-disk-add", vm=vm, **{"disk-size": "8GiB"})
    b = st("vm-disk-add", vm=vm, **{"disk-size": "4GiB", "sr-uuid": lvm})
    st("vbd-create", **{"vm-uuid": vm, "device": "3", "type": "cd"})
    net = st("network-list")[0]["uuid"]
    st("vif-create", **{"vm-uuid": vm, "network-uuid": net, "device": "0"})
    h1 = st("host-list")[0]["uuid"]
    yield st, {"ext": ext, "lvm": lvm, "vm": vm, "a": a, "b": b, "net": net, "h1": h1}
    st.store.dispose()


def _chain(st: Inv, vdi_uuid: str) -> int:
    """Bytes written along a disk's chain: its data as a copy would see it."""
    total, cur = 0, st("vdi-param-list", uuid=vdi_uuid)
    while cur:
        total += cur["physical-utilisation"]
        cur = st("vdi-param-list", uuid=cur["parent"]) if cur["parent"] else None
    return total


def _vbds(st: Inv, vm: str) -> dict[int, dict]:
    return {b["device"]: b for b in st("vbd-list", params="all", vm=vm)}


def test_vm_snapshot_record(vmd):
    st, d = vmd
    mac = st("vif-list", params="mac", vm=d["vm"])[0]["mac"]
    s = st("vm-snapshot", vm="v", **{"new-name-label": "s1"})
    snap = st("vm-param-list", uuid=s)
    assert snap["is-a-snapshot"] and snap["is-a-template"] and snap["snapshot-of"] == d["vm"]
    assert snap["power-state"] == "halted" and snap["snapshot-time"].endswith("Z") and snap["parent"] == ""
    assert snap["vcpus"] == 2 and snap["memory-static-max"] == 2 * GiB
    assert st.get("vm", d["vm"], "parent") == s
    vb = _vbds(st, s)
    assert sorted(vb) == [0, 1, 3] and vb[3]["vdi"] == "" and vb[3]["type"] == "cd"
    for dev, src in ((0, d["a"]), (1, d["b"])):
        sv = st("vdi-param-list", uuid=vb[dev]["vdi"])
        assert (
            sv["is-a-snapshot"]
            and sv["read-only"]
            and sv["snapshot-of"] == src
            and sv["physical-utilisation"] == 0
        )
        assert vb[dev]["other-config"] == {"owner": "true"}
    assert [v["mac"] for v in st("vif-list", params="mac", vm=s)] == [mac]
    assert st("snapshot-list", params="uuid") == [{"uuid": s}]
    # thick disk: the base copy keeps 4 GiB, the disk reserves 4 GiB again
    assert st.get("sr", d["lvm"], "physical-utilisation") == 8 * GiB
    s2 = st("vm-snapshot", vm="v", **{"new-name-label": "s2", "ignore-vdi-uuids": d["b"]})
    assert sorted(_vbds(st, s2)) == [0, 3] and st.get("vm", s2, "parent") == s
    assert st("db-check") == "db-check: all 16 invariants hold\n"
    # sharable disks cannot be snapshotted; snapshots and templates cannot be snapshotted
    st("vdi-param-set", uuid=d["a"], sharable="true")
    e = st.err("vm-snapshot", vm="v", **{"new-name-label": "x"})
    assert e.code == "VDI_IS_SHARABLE" and _p(e) == {"vdi": d["a"]}
    assert st.err("vm-snapshot", vm=s, **{"new-name-label": "x"}).code == "VM_IS_SNAPSHOT"


def test_revert_restores_disks_and_config(vmd):
    st, d = vmd
    vm, a = d["vm"], d["a"]
    st("vdi-param-set", uuid=a, **{"physical-utilisation": "1GiB"})
    s1 = st("vm-snapshot", vm="v", **{"new-name-label": "s1"})
    # change everything after the snapshot
    st("vdi-param-set", uuid=a, **{"physical-utilisation": "3GiB"})
    st("vdi-resize", uuid=a, **{"disk-size": "+2GiB"})
    st(
        "vm-param-set",
        uuid=vm,
        vcpus=4,
        **{"memory-static-max": "4GiB", "memory-dynamic-max": "4GiB", "other-config:k": "v"},
    )
    extra = st("vm-disk-add", vm=vm, **{"disk-size": "1GiB", "device": "5"})
    st("snapshot-revert", **{"snapshot-uuid": s1})
    row = st("vm-param-list", uuid=vm)
    assert row["vcpus"] == 2 and row["memory-static-max"] == 2 * GiB and row["other-config"] == {}
    assert row["parent"] == s1 and row["power-state"] == "halted"
    vb = _vbds(st, vm)
    assert sorted(vb) == [0, 1, 3]
    new_a = st("vdi-param-list", uuid=vb[0]["vdi"])
    assert new_a["virtual-size"] == 8 * GiB and not new_a["read-only"] and new_a["managed"]
    # the disk's data is the snapshot's: 1 GiB written along its chain
    chain, cur = 0, new_a
    while cur:
        chain += cur["physical-utilisation"]
        cur = st("vdi-param-list", uuid=cur["parent"]) if cur["parent"] else None
    assert chain == GiB
    # the old disk with a counterpart is destroyed; the one added later stays, detached
    assert st("vdi-list", params="uuid", uuid=a, **{"--all": True}) == []
    assert st("vdi-list", params="uuid", uuid=extra) == [{"uuid": extra}]
    assert st("vbd-list", params="uuid", vdi=extra) == []
    assert len(st("vif-list", vm=vm)) == 1
    assert st("db-check") == "db-check: all 16 invariants hold\n"
    e = st.err("snapshot-revert", **{"snapshot-uuid": vm})
    assert e.code == "REVERT_ONLY_ALLOWED_ON_SNAPSHOT" and _p(e) == {"vm": vm}


def test_snapshot_tree_middle_destroy_and_revert(vmd):
    st, d = vmd
    vm, a = d["vm"], d["a"]
    sizes = {}
    snaps = []
    for i in (1, 2, 3):
        st("vdi-param-set", uuid=_vbds(st, vm)[0]["vdi"], **{"physical-utilisation": f"{i}GiB"})
        data = _chain(st, _vbds(st, vm)[0]["vdi"])
        snaps.append(st("vm-snapshot", vm="v", **{"new-name-label": f"s{i}"}))
        sizes[snaps[-1]] = data
    assert sorted(sizes.values()) == [GiB, 3 * GiB, 6 * GiB]
    s1, s2, s3 = snaps
    assert [st.get("vm", s, "parent") for s in snaps] == ["", s1, s2]
    st("snapshot-destroy", **{"snapshot-uuid": s2})
    assert st.get("vm", s3, "parent") == s1 and st.get("vm", vm, "parent") == s3
    assert st("db-check") == "db-check: all 16 invariants hold\n"
    # s2's disks stay (snapshot-destroy keeps VDIs)
    for s in (s3, s1):
        st("snapshot-revert", uuid=s)
        assert _chain(st, _vbds(st, vm)[0]["vdi"]) == sizes[s]
        assert st.get("vm", vm, "parent") == s
        assert st("db-check") == "db-check: all 16 invariants hold\n"
    assert a not in {v["uuid"] for v in st("vdi-list", **{"--all": True}, params="uuid")}


def test_snapshot_uninstall_merges_chains(vmd):
    st, d = vmd
    before = st.get("sr", d["lvm"], "physical-utilisation")
    s = st("vm-snapshot", vm="v", **{"new-name-label": "s"})
    assert st.get("sr", d["lvm"], "physical-utilisation") == before + 4 * GiB
    p = st.cli("snapshot-uninstall", f"snapshot-uuid={s}")
    assert p.returncode == 1 and p.stderr.startswith("vmctl: CONFIRMATION_REQUIRED:")
    p = st.cli("snapshot-uninstall", f"snapshot-uuid={s}", "--force")
    assert p.returncode == 0 and p.stdout == "", p.stderr
    assert st("snapshot-list") == [] and st.get("sr", d["lvm"], "physical-utilisation") == before
    assert st.get("vdi", d["a"], "parent") == "" and st.get("vdi", d["b"], "parent") == ""
    assert len(st("vdi-list", **{"--all": True})) == 2
    assert st.err("snapshot-destroy", uuid=d["vm"]).code == "VM_IS_NOT_A_SNAPSHOT"


def test_revert_recreates_destroyed_vm(vmd):
    st, d = vmd
    s = st("vm-snapshot", vm="v", **{"new-name-label": "s"})
    st("vm-destroy", uuid=d["vm"])
    st("snapshot-revert", uuid=s)
    row = st("vm-param-list", uuid=d["vm"])
    assert row["is-a-snapshot"] is False and row["is-a-template"] is False and row["parent"] == s
    assert sorted(_vbds(st, d["vm"])) == [0, 1, 3]
    assert st("db-check") == "db-check: all 16 invariants hold\n"


def test_checkpoint_and_revert_to_it(vmd):
    st, d = vmd
    vm = d["vm"]
    e = st.err("vm-checkpoint", vm="v", **{"new-name-label": "c"})
    # xapi_vm_lifecycle.allowed_power_states: checkpoint [Paused; Suspended; Running]
    assert e.code == "VM_BAD_POWER_STATE" and _p(e)["expected"] == "paused, suspended, running"
    _make_running(st, vm, d["h1"])
    c = st("vm-checkpoint", vm="v", **{"new-name-label": "c"})
    row = st("vm-param-list", uuid=c)
    assert row["power-state"] == "suspended" and row["suspend-vdi"] and row["resident-on"] == ""
    image = st("vdi-param-list", uuid=row["suspend-vdi"])
    assert (
        image["type"] == "suspend"
        and image["virtual-size"] == 2 * GiB
        and image["physical-utilisation"] == 2 * GiB
    )
    assert st("db-check") == "db-check: all 16 invariants hold\n"
    st("snapshot-revert", uuid=c)  # hard-shuts-down the running VM first
    row = st("vm-param-list", uuid=vm)
    assert row["power-state"] == "suspended" and row["resident-on"] == "" and row["suspend-vdi"]
    assert row["suspend-vdi"] != st.get("vm", c, "suspend-vdi")
    assert not any(b["currently-attached"] for b in st("vbd-list", params="all", vm=vm))
    assert st("db-check") == "db-check: all 16 invariants hold\n"


def test_chain_limit_via_vm_snapshot(vmd):
    st, d = vmd
    words: list[str] = []
    for i in range(30):
        words += ["vm-snapshot", "vm=v", f"new-name-label=s{i}", "ignore-vdi-uuids=" + d["b"], "--"]
    p = st.cli(*words[:-1])
    assert p.returncode == 0, p.stderr
    before = st.state()
    e = st.err("vm-snapshot", vm="v", **{"new-name-label": "one-too-many"})
    assert e.code == "SR_BACKEND_FAILURE_109" and _p(e) == {"reason": "VDI chain deeper than 30"}
    assert st.state() == before
    assert st("db-check") == "db-check: all 16 invariants hold\n"


def test_vm_clone_and_copy(vmd):
    st, d = vmd
    vm = d["vm"]
    old_mac = st("vif-list", params="mac", vm=vm)[0]["mac"]
    c = st("vm-clone", vm="v", **{"new-name-label": "c"})
    row = st("vm-param-list", uuid=c)
    assert row["name-label"] == "c" and row["power-state"] == "halted" and not row["is-a-template"]
    vb = _vbds(st, c)
    assert sorted(vb) == [0, 1, 3] and vb[0]["other-config"] == {"owner": "true"}
    assert st.get("vdi", vb[0]["vdi"], "parent") == st.get("vdi", d["a"], "parent") != ""
    mac = st("vif-list", params="mac,mac-autogenerated", vm=c)[0]
    assert mac["mac"] != old_mac and mac["mac-autogenerated"] is True
    # a snapshot copied or cloned yields a template
    s = st("vm-snapshot", vm="v", **{"new-name-label": "s"})
    t = st("vm-copy", vm=s, **{"new-name-label": "t", "sr-uuid": d["ext"]})
    trow = st("vm-param-list", uuid=t)
    assert trow["is-a-template"] and not trow["is-a-snapshot"] and trow["snapshot-of"] == ""
    for b in _vbds(st, t).values():
        if b["vdi"]:
            vdi = st("vdi-param-list", uuid=b["vdi"])
            assert vdi["sr"] == d["ext"] and vdi["parent"] == "" and not vdi["read-only"]
    # copy keeps provisioning: the thick disk stays thick on the nfs SR
    assert sorted(
        st("vdi-param-get", uuid=b["vdi"], **{"param-name": "provisioning"})
        for b in _vbds(st, t).values()
        if b["vdi"]
    ) == ["thick-lazy", "thin"]
    # --explain reports the bytes the copy moves (thin: written bytes; thick: the size)
    st("vdi-param-set", uuid=d["a"], **{"physical-utilisation": "1GiB"})
    p = st.cli("vm-copy", "vm=v", "new-name-label=e", "--explain")
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == f"# bytes to copy: {GiB + 4 * GiB}"
    assert st("db-check") == "db-check: all 16 invariants hold\n"


def test_vm_copy_and_clone_refusals(vmd):
    st, d = vmd
    iso = st(
        "sr-create", **{"name-label": "iso", "type": "nfs", "physical-size": "10GiB", "content-type": "iso"}
    )
    before = st.state()
    e = st.err("vm-copy", vm="v", **{"new-name-label": "x", "sr-uuid": iso})
    assert e.code == "OPERATION_NOT_ALLOWED" and _p(e) == {"reason": "ISO SR cannot hold VM disks"}
    small = st("sr-create", **{"name-label": "small", "type": "lvm", "physical-size": "10GiB", "host": "h1"})
    before = st.state()
    # 8 GiB thin disk with nothing written + 4 GiB thick: each fits alone, together they do not
    st("vdi-param-set", uuid=d["a"], **{"physical-utilisation": "7GiB"})
    before = st.state()
    e = st.err("vm-copy", vm="v", **{"new-name-label": "x", "sr-uuid": small})
    assert e.code == "SR_FULL" and _p(e) == {"requested": 11 * GiB, "maximum": 10 * GiB}
    assert st.state() == before
    _make_running(st, d["vm"], d["h1"])
    before = st.state()
    e = st.err("vm-clone", vm="v", **{"new-name-label": "x"})
    assert e.code == "VM_BAD_POWER_STATE" and _p(e) == {
        "vm": d["vm"],
        "expected": "halted",
        "actual": "running",
    }
    assert st.err("vm-copy", vm="v", **{"new-name-label": "x"}).code == "VM_BAD_POWER_STATE"
    assert st.state() == before
    _halt(st, d["vm"])
    st("vm-param-set", uuid=d["vm"], **{"blocked-operations:clone": "no"})
    assert st.err("vm-clone", vm="v", **{"new-name-label": "x"}).code == "OPERATION_BLOCKED"


def test_vm_disk_add_remove_list(vmd):
    st, d = vmd
    vm = d["vm"]
    p = st.cli("vm-disk-list", "vm=v")
    assert p.returncode == 0 and p.stdout.count("VBD ") == 3 and "empty" in p.stdout
    rows = st("vm-disk-list", vm="v")
    assert [r["device"] for r in rows] == [0, 1, 3] and rows[1]["provisioning"] == "thick-lazy"
    new = st("vm-disk-add", vm="v", **{"disk-size": "1GiB"})
    assert _vbds(st, vm)[2]["vdi"] == new  # lowest free device
    e = st.err("vm-disk-add", vm="v", **{"disk-size": "1GiB", "device": "2"})
    assert e.code == "DEVICE_ALREADY_EXISTS"
    _make_running(st, vm, d["h1"])
    hot = st("vm-disk-add", vm="v", **{"disk-size": "1GiB", "provisioning": "thick-eager"})
    vb = [b for b in st("vbd-list", params="all", vm=vm) if b["vdi"] == hot][0]
    assert vb["currently-attached"] is True and st.get("vdi", hot, "physical-utilisation") == GiB
    st("vbd-param-set", uuid=vb["uuid"], unpluggable="false")
    e = st.err("vm-disk-remove", vm="v", device=vb["device"])
    assert e.code == "VBD_NOT_UNPLUGGABLE"
    st("vbd-param-set", uuid=vb["uuid"], unpluggable="true")
    st("vm-disk-remove", vm="v", device=vb["device"])
    assert st("vdi-list", params="uuid", uuid=hot) == []
    assert st.err("vm-disk-remove", vm="v", device=9).code == "INVALID_DEVICE"
    st("pool-param-clear", uuid="p1", **{"param-name": "default-sr"})
    _halt(st, vm)
    e = st.err("vm-disk-add", vm="v", **{"disk-size": "1GiB"})
    assert e.code == "DEFAULT_SR_NOT_FOUND"
    assert st("db-check") == "db-check: all 16 invariants hold\n"


def test_vm_copy_sql_statements_do_not_grow_with_disk_size(tmp_path):
    """vm-copy issues a bounded number of SQL statements, the same for 1 GiB and 1 TiB disks."""
    import sqlalchemy as sa

    from vmctl.cli.bind import bind, lookup
    from vmctl.cli.grammar import Segment
    from vmctl.runner import Options, Runner
    from vmctl.store.txn import Store

    counts = {}
    for size in ("1GiB", "1TiB"):
        st = Inv(str(tmp_path / f"{size}.db"))
        st("pool-create", **{"name-label": "p1"})
        st(
            "host-add",
            **{
                "name-label": "h1",
                "address": "10.0.0.1",
                "cpu-count": 8,
                "memory-total": "64GiB",
                "pool": "p1",
            },
        )
        sr = st("sr-create", **{"name-label": "s", "type": "nfs", "physical-size": "100TiB"})
        vm = st("vm-create", **{"name-label": "v"})
        for _ in range(4):
            v = st(
                "vdi-create",
                **{"sr-uuid": sr, "name-label": "d", "virtual-size": size, "provisioning": "thick-eager"},
            )
            st("vbd-create", **{"vm-uuid": vm, "device": "autodetect", "vdi-uuid": v})
        st.store.dispose()
        store = Store(st.db)
        n = [0]
        sa.event.listen(
            store.engine, "before_cursor_execute", lambda *a, n=n, **k: n.__setitem__(0, n[0] + 1)
        )
        b = bind(lookup("vm-copy"), Segment(name="vm-copy", args=["vm=v", "new-name-label=c"]))
        Runner(Options(db=st.db), "test").run([b], store=store)
        store.dispose()
        counts[size] = n[0]
        assert len(st("vdi-list")) == 8
    print("vm-copy SQL statements (4 disks):", counts)
    assert counts["1GiB"] == counts["1TiB"] and counts["1GiB"] < 120, counts


def test_vm_clone_api_is_reusable(vmd):
    """clone_vm / copy_vm run inside a caller's transaction (vm-install)."""
    from vmctl.store.txn import Store

    st, d = vmd
    s = Store(st.db)

    def body(txn):
        vm = txn.get("vm", d["vm"])
        a = clone_vm(txn, vm, "a")
        b = copy_vm(txn, vm, "b", sr_uuid=d["ext"])
        return a, b

    (a, b), _ = s.run(body, True, finish=lambda txn: s.append_journal(txn, "test"))
    s.dispose()
    assert st.get("vm", a, "name-label") == "a" and st.get("vm", b, "name-label") == "b"
    with pytest.raises(VmctlError):
        st("vm-clone", vm="nope", **{"new-name-label": "x"})
