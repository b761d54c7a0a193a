"""vm-migrate contract tests (engine.md §4.1–§4.3, model.md §2, §3.5): every check in order with its
code and nothing changed on failure, the dry-run prediction equal to the engine's numbers for the
§4.2 vectors, storage motion with its SR accounting, the move itself (residence, domid, VIF ports,
VBDs) and its journal entry.

Each scenario is built in one `vmctl batch -` process; the refused commands of the first module
fixture share one inventory, which must still equal its baseline at the end."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

# tests/conftest.py's runner, loaded by path: a plain `import conftest` may find tests/ovs/conftest.py
_spec = importlib.util.spec_from_file_location(
    "_vmctl_tests_conftest", Path(__file__).with_name("conftest.py")
)
_conftest = sys.modules.get("_vmctl_tests_conftest") or importlib.util.module_from_spec(_spec)
if "_vmctl_tests_conftest" not in sys.modules:
    sys.modules["_vmctl_tests_conftest"] = _conftest
    _spec.loader.exec_module(_conftest)
Inventory = _conftest.Inventory

GiB = 1024**3
MiB = 1024**2


def build(inv: Inventory, lines: list[str]) -> None:
    """Run the lines as one all-or-nothing batch (JSON strings are valid YAML scalars)."""
    inv.ok("batch", "-", input="".join(f"- {json.dumps(x)}\n" for x in lines))


def ids(inv: Inventory) -> dict[str, str]:
    """name-label → uuid for hosts, VMs, SRs, VDIs and networks, read in one invocation."""
    words = ["-f", "json"]
    for cls in ("host", "vm", "sr", "vdi", "network", "pool"):
        words += [f"{cls}-list", "params=uuid,name-label"] + (["--all"] if cls == "vm" else []) + ["--"]
    out: dict[str, str] = {}
    for rows in json.loads(inv.ok(*words[:-1])):
        for r in rows:
            out.setdefault(r["name-label"], r["uuid"])
    return out


def host_line(name: str, mem: str = "64GiB", flags: str = "a,b,c", extra: str = "", n: int = 0) -> str:
    return (
        f"host-add name-label={name} address=10.0.{n}.{abs(hash(name)) % 250 + 1} cpu-count=16 memory-total={mem} "
        f"pool=p1 cpu-vendor=GenuineIntel cpu-flags={flags} pifs=eth0 {extra}"
    ).strip()


# --- the refusals, in check order --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    inv = Inventory(tmp_path_factory.mktemp("migrate") / "inv.db")
    build(
        inv,
        [
            "pool-create name-label=p1",
            "host-add name-label=h1 address=10.0.0.1 cpu-count=16 memory-total=64GiB pool=p1 cpu-vendor=GenuineIntel "
            "cpu-flags=a,b,c software-version=1.2.0 pifs=eth0,eth1",
            "host-add name-label=h2 address=10.0.0.2 cpu-count=16 memory-total=64GiB pool=p1 cpu-vendor=GenuineIntel "
            "cpu-flags=a,b,c software-version=1.2.0",
            # a host joins at the pool's version only; an older one is a rolling upgrade in reverse
            "host-add name-label=old address=10.0.0.6 cpu-count=16 memory-total=64GiB pool=p1 cpu-vendor=GenuineIntel "
            "cpu-flags=a,b,c software-version=1.2.0",
            "host-disable host=old",
            "host-update host=old software-version=1.1.0",
            "host-enable host=old",
            "sr-create name-label=nfs type=nfs physical-size=1TiB shared=true",
            "sr-create name-label=small type=nfs physical-size=1GiB shared=true",
            "sr-create name-label=loc1 type=lvm physical-size=100GiB host=h1",
            # booted before h3 joins: its levelled flags still hold c
            "-- --id=@cpu vm-create name-label=cpu memory=1GiB",
            "vm-disk-add vm=@cpu disk-size=1GiB sr-uuid=nfs",
            "vm-start vm=@cpu on=h1",
            "host-add name-label=h3 address=10.0.0.3 cpu-count=16 memory-total=64GiB pool=p1 cpu-vendor=GenuineIntel "
            "cpu-flags=a,b software-version=1.2.0 --force",
            "host-add name-label=h4 address=10.0.0.4 cpu-count=16 memory-total=64GiB pool=p1 cpu-vendor=GenuineIntel "
            "cpu-flags=a,b,c software-version=1.2.0",
            "host-add name-label=h5 address=10.0.0.5 cpu-count=16 memory-total=4GiB pool=p1 cpu-vendor=GenuineIntel "
            "cpu-flags=a,b,c software-version=1.2.0",
            "host-disable host=h4",
            "pool-param-set uuid=p1 other-config:migration-cap-host=2",
            "-- --id=@web vm-create name-label=web memory=4GiB vcpus=2",
            "vm-disk-add vm=@web disk-size=10GiB sr-uuid=nfs",
            "vm-start vm=@web on=h1",
            # its network has a PIF on h1 only
            "-- --id=@net vm-create name-label=net memory=1GiB",
            "vif-create vm-uuid=@net network-uuid='Pool-wide network associated with eth1' device=0",
            "vm-start vm=@net on=h1",
            "-- --id=@blk vm-create name-label=blk memory=1GiB blocked-operations:pool_migrate=maintenance",
            "vm-start vm=@blk on=h1",
            "-- --id=@imm vm-create name-label=imm memory=1GiB platform:nomigrate=true",
            "vm-start vm=@imm on=h1",
            "-- --id=@halt vm-create name-label=halt memory=1GiB",
            "vm-disk-add vm=@halt disk-size=2GiB sr-uuid=loc1 name-label=halt-disk",
            "-- --id=@loc vm-create name-label=loc memory=2GiB",
            "vm-disk-add vm=@loc disk-size=10GiB sr-uuid=loc1 name-label=loc-disk",
            "vm-start vm=@loc on=h1",
            "-- --id=@hot vm-create name-label=hot memory=16GiB other-config:dirty-rate=100M",
            "vm-start vm=@hot on=h1",
            "-- --id=@t vm-create name-label=tmpl memory=1GiB",
            "vm-param-set uuid=@t is-a-template=true",
            # an HA pool of its own: x may not leave g1, a's failover target would be full
            "pool-create name-label=p2",
            "host-add name-label=g1 address=10.1.0.1 cpu-count=16 memory-total=128GiB pool=p2",
            "host-add name-label=g2 address=10.1.0.2 cpu-count=16 memory-total=64GiB pool=p2",
            "-- --id=@a vm-create name-label=a memory=30GiB pool=p2 ha-restart-priority=restart",
            "vm-start vm=@a on=g1",
            "-- --id=@x vm-create name-label=x memory=40GiB pool=p2",
            "vm-start vm=@x on=g1",
            "sr-create name-label=statefile type=nfs physical-size=1TiB pool=p2",
            "pool-ha-enable pool=p2 ha-host-failures-to-tolerate=1",
        ],
    )
    return inv, ids(inv), inv.snapshot()


def _cases(u: dict[str, str]) -> list[tuple[list[str], str, list[str]]]:
    """(arguments, expected code, expected stderr fragments), in engine.md §4.1's check order."""
    loc_disk, halt_disk = u["loc-disk"], u["halt-disk"]
    return [
        # model.md §0 (1) arguments, (2) resolution, (3) class
        (["vm-migrate"], "MISSING_PARAMETER", ["name: vm"]),
        (["vm-migrate", "vm=web", "bandwidth=0"], "INVALID_VALUE", ["bandwidth"]),
        (["vm-migrate", "vm=nope"], "UUID_INVALID", ["class: vm"]),
        (["vm-migrate", "vm=web", "host=nope"], "UUID_INVALID", ["class: host"]),
        (["vm-migrate", "vm=web", "vdi:00000000-0000-4000-8000-000000000000=nfs"], "UUID_INVALID", ["vdi"]),
        # xapi_vm_lifecycle.check_operation_error: a (halted) template fails the power state
        # before the template rule
        (["vm-migrate", "vm=tmpl", "host=h2"], "VM_BAD_POWER_STATE", ["expected: running"]),
        # model.md §0 (4) blocked operations: XAPI's pool_migrate, before any host check
        (["vm-migrate", "vm=blk", "host=h4"], "OPERATION_BLOCKED", ["pool_migrate", "maintenance"]),
        # 1. power state and immobility (before any destination check)
        (
            ["vm-migrate", "vm=halt", "host=h2"],
            "VM_BAD_POWER_STATE",
            ["expected: running", "actual: halted"],  # pool_migrate [Running] (xapi_vm_lifecycle)
        ),
        (["vm-migrate", "vm=halt", "host=h2", f"vdi:{halt_disk}=nfs"], "VM_BAD_POWER_STATE", []),
        (["vm-migrate", "vm=imm", "host=h4"], "VM_IS_IMMOBILE", [u["imm"]]),
        # 2. destination: the filters of engine.md §2.1 on host=, in filter order
        (["vm-migrate", "vm=web", "host=g1"], "NOT_IN_SAME_POOL", []),
        (["vm-migrate", "vm=web", "host=h4"], "HOST_DISABLED", [u["h4"]]),
        (["vm-migrate", "vm=cpu", "host=h3"], "VM_INCOMPATIBLE_WITH_THIS_HOST", ["missing flags: c"]),
        # message_forwarding VM.pool_migrate: an older host during a rolling upgrade
        (["vm-migrate", "vm=web", "host=old"], "NOT_SUPPORTED_DURING_UPGRADE", []),
        (
            ["vm-migrate", "vm=net", "host=h2"],
            "VM_REQUIRES_NETWORK",
            [u["Pool-wide network associated with eth1"]],
        ),
        (["vm-migrate", "vm=hot", "host=h5"], "HOST_NOT_ENOUGH_FREE_MEMORY", ["needed", "available"]),
        # 3. storage
        (["vm-migrate", "vm=loc", "host=h2"], "VM_REQUIRES_SR", ["vdi:<vdi-uuid>=<sr>", "sr: ", "(loc1)"]),
        (["vm-migrate", "vm=loc"], "VM_REQUIRES_SR", ["(loc1)"]),
        (["vm-migrate", "vm=web", "host=h2", f"vdi:{loc_disk}=nfs"], "INVALID_VALUE", [loc_disk]),
        (["vm-migrate", "vm=loc", "host=h2", f"vdi:{loc_disk}=loc1"], "VM_REQUIRES_SR", ["(loc1)"]),
        (
            ["vm-migrate", "vm=loc", "host=h2", f"vdi:{loc_disk}=small"],
            "SR_FULL",
            [f"requested: {10 * GiB}", "maximum: "],
        ),
        (["vm-migrate", "vm=halt", f"vdi:{halt_disk}=small"], "SR_FULL", [f"requested: {2 * GiB}"]),
        # 4. concurrency caps: storage motion costs 4 on each host, the pool allows 2
        (
            ["vm-migrate", "vm=loc", "host=h2", f"vdi:{loc_disk}=nfs"],
            "TOO_MANY_MIGRATIONS",
            ["resource: host:", "in-use: 0", "cap: 2"],
        ),
        # 5. convergence (16 GiB dirtied at 100 MiB/s over 128 MiB/s: the second §4.2 vector)
        (
            ["vm-migrate", "vm=hot", "host=h2"],
            "MIGRATION_WOULD_NOT_CONVERGE",
            ["predicted-downtime: 47.68", "downtime-target: 0.3", "required-bandwidth: 15"],
        ),
        # 6. HA admission
        (
            ["vm-migrate", "vm=x", "host=g2"],
            "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN",
            ["failures-to-tolerate: 1"],
        ),
    ]


