"""Storage commands (model.md §1.5-§1.6, §3.5, §3.9): SRs and PBDs, VDI create/resize/copy/
clone/destroy, VBDs, the holding rule, VBD attachment hooks. Contract checks run the real
executable; setup and state reads use the Python API in-process to stay fast."""

from __future__ import annotations

import pytest
from cli_helpers import run_cli

from vmctl import hooks, storage
from vmctl.errors import VmctlError

MiB, GiB, TiB = 1024**2, 1024**3, 1024**4


class Inv:
    """The Python API on one inventory, keeping one Store open (no engine set-up per command),
    plus the real executable for contract checks."""

    def __init__(self, db: str):
        from vmctl.runner import Options
        from vmctl.store.txn import Store

        self.db = db
        self.opts = Options(db=db)
        self.store = Store(db)

    def __call__(self, name: str, **kw):
        from vmctl.api import plain_result
        from vmctl.cli.bind import bind_values, lookup
        from vmctl.runner import Runner

        b = bind_values(lookup(name), kw)
        return plain_result(Runner(self.opts, f"test {name}").run([b], store=self.store)[0])

    def err(self, name: str, **kw) -> VmctlError:
        with pytest.raises(VmctlError) as ei:
            self(name, **kw)
        return ei.value

    def cli(self, *args: str, input: str | None = None):
        p = run_cli(self.db, *args, input=input)
        assert "Traceback" not in p.stderr, p.stderr
        return p

    def state(self) -> dict:
        out = {}
        for cls in ("sr", "pbd", "vdi", "vbd", "vm", "pool"):
            kw = {"params": "all"}
            if cls in ("vdi", "vm"):
                kw["--all"] = True
            out[cls] = sorted(self(f"{cls}-list", **kw), key=lambda r: r["uuid"])
        return out

    def get(self, cls: str, uuid: str, field: str):
        return self(f"{cls}-param-get", uuid=uuid, **{"param-name": field})


def _p(e: VmctlError) -> dict:
    return {k: (v.uuid if hasattr(v, "uuid") else v) for k, v in e.params}


@pytest.fixture
def st(tmp_path):
    inv = Inv(str(tmp_path / "inv.db"))
    inv("pool-create", **{"name-label": "p1"})
    for i in (1, 2):
        inv(
            "host-add",
            **{
                "name-label": f"h{i}",
                "address": f"10.0.0.{i}",
                "cpu-count": 8,
                "memory-total": "64GiB",
                "pool": "p1",
            },
        )
    yield inv
    inv.store.dispose()


# --- SRs and PBDs ---------------------------------------------------------------------------------
def test_sr_create_shared_and_local(st):
    nfs = st(
        "sr-create",
        **{"name-label": "nfs", "type": "nfs", "physical-size": "100GiB", "device-config:server": "filer"},
    )
    lvm = st("sr-create", **{"name-label": "lvm", "type": "lvm", "physical-size": "50GiB", "host": "h1"})
    pbds = st("pbd-list", params="all")
    assert sorted(p["host"] for p in pbds if p["sr"] == nfs) == sorted(h["uuid"] for h in st("host-list"))
    assert all(
        p["device-config"] == {"server": "filer"} and p["currently-attached"] for p in pbds if p["sr"] == nfs
    )
    assert [p["host"] for p in pbds if p["sr"] == lvm] == [st("host-list", **{"name-label": "h1"})[0]["uuid"]]
    rows = {r["name-label"]: r for r in st("sr-list", params="all")}
    assert rows["nfs"]["shared"] is True and rows["nfs"]["default-provisioning"] == "thin"
    assert rows["lvm"]["shared"] is False and rows["lvm"]["default-provisioning"] == "thick-lazy"
    assert rows["lvm"]["host"] != ""
    # a later member gets a PBD for the shared SR (host-add)
    st(
        "host-add",
        **{"name-label": "h3", "address": "10.0.0.3", "cpu-count": 8, "memory-total": "64GiB", "pool": "p1"},
    )
    assert len([p for p in st("pbd-list") if p["sr"] == nfs]) == 3
    assert st("db-check") == "db-check: all 16 invariants hold\n"
    # --may-exist: same name in the pool
    assert (
        st("sr-create", **{"name-label": "nfs", "type": "nfs", "physical-size": "1GiB", "--may-exist": True})
        == nfs
    )


def test_sr_create_errors(st):
    before = st.state()
    assert (
        st.err("sr-create", **{"name-label": "x", "type": "lvm", "physical-size": "1GiB"}).code
        == "MISSING_PARAMETER"
    )
    e = st.err(
        "sr-create",
        **{"name-label": "x", "type": "ext", "physical-size": "1GiB", "shared": "true", "host": "h1"},
    )
    assert e.code == "INVALID_VALUE" and _p(e) == {"name": "shared", "value": "true"}
    assert (
        st.err("sr-create", **{"name-label": "x", "type": "nfs", "physical-size": "0"}).code
        == "INVALID_VALUE"
    )
    assert (
        st.err("sr-create", **{"name-label": "x", "type": "zfs", "physical-size": "1GiB"}).code
        == "INVALID_VALUE"
    )
    assert (
        st.err("sr-create", **{"name-label": "x", "type": "nfs", "physical-size": "+1GiB"}).code
        == "INVALID_VALUE"
    )
    assert (
        st.err(
            "sr-create", **{"name-label": "x", "type": "nfs", "physical-size": "1GiB", "free-space": "1"}
        ).code
        == "FIELD_READ_ONLY"
    )
    assert st.state() == before
    p = st.cli("sr-create", "name-label=x", "type=lvm", "physical-size=1GiB")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("vmctl: MISSING_PARAMETER:") and "  name: host" in p.stderr


