"""Storage accounting property (model.md §3.5, §3.9, I9, I11): for any sequence of create,
resize, clone, copy, snapshot, guest write and destroy, every SR's physical-utilisation is the
sum of its VDIs', never exceeds its physical-size, thick writable leaves use their full size,
each successful command consumes exactly what the model says, and SR_FULL changes nothing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmctl.cli.bind import bind, lookup
from vmctl.cli.grammar import Segment
from vmctl.errors import VmctlError
from vmctl.runner import Options
from vmctl.runner import Runner as CommandRunner
from vmctl.store.txn import Store

MiB, GiB = 1024**2, 1024**3


class Runner:
    """Runs commands against one Store (no engine re-creation per command)."""

    def __init__(self, db: str):
        self.opts = Options(db=db, quiet=True)
        self.store = Store(db)

    def run(self, name: str, *words: str):
        b = bind(lookup(name), Segment(name=name, args=list(words)))
        return CommandRunner(self.opts, f"test {name}").run([b], store=self.store)[0]

    def rows(self, cls: str) -> dict[str, dict]:
        r = self.run(f"{cls}-list", "params=all", *(["--all"] if cls in ("vdi", "vm") else []))
        return {row["uuid"]: row for row in r.rows}


def _setup(db: str) -> Runner:
    r = Runner(db)
    r.run("pool-create", "name-label=p")
    r.run("host-add", "name-label=h", "address=10.0.0.1", "cpu-count=4", "memory-total=8GiB", "pool=p")
    r.run("sr-create", "name-label=thin", "type=ext", "physical-size=3GiB", "host=h")
    r.run("sr-create", "name-label=thick", "type=lvm", "physical-size=3GiB", "host=h")
    r.run("vm-create", "name-label=v")
    return r


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("create"),
            st.sampled_from(["thin", "thick"]),
            st.integers(1, 1500),
            st.sampled_from([None, "thin", "thick-lazy", "thick-eager"]),
        ),
        st.tuples(st.just("resize"), st.integers(0, 50), st.integers(0, 1500)),
        st.tuples(st.just("clone"), st.integers(0, 50)),
        st.tuples(st.just("snapshot"), st.integers(0, 50)),
        st.tuples(st.just("copy"), st.integers(0, 50), st.sampled_from(["thin", "thick"])),
        st.tuples(st.just("write"), st.integers(0, 50), st.integers(0, 2500)),
        st.tuples(st.just("destroy"), st.integers(0, 50)),
        st.tuples(st.just("attach"), st.integers(0, 50)),
        st.tuples(
            st.just("vm-clone"),
        ),
        st.tuples(
            st.just("vm-snapshot"),
        ),
        st.tuples(st.just("vm-copy"), st.sampled_from([None, "thin", "thick"])),
    ),
    min_size=1,
    max_size=14,
)


def _clone_need(d: dict, snapshot: bool) -> int:
    """model.md §3.5: a thick writable source reserves its size again (its blocks go to the new
    base copy); a thick writable clone reserves its size; snapshots and thin disks start at 0."""
    thick = d["provisioning"] != "thin"
    need = d["virtual-size"] if thick and not d["read-only"] else 0
    return need + (d["virtual-size"] if thick and not snapshot else 0)


def _copy_bytes(d: dict, vdis: dict) -> int:
    if d["provisioning"] != "thin":
        return d["virtual-size"]
    chain, cur = 0, d
    while cur is not None:
        chain += cur["physical-utilisation"]
        cur = vdis.get(cur["parent"])
    return min(d["virtual-size"], chain)


def _check(r: Runner, srs: dict, vdis: dict) -> None:
    used: dict[str, int] = {}
    for d in vdis.values():
        used[d["sr"]] = used.get(d["sr"], 0) + d["physical-utilisation"]
        assert 0 <= d["physical-utilisation"] <= d["virtual-size"]
        assert d["virtual-size"] % (2 * MiB) == 0
        if d["managed"] and not d["read-only"] and d["provisioning"] != "thin":
            assert d["physical-utilisation"] == d["virtual-size"]
    for s in srs.values():
        assert s["physical-utilisation"] == used.get(s["uuid"], 0)
        assert s["physical-utilisation"] <= s["physical-size"]
        assert s["free-space"] == s["physical-size"] - s["physical-utilisation"]


def _apply(r: Runner, op: tuple, srs: dict, vdis: dict) -> int | None:
    """Run one op; return the bytes the model says it consumes (None: no exact expectation)."""
    by_name = {s["name-label"]: s for s in srs.values()}
    managed = sorted(u for u, d in vdis.items() if d["managed"])
    kind = op[0]
    if kind == "create":
        _, sr, mib, prov = op
        words = [f"sr-uuid={by_name[sr]['uuid']}", "name-label=d", f"virtual-size={mib}MiB"]
        if prov:
            words.append(f"provisioning={prov}")
        size = -(-mib // 2) * 2 * MiB
        thick = (prov or by_name[sr]["default-provisioning"]) != "thin"
        r.run("vdi-create", *words)
        return size if thick else 0
    if kind.startswith("vm-"):
        vm = [v for v in r.rows("vm").values() if v["name-label"] == "v"][0]
        disks = [vdis[b["vdi"]] for b in r.rows("vbd").values() if b["vm"] == vm["uuid"] and b["vdi"]]
        if kind == "vm-clone":
            r.run("vm-clone", "vm=v", "new-name-label=c")
            return sum(_clone_need(d, False) for d in disks)
        if kind == "vm-snapshot":
            r.run("vm-snapshot", "vm=v", "new-name-label=s")
            return sum(_clone_need(d, True) for d in disks)
        words = ["vm=v", "new-name-label=c"] + ([f"sr-uuid={by_name[op[1]]['uuid']}"] if op[1] else [])
        r.run("vm-copy", *words)
        return sum(_copy_bytes(d, vdis) for d in disks)
    if not managed:
        return None
    d = vdis[managed[op[1] % len(managed)]]
    if kind == "attach":
        r.run(
            "vbd-create",
            "vm-uuid=v",
            "device=autodetect",
            f"vdi-uuid={d['uuid']}",
            "mode=" + ("RO" if d["read-only"] else "RW"),
        )
        return 0
    thick = d["provisioning"] != "thin"
    if kind == "resize":
        r.run("vdi-resize", f"uuid={d['uuid']}", f"disk-size=+{op[2]}MiB")
        grow = -(-(d["virtual-size"] + op[2] * MiB) // (2 * MiB)) * 2 * MiB - d["virtual-size"]
        return grow if thick else 0
    if kind == "clone":
        r.run("vdi-clone", f"uuid={d['uuid']}")
        return (2 * d["virtual-size"] if not d["read-only"] else d["virtual-size"]) if thick else 0
    if kind == "snapshot":
        r.run("vdi-snapshot", f"uuid={d['uuid']}")
        return d["virtual-size"] if thick and not d["read-only"] else 0
    if kind == "copy":
        target = by_name[op[2]]
        r.run("vdi-copy", f"uuid={d['uuid']}", f"sr-uuid={target['uuid']}")
        if thick:
            return d["virtual-size"]
        chain, cur = 0, d
        while cur is not None:
            chain += cur["physical-utilisation"]
            cur = vdis.get(cur["parent"])
        return min(d["virtual-size"], chain)
    if kind == "write":
        new = min(op[2] * MiB, d["virtual-size"])
        r.run("vdi-param-set", f"uuid={d['uuid']}", f"physical-utilisation={new}")
        return new - d["physical-utilisation"]
    if kind == "destroy":
        r.run("vdi-destroy", f"uuid={d['uuid']}")
        return None
    raise AssertionError(kind)


SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@pytest.mark.slow
@settings(max_examples=40, **SETTINGS)
@given(seq=ops)
def test_capacity_property(tmp_path_factory, seq):
    _accounting_holds(tmp_path_factory, seq)


@settings(max_examples=5, **SETTINGS)
@given(seq=ops)
def test_capacity_property_few_examples(tmp_path_factory, seq):
    _accounting_holds(tmp_path_factory, seq)


def _accounting_holds(tmp_path_factory, seq):
    db = str(tmp_path_factory.mktemp("cap") / "inv.db")
    r = _setup(db)
    srs, vdis, vbds, vms = r.rows("sr"), r.rows("vdi"), r.rows("vbd"), r.rows("vm")
    for op in seq:
        try:
            expect = _apply(r, op, srs, vdis)
            failed = None
        except VmctlError as e:
            failed, expect = e, None
        new_srs, new_vdis, new_vbds, new_vms = r.rows("sr"), r.rows("vdi"), r.rows("vbd"), r.rows("vm")
        _check(r, new_srs, new_vdis)
        if failed is not None:
            assert failed.code in (
                "SR_FULL",
                "VDI_TOO_LARGE",
                "FIELD_READ_ONLY",
                "VDI_NOT_MANAGED",
                "VDI_READONLY",
                "SR_BACKEND_FAILURE_109",
                "INVALID_VALUE",
                "INVALID_DEVICE",
            ), failed.code
            # refused: nothing changed
            assert new_vdis == vdis and new_srs == srs and new_vbds == vbds and new_vms == vms
            if failed.code == "SR_FULL":
                p = dict(failed.params)
                assert p["requested"] > p["maximum"]
                assert p["maximum"] in {s["free-space"] for s in srs.values()}
        elif expect is not None:
            before = sum(s["physical-utilisation"] for s in srs.values())
            after = sum(s["physical-utilisation"] for s in new_srs.values())
            assert after - before == expect, (op, before, after, expect)
        srs, vdis, vbds, vms = new_srs, new_vdis, new_vbds, new_vms
    assert r.run("db-check").text == "db-check: all 16 invariants hold\n"
    r.store.dispose()