def test_refusals_in_check_order(refusals):
    """All the refusals in one `batch --continue-on-error` (each item its own transaction, a failed
    item an {"error": ...} element), so the table stays cheap to run."""
    import shlex

    inv, u, _ = refusals
    cases = _cases(u)
    script = "".join(f"- {json.dumps(shlex.join(args))}\n" for args, _, _ in cases)
    r = inv.run("-f", "json", "batch", "--continue-on-error", "-", input=script)
    assert r.rc == 1
    results = json.loads(r.out)
    assert len(results) == len(cases)
    for (args, code, fragments), res in zip(cases, results):
        assert isinstance(res, dict) and "error" in res, (args, res)
        err = res["error"]
        assert err["code"] == code, (args, err)
        text = err["message"] + "\n" + "\n".join(f"{k}: {v}" for k, v in err["params"].items())
        for f in fragments:
            assert f in text, (args, f, text)


@pytest.mark.parametrize(
    "args,code,lines",
    [
        # argument errors are found while binding the command line, before anything runs
        (["vm-migrate", "vm=web", "downtime=soon"], "INVALID_VALUE", ["  name: downtime", "  value: soon"]),
        (["vm-migrate", "vm=web", "host=h2", "live=maybe"], "INVALID_VALUE", ["live"]),
        (["vm-migrate", "vm=imm", "host=h4"], "VM_IS_IMMOBILE", ["  vm: "]),
        (
            ["vm-migrate", "vm=hot", "host=h2"],
            "MIGRATION_WOULD_NOT_CONVERGE",
            ["  predicted-downtime: 47.68", "  downtime-target: 0.3", "  required-bandwidth: 15"],
        ),
        (["vm-migrate", "vm=loc", "host=h2"], "VM_REQUIRES_SR", ["vdi:<vdi-uuid>=<sr>", "  sr: "]),
    ],
)
def test_refusal_stderr(refusals, args, code, lines):
    inv, _, _ = refusals
    r = inv.fail(*args, code=code)
    for line in lines:
        assert line in r.err