def test_a_file_sr_is_shared_only_in_a_libvirt_pool(st):
    """drivers.md §3: in a libvirt pool, a file SR may be one directory of a cluster filesystem that
    every host mounts; in a simulated pool a file SR stays local."""
    e = st.err("sr-create", **{"name-label": "x", "type": "file", "physical-size": "1GiB", "shared": "true"})
    assert e.code == "INVALID_VALUE" and _p(e) == {"name": "shared", "value": "true"}
    st("pool-create", **{"name-label": "real", "driver": "libvirt"})
    args = {"name-label": "gfs", "type": "file", "physical-size": "1GiB", "pool": "real"}
    sr = st("sr-create", **args, shared="true", **{"device-config:path": "/srv/gfs"})
    row = st("sr-list", uuid=sr, params="all")[0]
    assert row["shared"] is True and row["host"] == ""
    # without shared=true it is still a local SR, which needs its host
    assert st.err("sr-create", **{**args, "name-label": "local"}).code == "MISSING_PARAMETER"


def test_sr_list_accounting_and_overprovisioning_warning(st):
    sr = st("sr-create", **{"name-label": "small", "type": "ext", "physical-size": "10GiB", "host": "h1"})
    st("vdi-create", **{"sr-uuid": sr, "name-label": "a", "virtual-size": "8GiB"})
    st(
        "vdi-create",
        **{"sr-uuid": sr, "name-label": "b", "virtual-size": "1GiB", "provisioning": "thick-eager"},
    )
    row = st("sr-list", params="physical-utilisation,virtual-allocation,free-space,overprovisioning")[0]
    assert row == {
        "physical-utilisation": GiB,
        "virtual-allocation": 9 * GiB,
        "free-space": 9 * GiB,
        "overprovisioning": 0.9,
    }
    # thin creation beyond the size: allowed, with the warning on stderr (not with -q)
    p = st.cli("vdi-create", f"sr-uuid={sr}", "name-label=c", "virtual-size=3GiB")
    assert p.returncode == 0 and len(p.stdout.strip()) == 36
    assert p.stderr == "vmctl: warning: SR small is overprovisioned (1.20)\n"
    p = st.cli("-q", "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    assert p.returncode == 0 and p.stderr == ""
    p = st.cli("sr-list", "params=name-label,overprovisioning", "--minimal")
    assert p.stdout == "small\n"
    assert st("sr-list", params="overprovisioning")[0]["overprovisioning"] == 1.3


def test_sr_physical_size_param_set(st):
    sr = st("sr-create", **{"name-label": "s", "type": "lvm", "physical-size": "10GiB", "host": "h1"})
    st("vdi-create", **{"sr-uuid": sr, "name-label": "a", "virtual-size": "4GiB"})
    st("sr-param-set", uuid=sr, **{"physical-size": "20GiB"})
    st("sr-param-set", uuid=sr, **{"physical-size": "4GiB"})
    e = st.err("sr-param-set", uuid=sr, **{"physical-size": "3GiB"})
    assert e.code == "INVALID_VALUE"
    assert st.get("sr", sr, "physical-size") == 4 * GiB


def test_pool_default_sr_rule(st):
    iso = st(
        "sr-create", **{"name-label": "iso", "type": "nfs", "physical-size": "1GiB", "content-type": "iso"}
    )
    user = st("sr-create", **{"name-label": "u", "type": "nfs", "physical-size": "1GiB"})
    assert st.err("pool-param-set", uuid="p1", **{"default-sr": iso}).code == "INVALID_VALUE"
    st("pool-param-set", uuid="p1", **{"default-sr": user})
    assert st.get("pool", "p1", "default-sr") == user
    st("pool-create", **{"name-label": "p2"})
    st(
        "host-add",
        **{"name-label": "h9", "address": "10.0.0.9", "cpu-count": 8, "memory-total": "64GiB", "pool": "p2"},
    )
    other = st("sr-create", **{"name-label": "o", "type": "nfs", "physical-size": "1GiB", "pool": "p2"})
    assert st.err("pool-param-set", uuid="p1", **{"default-sr": other}).code == "NOT_IN_SAME_POOL"


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_sr_destroy_rules(st):
    """xapi_sr.assert_all_pbds_unplugged and Xapi_sr_operations.valid_operations: SR.destroy needs
    every PBD unplugged (SR_HAS_PBD) and no VDI left (SR_NOT_EMPTY, --force or not); then it asks
    for confirmation, as vmctl's destructive commands do (README: Differences from XAPI)."""
    sr = st("sr-create", **{"name-label": "s", "type": "nfs", "physical-size": "10GiB"})
    st("pool-param-set", uuid="p1", **{"default-sr": sr})
    vm = st("vm-create", **{"name-label": "v"})
    disk = st("vm-disk-add", vm=vm, **{"disk-size": "1GiB"})
    pbds = [p["uuid"] for p in st("pbd-list", sr=sr)]
    p = st.cli("sr-destroy", f"uuid={sr}", "--force")
    assert p.returncode == 1 and p.stderr.startswith("vmctl: SR_HAS_PBD:")
    for pbd in pbds:
        st("pbd-unplug", uuid=pbd)
    before = st.state()
    p = st.cli("sr-destroy", f"uuid={sr}", "--force")
    assert p.returncode == 1 and p.stderr.startswith("vmctl: SR_NOT_EMPTY:")
    assert st.state() == before
    st("pbd-plug", uuid=pbds[0])
    st("vdi-destroy", uuid=disk)
    st("pbd-unplug", uuid=pbds[0])
    p = st.cli("sr-destroy", f"uuid={sr}")  # no terminal: confirmation required
    assert p.returncode == 1 and p.stderr.startswith("vmctl: CONFIRMATION_REQUIRED:")
    p = st.cli("sr-destroy", f"uuid={sr}", "--force")
    assert p.returncode == 0, p.stderr
    assert st("vdi-list", **{"--all": True}) == [] and st("pbd-list") == []
    assert st.get("pool", "p1", "default-sr") == ""
    assert st.cli("sr-destroy", f"uuid={sr}", "--if-exists").returncode == 0
    for name in ("s2", "s3"):  # the global --yes, or --yes after the command, confirms
        other = st("sr-create", **{"name-label": name, "type": "nfs", "physical-size": "10GiB"})
        for pbd in st("pbd-list", sr=other):
            st("pbd-unplug", uuid=pbd["uuid"])
        args = (
            ["--yes", "sr-destroy", f"uuid={other}"]
            if name == "s2"
            else ["sr-destroy", f"uuid={other}", "--yes"]
        )
        assert st.cli(*args).returncode == 0 and st("sr-list", uuid=other) == []


def test_sr_destroy_held_vdi_and_pbd_unplug(st):
    sr = st("sr-create", **{"name-label": "s", "type": "nfs", "physical-size": "10GiB"})
    vm = st("vm-create", **{"name-label": "v"})
    vdi = st("vm-disk-add", vm=vm, **{"disk-size": "1GiB", "sr-uuid": sr})
    h1 = st("host-list", **{"name-label": "h1"})[0]["uuid"]
    _make_running(st, vm, h1)
    # xapi_sr.assert_all_pbds_unplugged: attached PBDs come first (SR_HAS_PBD)
    e = st.err("sr-destroy", uuid=sr, **{"--force": True})
    assert e.code == "SR_HAS_PBD" and _p(e) == {"sr": sr}
    pbd1 = [p for p in st("pbd-list", params="all") if p["host"] == h1][0]["uuid"]
    pbd2 = [p for p in st("pbd-list", params="all") if p["host"] != h1][0]["uuid"]
    e = st.err("pbd-unplug", uuid=pbd1)
    assert e.code == "VDI_IN_USE" and _p(e) == {"vdi": vdi, "operation": "pbd-unplug"}
    st("pbd-unplug", uuid=pbd2)
    assert st.get("pbd", pbd2, "currently-attached") is False
    st("pbd-plug", uuid=pbd2)
    assert st.get("pbd", pbd2, "currently-attached") is True


def _make_running(st: Inv, vm: str, host: str) -> None:
    """Make a VM resident the way the compute commands do (power state + lifecycle hooks)."""
    from vmctl.store.txn import Store

    s = Store(st.db)

    def body(txn):
        row = txn.update("vm", vm, {"power-state": "running", "resident-on": host, "domid": 1})
        hooks.became_resident(txn, row, host)
        return None

    s.run(body, True, finish=lambda txn: s.append_journal(txn, "test"))
    s.dispose()


def _halt(st: Inv, vm: str, state: str = "halted") -> None:
    from vmctl.store.txn import Store

    s = Store(st.db)

    def body(txn):
        row = txn.get("vm", vm)
        hooks.leaving_host(txn, row, row["resident-on"])
        txn.update("vm", vm, {"power-state": state, "resident-on": "", "domid": -1})

    s.run(body, True, finish=lambda txn: s.append_journal(txn, "test"))
    s.dispose()


# --- VDIs -------------------------------------------------------------------------------------------------
def test_vdi_create_rules(st):
    lvm = st("sr-create", **{"name-label": "lvm", "type": "lvm", "physical-size": "3000GiB", "host": "h1"})
    ext = st("sr-create", **{"name-label": "ext", "type": "ext", "physical-size": "10GiB", "host": "h1"})
    iso = st(
        "sr-create", **{"name-label": "iso", "type": "nfs", "physical-size": "10GiB", "content-type": "iso"}
    )
    v = st("vdi-create", **{"sr-uuid": ext, "name-label": "d", "virtual-size": "1"})
    assert st.get("vdi", v, "virtual-size") == 2 * MiB and st.get("vdi", v, "physical-utilisation") == 0
    before = st.state()
    e = st.err("vdi-create", **{"sr-uuid": lvm, "name-label": "big", "virtual-size": "2041GiB"})
    assert e.code == "VDI_TOO_LARGE" and _p(e) == {"vdi": "", "maximum": 2040 * GiB}
    e = st.err(
        "vdi-create",
        **{"sr-uuid": ext, "name-label": "big", "virtual-size": "11GiB", "provisioning": "thick-lazy"},
    )
    assert e.code == "SR_FULL" and _p(e) == {"requested": 11 * GiB, "maximum": 10 * GiB}
    assert (
        st.err("vdi-create", **{"sr-uuid": ext, "name-label": "x", "virtual-size": "0"}).code
        == "INVALID_VALUE"
    )
    assert (
        st.err("vdi-create", **{"sr-uuid": ext, "name-label": "x", "virtual-size": "-1"}).code
        == "INVALID_VALUE"
    )
    assert (
        st.err(
            "vdi-create", **{"sr-uuid": ext, "name-label": "x", "virtual-size": "1GiB", "provisioning": "fat"}
        ).code
        == "INVALID_VALUE"
    )
    assert (
        st.err("vdi-create", **{"sr-uuid": iso, "name-label": "x", "virtual-size": "1GiB"}).code
        == "VDI_INCOMPATIBLE_TYPE"
    )
    assert (
        st.err("vdi-create", **{"sr-uuid": "nope", "name-label": "x", "virtual-size": "1GiB"}).code
        == "UUID_INVALID"
    )
    pbd = st("pbd-list", params="all", sr=ext)[0]["uuid"]
    st("pbd-unplug", uuid=pbd)
    assert (
        st.err("vdi-create", **{"sr-uuid": ext, "name-label": "x", "virtual-size": "1GiB"}).code
        == "SR_HAS_NO_PBDS"
    )
    st("pbd-plug", uuid=pbd)
    after = st.state()
    assert after["vdi"] == before["vdi"] and after["sr"] == before["sr"]
    t = st("vdi-create", **{"sr-uuid": lvm, "name-label": "t", "virtual-size": "2040GiB"})
    assert st.get("vdi", t, "physical-utilisation") == 2040 * GiB
    assert (
        st("vdi-create", **{"sr-uuid": ext, "name-label": "d", "virtual-size": "5GiB", "--may-exist": True})
        == v
    )
    iv = st(
        "vdi-create",
        **{"sr-uuid": iso, "name-label": "cd", "virtual-size": "1GiB", "type": "iso", "read-only": "true"},
    )
    assert st.get("vdi", iv, "read-only") is True


@pytest.fixture
def disks(st):
    """ext (online grow) and lvm (no online grow) SRs of 20 GiB on h1, a VM with one disk on each."""
    ext = st("sr-create", **{"name-label": "ext", "type": "ext", "physical-size": "20GiB", "host": "h1"})
    lvm = st("sr-create", **{"name-label": "lvm", "type": "lvm", "physical-size": "20GiB", "host": "h1"})
    vm = st("vm-create", **{"name-label": "v"})
    a = st("vm-disk-add", vm=vm, **{"disk-size": "4GiB", "sr-uuid": ext})
    b = st("vm-disk-add", vm=vm, **{"disk-size": "4GiB", "sr-uuid": lvm})
    return {
        "ext": ext,
        "lvm": lvm,
        "vm": vm,
        "a": a,
        "b": b,
        "h1": st("host-list", **{"name-label": "h1"})[0]["uuid"],
    }


def test_vdi_resize_grow(st, disks):
    a, b = disks["a"], disks["b"]
    st("vdi-resize", uuid=a, **{"disk-size": "6GiB"})
    assert st.get("vdi", a, "virtual-size") == 6 * GiB and st.get("vdi", a, "physical-utilisation") == 0
    st("vdi-resize", uuid=b, **{"disk-size": "+1"})  # rounds up to the next 2 MiB
    assert st.get("vdi", b, "virtual-size") == 4 * GiB + 2 * MiB
    assert st.get("vdi", b, "physical-utilisation") == 4 * GiB + 2 * MiB
    before = st.state()
    st("vdi-resize", uuid=b, **{"disk-size": str(4 * GiB + 1)})  # rounds to the same size: no change
    assert st.state()["vdi"] == before["vdi"]
    # no SR type grows a disk online: VDI.resize_online needs VDI_RESIZE_ONLINE, which none of
    # xapi-project/sm's drivers advertises (Xapi_vdi.check_sm_feature_error)
    _make_running(st, disks["vm"], disks["h1"])
    e = st.err("vdi-resize", uuid=a, **{"disk-size": "+2GiB", "online": "true"})
    assert e.code == "SR_OPERATION_NOT_SUPPORTED" and st.get("vdi", a, "virtual-size") == 6 * GiB


def test_vdi_resize_refusals_change_nothing(st, disks):
    a, b, vm = disks["a"], disks["b"], disks["vm"]
    before = st.state()

    def refused(uuid, size, code, **kw):
        e = st.err("vdi-resize", uuid=uuid, **{"disk-size": size}, **kw)
        assert e.code == code, (e.code, e.params)
        assert st.state() == before
        return e

    e = refused(a, "2GiB", "SR_BACKEND_FAILURE_79")
    assert _p(e) == {"reason": "VDI shrinking is not supported"}
    e = refused(a, "17TiB", "VDI_TOO_LARGE")
    assert _p(e) == {"vdi": a, "maximum": 16 * TiB}
    refused(b, "2041GiB", "VDI_TOO_LARGE")
    e = refused(b, "+17GiB", "SR_FULL")
    assert _p(e) == {"requested": 17 * GiB, "maximum": 16 * GiB}
    refused(a, "+abc", "INVALID_VALUE")
    # attached without online=true
    _make_running(st, vm, disks["h1"])
    before = st.state()
    e = refused(a, "+1GiB", "VDI_IN_USE")
    assert _p(e) == {"vdi": a, "operation": "resize"}
    refused(b, "+1GiB", "SR_OPERATION_NOT_SUPPORTED", online="true")
    # shrink is checked before holding
    refused(a, "1GiB", "SR_BACKEND_FAILURE_79")
    # suspended: refused (and online, by the SR type first)
    _halt(st, vm, "halted")
    from vmctl.store.txn import Store

    s = Store(st.db)
    s.run(
        lambda txn: txn.update("vm", vm, {"power-state": "suspended"}),
        True,
        finish=lambda txn: s.append_journal(txn, "test"),
    )
    s.dispose()
    before = st.state()
    refused(a, "+1GiB", "VDI_IN_USE")
    refused(a, "+1GiB", "SR_OPERATION_NOT_SUPPORTED", online="true")


def test_vdi_resize_readonly_and_base_copy(st, disks):
    a = disks["a"]
    snap = st("vdi-snapshot", uuid=a)
    assert st.err("vdi-resize", uuid=snap, **{"disk-size": "+1GiB"}).code == "VDI_READONLY"
    base = st.get("vdi", a, "parent")
    e = st.err("vdi-resize", uuid=base, **{"disk-size": "+1GiB"})
    assert e.code == "VDI_NOT_MANAGED"
    assert st("vdi-list", params="uuid", uuid=base) == []  # hidden without --all
    assert len(st("vdi-list", params="uuid", uuid=base, **{"--all": True})) == 1


def test_vdi_clone_snapshot_destroy_merge(st, disks):
    b, lvm = disks["b"], disks["lvm"]  # thick 4 GiB on a 20 GiB SR
    used = lambda: st.get("sr", lvm, "physical-utilisation")  # noqa: E731
    assert used() == 4 * GiB
    c = st("vdi-clone", uuid=b, **{"new-name-label": "c"})
    base = st.get("vdi", b, "parent")
    assert st.get("vdi", c, "parent") == base and st.get("vdi", base, "managed") is False
    assert st.get("vdi", base, "name-label") == "base copy" and st.get("vdi", base, "read-only") is True
    assert used() == 12 * GiB  # base copy keeps the old blocks, the source and the clone reserve again
    s = st("vdi-snapshot", uuid=b)
    assert st.get("vdi", s, "is-a-snapshot") is True and st.get("vdi", s, "snapshot-of") == b
    assert st.get("vdi", s, "physical-utilisation") == 0 and used() == 16 * GiB
    e = st.err("vdi-clone", uuid=b)
    assert e.code == "SR_FULL" and _p(e) == {"requested": 8 * GiB, "maximum": 4 * GiB}
    assert st.err("vdi-destroy", uuid=base).code == "VDI_NOT_MANAGED"
    st("vdi-destroy", uuid=s)  # b's second base copy has one child left: merged into b
    assert used() == 12 * GiB and st.get("vdi", b, "parent") == base
    st("vdi-destroy", uuid=c)
    assert used() == 4 * GiB and st.get("vdi", b, "parent") == ""
    assert st("vdi-list", **{"--all": True, "sr": lvm, "params": "uuid"}) == [{"uuid": b}]
    assert st("db-check") == "db-check: all 16 invariants hold\n"
    assert st("vdi-destroy", uuid=c, **{"--if-exists": True}) is None


def test_chain_limit(st):
    sr = st("sr-create", **{"name-label": "s", "type": "ext", "physical-size": "10GiB", "host": "h1"})
    v = st("vdi-create", **{"sr-uuid": sr, "name-label": "d", "virtual-size": "1GiB"})
    words = ["vdi-snapshot", f"uuid={v}"]
    chain = []
    for _ in range(30):
        chain += words + ["--"]
    p = st.cli(*chain[:-1])
    assert p.returncode == 0, p.stderr
    p = st.cli("vdi-snapshot", f"uuid={v}")
    assert p.returncode == 1 and p.stderr.startswith("vmctl: SR_BACKEND_FAILURE_109:")
    assert "reason: VDI chain deeper than 30" in p.stderr
    assert st.cli("vdi-clone", f"uuid={v}").returncode == 1
    assert st("db-check") == "db-check: all 16 invariants hold\n"


def test_vdi_copy(st, disks):
    a, b, ext, lvm = disks["a"], disks["b"], disks["ext"], disks["lvm"]
    st("vdi-param-set", uuid=a, **{"physical-utilisation": "1GiB"})
    snap = st("vdi-snapshot", uuid=a)
    st("vdi-param-set", uuid=a, **{"physical-utilisation": "512MiB"})
    # thin copy of a: bytes along the chain (512 MiB + the base copy's 1 GiB)
    c = st("vdi-copy", uuid=a, **{"sr-uuid": ext})
    assert st.get("vdi", c, "physical-utilisation") == GiB + 512 * MiB and st.get("vdi", c, "parent") == ""
    c2 = st("vdi-copy", uuid=snap, **{"sr-uuid": lvm})  # provisioning kept (thin) on a thick SR
    assert st.get("vdi", c2, "provisioning") == "thin" and st.get("vdi", c2, "physical-utilisation") == GiB
    c3 = st("vdi-copy", uuid=a, **{"sr-uuid": lvm, "provisioning": "thick-lazy"})
    assert st.get("vdi", c3, "physical-utilisation") == 4 * GiB
    # explain reports the bytes copied
    p = st.cli("vdi-copy", f"uuid={a}", f"sr-uuid={ext}", "--explain")
    assert p.returncode == 0 and f"# bytes to copy: {GiB + 512 * MiB}" in p.stdout
    assert st.err("vdi-copy", uuid=a).code == "MISSING_PARAMETER"
    assert st.err("vdi-copy", uuid=a, **{"sr-uuid": ext, "into-vdi-uuid": b}).code == "INVALID_VALUE"
    st("vdi-create", **{"sr-uuid": lvm, "name-label": "filler", "virtual-size": "10GiB"})
    e = st.err("vdi-copy", uuid=b, **{"sr-uuid": lvm})  # 4 GiB thick into 1 GiB free
    assert e.code == "SR_FULL" and _p(e) == {"requested": 4 * GiB, "maximum": GiB}
    small = st("vdi-create", **{"sr-uuid": ext, "name-label": "small", "virtual-size": "1GiB"})
    e = st.err("vdi-copy", uuid=a, **{"into-vdi-uuid": small})
    assert e.code == "VDI_TOO_SMALL" and _p(e) == {"vdi": small, "minimum": 4 * GiB}
    assert st.err("vdi-copy", uuid=a, **{"into-vdi-uuid": snap}).code == "VDI_READONLY"
    st("vdi-copy", uuid=a, **{"into-vdi-uuid": c})
    # source held read-write
    _make_running(st, disks["vm"], disks["h1"])
    e = st.err("vdi-copy", uuid=a, **{"sr-uuid": ext})
    assert e.code == "VDI_IN_USE" and _p(e)["operation"] == "copy"
    e = st.err("vdi-copy", uuid=c, **{"into-vdi-uuid": a})
    assert e.code == "VDI_IN_USE"
    assert st("db-check") == "db-check: all 16 invariants hold\n"


def test_vdi_param_rules(st, disks):
    a, b = disks["a"], disks["b"]
    st("vdi-param-set", uuid=a, **{"physical-utilisation": "2GiB", "name-label": "renamed"})
    assert st.get("vdi", a, "physical-utilisation") == 2 * GiB and st.get("vdi", a, "name-label") == "renamed"
    assert st.err("vdi-param-set", uuid=a, **{"physical-utilisation": "5GiB"}).code == "INVALID_VALUE"
    assert st.err("vdi-param-set", uuid=b, **{"physical-utilisation": "1GiB"}).code == "FIELD_READ_ONLY"
    assert st.err("vdi-param-set", uuid=a, **{"virtual-size": "1GiB"}).code == "FIELD_READ_ONLY"
    st("sr-param-set", uuid=disks["ext"], **{"physical-size": "3GiB"})
    e = st.err("vdi-param-set", uuid=a, **{"physical-utilisation": "4GiB"})
    assert e.code == "SR_FULL" and _p(e) == {"requested": 2 * GiB, "maximum": GiB}
    st("vdi-param-set", uuid=a, sharable="true")
    _make_running(st, disks["vm"], disks["h1"])
    e = st.err("vdi-param-set", uuid=a, sharable="false")
    assert e.code == "VDI_IN_USE"


# --- VBDs and holding ------------------------------------------------------------------------------
def test_vbd_create_check_order(st, disks):
    vm, a, ext = disks["vm"], disks["a"], disks["ext"]
    ro = st("vdi-create", **{"sr-uuid": ext, "name-label": "ro", "virtual-size": "1GiB", "read-only": "true"})
    # xapi_vbd.create: the disk rules (VDI_READONLY...) before the device number
    e = st.err("vbd-create", **{"vm-uuid": vm, "device": str(1 << 20), "vdi-uuid": ro})
    assert e.code == "VDI_READONLY"
    e = st.err("vbd-create", **{"vm-uuid": vm, "device": str(1 << 20), "vdi-uuid": ro, "mode": "RO"})
    assert e.code == "INVALID_DEVICE"
    # --may-exist looks for the device first: a number beyond any integer column is still just invalid
    p = st.cli(
        "vbd-create", f"vm-uuid={vm}", "device=" + "9" * 26, f"vdi-uuid={ro}", "mode=RO", "--may-exist"
    )
    assert p.returncode == 1 and p.stderr.startswith("vmctl: INVALID_DEVICE:"), p.stderr
    e = st.err("vbd-create", **{"vm-uuid": vm, "device": "0", "vdi-uuid": ro, "mode": "RO"})
    assert e.code == "DEVICE_ALREADY_EXISTS" and _p(e) == {"device": 0}
    assert (
        st.err("vbd-create", **{"vm-uuid": vm, "device": "5", "type": "cd", "mode": "RW"}).code
        == "VBD_CDS_MUST_BE_READONLY"
    )
    e = st.err("vbd-create", **{"vm-uuid": vm, "device": "5"})
    assert e.code == "MISSING_PARAMETER" and _p(e) == {"name": "vdi-uuid"}
    assert st.err("vbd-create", **{"vm-uuid": vm, "device": "5", "vdi-uuid": ro}).code == "VDI_READONLY"
    base = st.get("vdi", st.get("vdi", st("vdi-snapshot", uuid=a), "snapshot-of"), "parent")
    e = st.err("vbd-create", **{"vm-uuid": vm, "device": "5", "vdi-uuid": base, "mode": "RO"})
    assert e.code == "VDI_NOT_MANAGED"
    cd = st("vbd-create", **{"vm-uuid": vm, "device": "autodetect", "type": "cd"})
    assert (
        st.get("vbd", cd, "device") == 2
        and st.get("vbd", cd, "mode") == "RO"
        and st.get("vbd", cd, "vdi") == ""
    )
    r = st("vbd-create", **{"vm-uuid": vm, "device": "3", "vdi-uuid": ro, "mode": "RO"})
    assert st("vbd-create", **{"vm-uuid": vm, "device": "3", "vdi-uuid": ro, "--may-exist": True}) == r
    snap = st("vm-snapshot", vm=vm, **{"new-name-label": "s"})
    assert (
        st.err("vbd-create", **{"vm-uuid": snap, "device": "9", "vdi-uuid": ro, "mode": "RO"}).code
        == "VM_IS_SNAPSHOT"
    )


def test_lifecycle_hooks_plug_unplug_destroy(st, disks):
    vm, a, h1 = disks["vm"], disks["a"], disks["h1"]
    cd = st("vbd-create", **{"vm-uuid": vm, "device": "3", "type": "cd"})
    e = st.err("vbd-plug", uuid=cd)
    assert e.code == "VM_BAD_POWER_STATE" and _p(e)["expected"] == "running"
    _make_running(st, vm, h1)
    vbds = st("vbd-list", params="all", vm=vm)
    assert vbds and all(b["currently-attached"] for b in vbds)
    e = st.err("vbd-plug", uuid=cd)
    assert e.code == "DEVICE_ALREADY_ATTACHED"
    disk = [b for b in vbds if b["vdi"] == a][0]["uuid"]
    e = st.err("vbd-destroy", uuid=disk)
    assert e.code == "OPERATION_NOT_ALLOWED" and _p(e) == {"reason": "VBD is attached"}
    st("vbd-param-set", uuid=disk, unpluggable="false")
    assert st.err("vbd-unplug", uuid=disk).code == "VBD_NOT_UNPLUGGABLE"
    st("vbd-param-set", uuid=disk, unpluggable="true")
    st("vbd-unplug", uuid=disk)
    assert st.err("vbd-unplug", uuid=disk).code == "DEVICE_ALREADY_DETACHED"
    # another running VM cannot take the disk read-write (holding rule) ...
    other = st("vm-create", **{"name-label": "w"})
    o_vbd = st("vbd-create", **{"vm-uuid": other, "device": "0", "vdi-uuid": a})
    _make_running(st, other, h1)  # a test shortcut past vm-start's boot checks
    assert storage.holding_conflicts is not None
    e = st.err("vbd-plug", uuid=disk)
    assert e.code == "VDI_IN_USE" and _p(e) == {"vdi": a, "operation": "plug"}
    _halt(st, other)
    st("vbd-destroy", uuid=o_vbd)
    st("vbd-plug", uuid=disk)
    # SR not visible from the resident host
    pbd = st("pbd-list", params="all", sr=disks["ext"])[0]["uuid"]
    st("vbd-unplug", uuid=disk)
    from vmctl.store.txn import Store

    s = Store(st.db)
    s.run(
        lambda txn: txn.update("pbd", pbd, {"currently-attached": False}),
        True,
        finish=lambda txn: s.append_journal(txn, "test"),
    )
    s.dispose()
    e = st.err("vbd-plug", uuid=disk)
    assert e.code == "VM_REQUIRES_SR" and _p(e) == {"vm": vm, "sr": disks["ext"]}
    _halt(st, vm)
    assert not any(b["currently-attached"] for b in st("vbd-list", params="all", vm=vm))
    st("vbd-destroy", uuid=disk)
    assert st("vbd-destroy", uuid=disk, **{"--if-exists": True}) is None


def test_storage_helpers(st, disks):
    from vmctl.store.txn import Store

    vm, h1 = disks["vm"], disks["h1"]
    other = st("vm-create", **{"name-label": "w"})
    st("vbd-create", **{"vm-uuid": other, "device": "0", "vdi-uuid": disks["a"], "mode": "RO"})
    h2 = st("host-list", **{"name-label": "h2"})[0]["uuid"]
    s = Store(st.db)

    def body(txn):
        v = txn.get("vm", vm)
        assert storage.vm_srs(txn, v) == {disks["ext"], disks["lvm"]}
        assert storage.sr_visible(txn, disks["ext"], h1) and not storage.sr_visible(txn, disks["ext"], h2)
        assert storage.sr_free_space(txn, disks["lvm"]) == 16 * GiB
        with pytest.raises(VmctlError) as ei:
            storage.check_space(txn, {disks["lvm"]: 17 * GiB})
        assert ei.value.code == "SR_FULL"
        storage.check_space(txn, {disks["lvm"]: 16 * GiB})
        assert storage.holding_conflicts(txn, v, "start") == []
        txn.update("vm", other, {"power-state": "suspended"})
        errs = storage.holding_conflicts(txn, v, "start")
        assert [e.code for e in errs] == ["VDI_IN_USE"] and dict(errs[0].params)["operation"] == "start"
        return None

    s.run(body, False)
    s.dispose()


def test_db_check_storage_invariants_and_fix(st, disks):
    """I11: a base copy left with one child is reported and merged by --fix; I12: a VBD attached
    while its SR is invisible from the VM's host is reported and detached by --fix."""
    from vmctl.store.txn import Store

    a, vm, h1 = disks["a"], disks["vm"], disks["h1"]
    st("vdi-param-set", uuid=a, **{"physical-utilisation": "1GiB"})
    snap = st("vdi-snapshot", uuid=a)
    base = st.get("vdi", a, "parent")
    _make_running(st, vm, h1)
    pbd = st("pbd-list", params="all", sr=disks["ext"])[0]["uuid"]
    s = Store(st.db)

    def corrupt(txn):
        txn.delete("vdi", snap)  # behind the commands' back: the merge rule did not run
        txn.update("pbd", pbd, {"currently-attached": False})

    s.run(corrupt, True, finish=lambda txn: s.append_journal(txn, "test"))
    s.dispose()
    p = st.cli("db-check")
    assert p.returncode == 1
    assert f"I11 vdi {base}: base copy with 1 children" in p.stdout
    assert "I12 vbd " in p.stdout and "SR is not visible" in p.stdout
    p = st.cli("db-check", "--fix")
    assert p.returncode == 0, p.stdout
    lines = p.stdout.splitlines()
    assert lines[-1] == "db-check: all 16 invariants hold", p.stdout
    assert f"fixed I11 vdi {base}: merged the lone base copy into its child" in lines
    assert any(x.startswith("fixed I12 vbd ") and x.endswith(": marked it detached") for x in lines)
    assert len(lines) == 3, p.stdout
    assert st.get("vdi", a, "parent") == "" and st.get("vdi", a, "physical-utilisation") == GiB


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_sr_forget_scan_dry_run_and_selectors(st):
    sr = st("sr-create", **{"name-label": "s", "type": "nfs", "physical-size": "10GiB"})
    v = st("vdi-create", **{"sr-uuid": sr, "name-label": "d", "virtual-size": "1GiB"})
    # a dry run prints the uuid it would create and commits nothing
    p = st.cli("--dry-run", "vdi-create", f"sr-uuid={sr}", "name-label=dry", "virtual-size=1GiB")
    assert p.returncode == 0 and len(p.stdout.strip()) == 36
    assert [d["name-label"] for d in st("vdi-list")] == ["d"]
    # sr-scan merges what a crash left behind and prints nothing
    from vmctl.store.txn import Store

    snap = st("vdi-snapshot", uuid=v)
    s = Store(st.db)
    s.run(lambda txn: txn.delete("vdi", snap), True, finish=lambda txn: s.append_journal(txn, "test"))
    s.dispose()
    p = st.cli("sr-scan", f"uuid={sr}")
    assert p.returncode == 0 and p.stdout == "" and st.get("vdi", v, "parent") == ""
    # vm-snapshot selects VMs like the other selector commands
    for name in ("a", "b"):
        vm = st("vm-create", **{"name-label": name})
        st(
            "vbd-create",
            **{
                "vm-uuid": vm,
                "device": "0",
                "vdi-uuid": st("vdi-create", **{"sr-uuid": sr, "name-label": name, "virtual-size": "1GiB"}),
            },
        )
    p = st.cli("vm-snapshot", "power-state=halted", "new-name-label=x")
    assert p.returncode == 1 and p.stderr.startswith("vmctl: MULTIPLE_MATCHES:")
    p = st.cli("vm-snapshot", "power-state=halted", "new-name-label=x", "--multiple")
    assert p.returncode == 0 and len(p.stdout.split()) == 2
    assert len(st("snapshot-list")) == 2
    # sr-forget: the PBDs unplugged first (SR_HAS_PBD, xapi_sr.assert_all_pbds_unplugged), no
    # confirmation; VBDs of halted VMs need --force (README: Differences from XAPI)
    p = st.cli("sr-forget", f"uuid={sr}")
    assert p.returncode == 1 and p.stderr.startswith("vmctl: SR_HAS_PBD:")
    for pbd in st("pbd-list", sr=sr):
        st("pbd-unplug", uuid=pbd["uuid"])
    p = st.cli("sr-forget", f"uuid={sr}")
    assert p.returncode == 1 and p.stderr.startswith("vmctl: SR_NOT_EMPTY:")
    assert st.cli("sr-forget", f"uuid={sr}", "--force").returncode == 0
    assert st("sr-list") == [] and st("vdi-list", **{"--all": True}) == [] and st("vbd-list") == []
    assert st("db-check") == "db-check: all 16 invariants hold\n"


def test_param_set_physical_utilisation_with_other_fields(st):
    """vdi-param-set writes the read-only physical-utilisation only under the guest-write rule,
    after the plain fields of the same command; a refusal takes the whole command back."""
    sr = st("sr-create", **{"name-label": "nfs", "type": "nfs", "physical-size": "100GiB", "shared": "true"})
    thin = st("vdi-create", **{"sr-uuid": sr, "name-label": "thin", "virtual-size": "8GiB"})
    thick = st(
        "vdi-create",
        **{"sr-uuid": sr, "name-label": "thick", "virtual-size": "1GiB", "provisioning": "thick-eager"},
    )
    st("vdi-param-set", uuid=thin, **{"name-label": "written", "physical-utilisation": "1GiB"})
    st("vdi-param-set", uuid=thin, **{"physical-utilisation": "2GiB"})
    assert st.get("vdi", thin, "name-label") == "written"
    assert st.get("vdi", thin, "physical-utilisation") == 2 * GiB
    before = st.state()
    assert (
        st.err("vdi-param-set", uuid=thick, **{"name-label": "x", "physical-utilisation": "1"}).code
        == "FIELD_READ_ONLY"
    )
    assert (
        st.err("vdi-param-set", uuid=thin, **{"name-label": "x", "physical-utilisation": "9GiB"}).code
        == "INVALID_VALUE"
    )
    assert st.err("vdi-param-set", uuid=thin, **{"physical-utilisation": "lots"}).code == "FIELD_TYPE_ERROR"
    assert st.err("vdi-param-set", uuid=thin, **{"virtual-size": "1"}).code == "FIELD_READ_ONLY"
    assert st.state() == before
    assert "records guest writes" in st.cli("vdi-param-set", "--help").stdout