def test_refusals_changed_nothing(refusals):
    inv, u, before = refusals
    # dry runs and the no-op (host= the current host) leave nothing either
    assert inv.ok("vm-migrate", "vm=web", "host=h1") == ""
    assert inv.ok("vm-migrate", "vm=web", "host=h1", f"vdi:{u['web 0']}=nfs") == ""  # disk already there
    assert inv.ok("vm-migrate", "vm=web", "host=h2", "--dry-run").splitlines()[0] == u["h2"]
    assert inv.snapshot() == before


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_force_skips_cpu_immobility_and_convergence_only(refusals, tmp_path):
    inv, u, _ = refusals
    # --force skips the cpu filter, platform:nomigrate and convergence...
    assert inv.ok("vm-migrate", "vm=cpu", "host=h3", "--force", "--dry-run").splitlines()[0] == u["h3"]
    assert inv.ok("vm-migrate", "vm=imm", "host=h2", "--force", "--dry-run").splitlines()[0] == u["h2"]
    out = inv.ok("vm-migrate", "vm=hot", "host=h2", "--force", "--dry-run", "-f", "json")
    assert json.loads(out)["stop-reason"] == "byte-cap"
    # ...but never capacity, enabled, reachability or the caps
    inv.fail("vm-migrate", "vm=hot", "host=h5", "--force", code="HOST_NOT_ENOUGH_FREE_MEMORY")
    inv.fail("vm-migrate", "vm=web", "host=h4", "--force", code="HOST_DISABLED")
    inv.fail("vm-migrate", "vm=loc", "host=h2", "--force", code="VM_REQUIRES_SR")


# --- the §4.2 vectors printed by a dry run -------------------------------------------------------------------
def _closed_form(M: float, D: float, R: float, k: int) -> tuple[float, float, float]:
    lam = D / R
    sent = (k + 1) * M if lam == 1 else M * (1 - lam ** (k + 1)) / (1 - lam)
    return sent, sent / R, M * lam**k / R


@pytest.fixture
def vec(inv):
    build(
        inv,
        [
            "pool-create name-label=p1",
            "host-add name-label=h1 address=10.0.0.1 cpu-count=16 memory-total=64GiB pool=p1",
            "host-add name-label=h2 address=10.0.0.2 cpu-count=16 memory-total=64GiB pool=p1",
            "-- --id=@v vm-create name-label=v memory=16GiB other-config:dirty-rate=100M",
            "vm-start vm=@v on=h1",
        ],
    )
    return inv


@pytest.mark.slow
def test_prediction_vectors_equal_the_engine(vec):
    from vmctl.engine import migration as mg

    inv = vec
    u = ids(inv)
    M = 16 * GiB
    # vector 1: the bandwidth through the pool field, the dirty rate through the VM's other-config
    words = [
        "pool-param-set",
        "uuid=p1",
        "migration-stream-bandwidth=1190M",
        "--",
        "vm-migrate",
        "vm=v",
        "--dry-run",
    ]
    text = inv.ok(*words)
    lines = dict(line.split(None, 1) for line in text.splitlines()[1:])
    assert text.splitlines()[0] == u["h2"]
    assert lines["rounds"] == "2"
    assert lines["bytes"] == "17.5 GiB"  # 17,876.50 MiB
    assert lines["total-time"] == "15.02 s"
    assert lines["downtime"] == "97.2 ms"
    assert lines["stop-reason"] == "converged"
    d = json.loads(inv.ok("-f", "json", *words))[1]
    e = mg.predict(M, 100 * MiB, 1190 * MiB)
    sent, total, down = _closed_form(M, 100 * MiB, 1190 * MiB, 2)
    assert d["host"] == u["h2"] and d["rounds"] == e.rounds == 2
    for key, want in (("bytes", sent), ("total-time", total), ("downtime", down)):
        assert math.isclose(d[key], want, rel_tol=1e-9), key
    assert math.isclose(d["bytes"] / MiB, 17876.50, rel_tol=1e-6)
    assert d["converges"] is True and d["stop-reason"] == "converged"

    # vector 2: bandwidth= at 128 MiB/s does not converge: refused, printed with --force
    inv.fail("vm-migrate", "vm=v", "bandwidth=128M", "--dry-run", code="MIGRATION_WOULD_NOT_CONVERGE")
    d = json.loads(inv.ok("vm-migrate", "vm=v", "bandwidth=128M", "--force", "--dry-run", "-f", "json"))
    sent, total, down = _closed_form(M, 100 * MiB, 128 * MiB, 4)
    assert d["rounds"] == 4 and d["stop-reason"] == "byte-cap" and d["converges"] is False
    assert math.isclose(d["bytes"], sent, rel_tol=1e-9) and math.isclose(d["bytes"] / M, 3.2410, rel_tol=1e-4)
    assert math.isclose(d["total-time"], total, rel_tol=1e-9) and round(d["total-time"], 2) == 414.84
    assert math.isclose(d["downtime"], down, rel_tol=1e-9) and round(d["downtime"], 2) == 47.68
    assert abs(d["hints"]["required-bandwidth"] / MiB - 149.8) < 0.1
    assert d["hints"]["cold-downtime"] == M / (128 * MiB)

    # vector 3: an idle guest (dirty rate 0) at 128 MiB/s
    text = inv.ok(
        "vm-param-set",
        "uuid=v",
        "other-config:dirty-rate=0",
        "--",
        "vm-migrate",
        "vm=v",
        "bandwidth=128M",
        "--dry-run",
    )
    lines = dict(line.split(None, 1) for line in text.splitlines()[1:])
    assert (lines["rounds"], lines["bytes"], lines["total-time"], lines["downtime"]) == (
        "1",
        "16 GiB",
        "2m08s",
        "0 ms",
    )
    # nothing of it was committed
    assert "migration" not in inv.ok("vm-param-get", "uuid=v", "param-name=other-config")


def test_downtime_argument_sets_the_target(vec):
    d = json.loads(
        vec.ok("vm-migrate", "vm=v", "bandwidth=1190M", "downtime=50ms", "--dry-run", "-f", "json", "--force")
    )
    assert d["downtime-target"] == 0.05
    assert d["rounds"] == 3  # 16 GiB·λ² / R = 97 ms > 50 ms, λ³ gives 8 ms


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_prediction_in_csv_tsv_and_minimal(vec):
    """The machine formats carry the same figures as JSON: one row per VM; --minimal prints the
    destination, as vm-start --dry-run does."""
    import csv
    import io

    u = ids(vec)
    args = ("vm-migrate", "vm=v", "bandwidth=128M", "--force", "--dry-run")
    d = json.loads(vec.ok(*args, "-f", "json"))
    rows = list(csv.DictReader(io.StringIO(vec.ok(*args, "-f", "csv"))))
    assert len(rows) == 1 and rows[0]["vm"] == u["v"] and rows[0]["host"] == u["h2"]
    for key in ("rounds", "bytes", "total-time", "downtime"):
        assert float(rows[0][key]) == pytest.approx(d[key], rel=1e-12), key
    assert rows[0]["stop-reason"] == "byte-cap" and rows[0]["converges"] == "false"
    assert float(rows[0]["required-bandwidth"]) == pytest.approx(d["hints"]["required-bandwidth"])
    tsv = vec.ok(*args, "-f", "tsv", "--no-headings").splitlines()
    assert len(tsv) == 1 and tsv[0].split("\t")[:2] == [u["v"], u["h2"]]
    assert vec.ok(*args, "--minimal") == u["h2"] + "\n"


# --- the move --------------------------------------------------------------------------------------------
@pytest.fixture
def moving(inv):
    build(
        inv,
        [
            "pool-create name-label=p1",
            "host-add name-label=h1 address=10.0.0.1 cpu-count=16 memory-total=64GiB pool=p1",
            "host-add name-label=h2 address=10.0.0.2 cpu-count=16 memory-total=64GiB pool=p1",
            "sr-create name-label=nfs type=nfs physical-size=1TiB shared=true",
            "sr-create name-label=loc1 type=lvm physical-size=100GiB host=h1",
            "-- --id=@w vm-create name-label=web memory=4GiB vcpus=2",
            "vm-disk-add vm=@w disk-size=10GiB sr-uuid=nfs",
            "vif-create vm-uuid=@w network-uuid='Pool-wide network associated with eth0' device=0",
            "vm-start vm=@w on=h1",
            "-- --id=@o vm-create name-label=other memory=1GiB",
            "vm-start vm=@o on=h2",
            "-- --id=@l vm-create name-label=loc memory=2GiB",
            "vm-disk-add vm=@l disk-size=10GiB sr-uuid=loc1 name-label=loc-disk",
            "vm-start vm=@l on=h1",
            "-- --id=@c vm-create name-label=cold memory=1GiB",
            "vm-disk-add vm=@c disk-size=4GiB sr-uuid=loc1 name-label=cold-disk",
        ],
    )
    return inv


def test_live_migration_moves_residence_ports_and_journal(moving):
    inv = moving
    u = ids(inv)
    assert inv.ok("vm-migrate", "vm=web", "host=h2", "live=true") == ""
    rows = json.loads(
        inv.ok("vm-list", "params=uuid,resident-on,domid,power-state,other-config", "-f", "json")
    )
    web = next(r for r in rows if r["uuid"] == u["web"])
    assert web["resident-on"] == u["h2"] and web["power-state"] == "running"
    assert web["domid"] == 2  # "other" holds domid 1 on h2
    rec = json.loads(web["other-config"]["last-migration"])
    assert rec["from"] == u["h1"] and rec["to"] == u["h2"] and rec["stop-reason"] == "converged"
    assert rec["rounds"] >= 1 and rec["bytes"] >= 4 * GiB
    # the VIF port followed the VM (network.md: vif<domid>.<device>)
    assert "vif2.0" in inv.ok("--host=h2", "show") and "vif" not in inv.ok("--host=h1", "show")
    vbd = json.loads(inv.ok("vbd-list", f"vm={u['web']}", "params=currently-attached", "-f", "json"))
    assert vbd and all(b["currently-attached"] for b in vbd)
    j = json.loads(inv.ok("journal-list", f"object={u['web']}", "params=all", "-f", "json"))
    last = j[-1]
    assert last["command"].endswith("vm-migrate vm=web host=h2 live=true")
    change = (
        last["changes"][f"vm:{u['web']}"]
        if f"vm:{u['web']}" in last["changes"]
        else last["changes"][u["web"]]
    )
    assert change["resident-on"] == [u["h1"], u["h2"]]
    inv.ok("db-check")
    # back again without host=: the engine chooses the only other host
    inv.ok("vm-migrate", "vm=web")
    assert inv.ok("vm-param-get", f"uuid={u['web']}", "param-name=resident-on").strip() == u["h1"]
    assert len(json.loads(inv.ok("journal-list", f"object={u['web']}", "-f", "json"))) == len(j) + 1


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_storage_motion_accounts_like_vdi_copy(moving):
    inv = moving
    u = ids(inv)
    before = {r["name-label"]: r for r in json.loads(inv.ok("sr-list", "params=all", "-f", "json"))}
    old = u["loc-disk"]
    out = json.loads(inv.ok("vm-migrate", "vm=loc", "host=h2", f"vdi:{old}=nfs", "--dry-run", "-f", "json"))
    assert out["host"] == u["h2"] and out["storage-bytes"] == 10 * GiB  # thick: its virtual-size is written
    assert out["total-time"] > out["storage-bytes"] / out["rate"]
    inv.ok("vm-migrate", "vm=loc", "host=h2", f"vdi:{old}=nfs")
    after = {r["name-label"]: r for r in json.loads(inv.ok("sr-list", "params=all", "-f", "json"))}
    assert after["nfs"]["physical-utilisation"] == before["nfs"]["physical-utilisation"] + 10 * GiB
    assert after["loc1"]["physical-utilisation"] == before["loc1"]["physical-utilisation"] - 10 * GiB
    vdis = json.loads(inv.ok("vdi-list", "params=uuid,name-label,sr,virtual-size,provisioning", "-f", "json"))
    assert old not in {d["uuid"] for d in vdis}
    new = next(d for d in vdis if d["name-label"] == "loc-disk")
    assert new["sr"] == u["nfs"] and new["virtual-size"] == 10 * GiB and new["provisioning"] == "thick-lazy"
    vbd = json.loads(inv.ok("vbd-list", f"vm={u['loc']}", "params=vdi,currently-attached", "-f", "json"))
    assert vbd == [{"vdi": new["uuid"], "currently-attached": True}]
    assert inv.ok("vm-param-get", f"uuid={u['loc']}", "param-name=resident-on").strip() == u["h2"]
    rec = json.loads(
        inv.ok("vm-param-get", f"uuid={u['loc']}", "param-name=other-config", "param-key=last-migration")
    )
    assert rec["vdis"] == {old: new["uuid"]} and rec["storage-bytes"] == 10 * GiB
    inv.ok("db-check")


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_halted_vm_moves_storage_only(moving):
    inv = moving
    u = ids(inv)
    old = u["cold-disk"]
    inv.fail("vm-migrate", "vm=cold", code="VM_BAD_POWER_STATE")
    out = json.loads(inv.ok("vm-migrate", "vm=cold", f"vdi:{old}=nfs", "--dry-run", "-f", "json"))
    assert out["host"] == "" and out["storage-bytes"] == 4 * GiB and out["downtime"] == 0
    inv.ok("vm-migrate", "vm=cold", f"vdi:{old}=nfs")
    vm = json.loads(inv.ok("vm-param-list", f"uuid={u['cold']}", "-f", "json"))
    assert vm["power-state"] == "halted" and vm["resident-on"] == ""
    vdis = json.loads(inv.ok("vdi-list", "params=uuid,name-label,sr", "-f", "json"))
    assert [d["sr"] for d in vdis if d["name-label"] == "cold-disk"] == [u["nfs"]]
    assert len(json.loads(inv.ok("journal-list", f"object={u['cold']}", "-f", "json"))) == 2
    inv.ok("db-check")


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_chain_and_multiple(moving):
    inv = moving
    u = ids(inv)
    # a refused migration later in a chain undoes the earlier one
    inv.fail("vm-migrate", "vm=web", "host=h2", "--", "vm-migrate", "vm=loc", "host=h2")
    assert inv.ok("vm-param-get", f"uuid={u['web']}", "param-name=resident-on").strip() == u["h1"]
    # several VMs need --multiple
    inv.fail("vm-migrate", "power-state=running", "host=h2", code="MULTIPLE_MATCHES")
    inv.ok("vm-migrate", "power-state=running", "resident-on=" + u["h2"], "host=h1", "--multiple")
    assert inv.ok("vm-param-get", f"uuid={u['other']}", "param-name=resident-on").strip() == u["h1"]
    inv.ok("db-check")
