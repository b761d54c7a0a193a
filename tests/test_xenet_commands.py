"""Contract tests of the xe network layer (model.md §3.6-§3.7, network.md §8): the real `vmctl`
executable in a subprocess against a temporary inventory; setup in-process via the Python API."""

from __future__ import annotations

import hashlib
import json
import shlex
import sqlite3

import pytest
from cli_helpers import run_cli

import vmctl
from vmctl import hooks
from vmctl.cli.bind import bind, lookup
from vmctl.cli.grammar import Segment
from vmctl.errors import OvsError, VmctlError
from vmctl.store.txn import Store


class _Inv:
    """The in-process API, flushing the pending failure checks before anything else runs."""

    def __init__(self, env, inv):
        self.env, self.inv = env, inv

    def run(self, *args, **kw):
        self.env.flush()
        return self.inv.run(*args, **kw)


class Env:
    """A pool p1 with h1 (eth0-eth3) and h2 (eth0, eth1), network n1 (xapi0).

    Setup and state-changing steps run in-process (the API goes through the same binding and
    executor as the CLI). Every expected failure is checked against the real executable: the
    failures of a test step are gathered and run in one `vmctl -f json batch --continue-on-error`
    subprocess (exit 1, each item's code and params, inventory unchanged)."""

    _base: dict = {}  # the base inventory, built once and copied for every test

    def __init__(self, tmp_path):
        self.db = str(tmp_path / "inv.db")
        self.pending: list[tuple[str, tuple, dict]] = []
        if not Env._base:
            base = str(tmp_path / "base.db")
            r = vmctl.open(base).run
            Env._base.update(
                db=base,
                data=None,
                ids=(
                    r("pool-create", **{"name-label": "p1"}),
                    r(
                        "host-add",
                        **{
                            "name-label": "h1",
                            "address": "10.0.0.1",
                            "cpu-count": 8,
                            "memory-total": "64GiB",
                            "pool": "p1",
                            "pifs": "eth0,eth1,eth2,eth3",
                        },
                    ),
                    r(
                        "host-add",
                        **{
                            "name-label": "h2",
                            "address": "10.0.0.2",
                            "cpu-count": 8,
                            "memory-total": "64GiB",
                            "pool": "p1",
                            "pifs": "eth0,eth1",
                        },
                    ),
                    r("network-create", **{"name-label": "n1"}),
                ),
            )
            with open(base, "rb") as f:
                Env._base["data"] = f.read()
        with open(self.db, "wb") as f:
            f.write(Env._base["data"])
        self.pool, self.h1, self.h2, self.n1 = Env._base["ids"]
        self.inv = _Inv(self, vmctl.open(self.db))

    def run(self, *args, input=None):
        self.flush()
        return run_cli(self.db, *args, input=input)

    def ok(self, *args) -> str:
        """A command that must succeed, in-process; its stdout-like result as text."""
        r = self.inv.run(*args)
        return "" if r is None else r if isinstance(r, str) else str(r) + "\n"

    def fails(self, code: str, *args, params: dict | None = None) -> None:
        self.pending.append((code, args, params or {}))

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        before = self.dump()
        # `batch --continue-on-error` binds every item before running any, so an item refused
        # while its arguments are bound is checked on its own
        alone, batched = [], []
        for item in pending:
            name, words = item[1][0], list(item[1][1:])
            try:
                bind(lookup(name), Segment(name=name, args=words))
                batched.append(item)
            except (VmctlError, OvsError):
                alone.append(item)
        for code, args, params in alone:
            # refused by the binder shared with the CLI: checked in-process to keep the suite fast
            with pytest.raises(VmctlError) as ei:
                vmctl.open(self.db).run(*args)
            assert ei.value.code == code, (args, ei.value.code)
            got = dict(ei.value.params)
            for k, v in params.items():
                assert str(got.get(k)) == str(v), (args, k, got)
        if batched:
            items = "".join(f"- {json.dumps(shlex.join(a))}\n" for _c, a, _p in batched)
            p = run_cli(self.db, "-f", "json", "batch", "--continue-on-error", "-", input=items)
            assert p.returncode == 1, (p.stdout, p.stderr)
            assert "Traceback" not in p.stderr
            out = json.loads(p.stdout)
            assert len(out) == len(batched)
            for (code, args, params), res in zip(batched, out):
                assert isinstance(res, dict) and "error" in res, (args, res)
                assert res["error"]["code"] == code, (args, res)
                got = res["error"]["params"]
                for k, v in params.items():
                    assert k in got, (args, res)
                    a = got[k]
                    text = "; ".join(map(str, a)) if isinstance(a, list) else str(a)
                    assert text == str(v) or str(v).startswith(text + " ("), (args, k, v, a)
                # the text rendering on stderr too: `vmctl: CODE: message` and `  key: value` lines
                assert f"vmctl: {code}: " in p.stderr
                for k, v in params.items():
                    assert f"\n  {k}: {v}\n" in p.stderr, (args, k, v, p.stderr)
        assert self.dump() == before

    def dump(self) -> list[str]:
        con = sqlite3.connect(self.db)
        try:
            return list(con.iterdump())
        finally:
            con.close()

    def pif(self, host: str, device: str, vlan: int = -1) -> str:
        rows = self.inv.run("pif-list", host=host, device=device, params="uuid,vlan")
        return next(r["uuid"] for r in rows if r["vlan"] == vlan)

    def net(self, bridge: str) -> str:
        return self.inv.run("network-list", bridge=bridge, params="uuid")[0]["uuid"]

    def get(self, cls: str, uuid: str, field: str) -> str:
        return self.inv.run(f"{cls}-param-get", uuid=uuid, **{"param-name": field})

    def ovs(self, host: str, *args) -> str:
        """An ovs-style command on one host, in-process."""
        self.flush()
        return vmctl.open(self.db, host=host).run(*args)

    def break_switch(self, host: str, name: str, *args) -> None:
        """An ovs-style command on one host below the command line (as the xe layer runs them):
        neither the refusals of what the xe layer owns nor the check before commit apply, so a
        test can make the state db-check reports."""
        self.flush()

        def fn(txn):
            txn.switch(txn.resolve_one("host", host)["uuid"]).run(name, {}, list(args))

        Store(self.db).run(fn, write=True)

    def start(self, vm: str, host: str, domid: int) -> None:
        """Record the VM running on host and call the lifecycle hooks, as compute commands do."""
        self.flush()

        def fn(txn):
            v = txn.resolve_one("vm", vm)
            txn.update("vm", v["uuid"], {"power-state": "running", "resident-on": host, "domid": domid})
            hooks.became_resident(txn, txn.get("vm", v["uuid"]), host)

        Store(self.db).run(fn, write=True)

    def stop(self, vm: str) -> None:
        self.flush()

        def fn(txn):
            v = txn.resolve_one("vm", vm)
            hooks.leaving_host(txn, v, v["resident-on"])
            txn.update("vm", v["uuid"], {"power-state": "halted", "resident-on": "", "domid": -1})

        Store(self.db).run(fn, write=True)

    @classmethod
    def bare(cls, db: str) -> Env:
        """An Env on an empty inventory (no pool, no hosts)."""
        e = cls.__new__(cls)
        e.db, e.pending = db, []
        e.inv = _Inv(e, vmctl.open(db))
        return e

    def problems(self) -> list:
        """db-check's findings, in-process."""
        self.flush()
        from vmctl.invariants import check

        return Store(self.db).run(check, write=False)[0]

    def iface_ids(self, host: str, iface: str) -> str:
        return self.ovs(host, "get", "interface", iface, "external_ids").strip()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.flush()


# --- network-create / network-destroy -------------------------------------------------------------------
def test_network_create_makes_bridges_everywhere(env):
    for h in ("h1", "h2"):
        assert "xapi0\n" in env.ovs(h, "list-br")
        assert env.ovs(h, "br-get-external-id", "xapi0", "xs-network-uuids").strip() == env.n1
    # xapi<k>: the smallest k free, skipping a port name on a host
    env.ovs("h2", "add-port", "xenbr0", "xapi1")
    n2 = env.ok("network-create", "name-label=n2", "MTU=9000", "name-description=d").strip()
    assert env.get("network", n2, "bridge") == "xapi2"
    assert env.get("network", n2, "mtu") == 9000
    assert env.get("network", n2, "name-description") == "d"
    n3 = env.ok("network-create", "name-label=n3", "bridge=br-x", "managed=false").strip()
    assert "br-x" not in env.ovs("h1", "list-br")
    assert env.get("network", n3, "managed") is False


@pytest.mark.parametrize(
    "bridge", ["xenbr9", "xapi7", "vif1", "tap0", "eth5", "a" * 16, "bad/name", "brü", ""]
)
def test_network_create_bad_bridge_names(env, bridge):
    env.fails(
        "INVALID_VALUE",
        "network-create",
        "name-label=x",
        f"bridge={bridge}",
        params={"name": "bridge", "value": bridge},
    )


def test_network_create_errors(env):
    env.fails("INVALID_VALUE", "network-create", "name-label=x", "mtu=67", params={"name": "mtu"})
    env.fails("INVALID_VALUE", "network-create", "name-label=x", "mtu=9217")
    env.fails("INVALID_VALUE", "network-create", "name-label=x", "mtu=big")
    env.fails("FIELD_READ_ONLY", "network-create", "name-label=x", "tunnel-key=3")
    env.fails("UUID_INVALID", "network-create", "name-label=x", "pool=nope")
    env.inv.run("network-create", **{"name-label": "a", "bridge": "br-a"})
    env.fails(
        "BRIDGE_NAME_EXISTS", "network-create", "name-label=x", "bridge=br-a", params={"bridge": "br-a"}
    )
    env.ovs("h2", "add-port", "xenbr0", "brq")
    env.fails(
        "BRIDGE_NAME_EXISTS",
        "network-create",
        "name-label=x",
        "bridge=brq",
        params={"bridge": "brq", "host": f"{env.h2} (h2)"},
    )
    # a real bridge of that name on a host is kept, with its ports
    env.ovs("h1", "add-br", "brk")
    env.ovs("h1", "add-port", "brk", "p9")
    env.ok("network-create", "name-label=k", "bridge=brk")
    assert env.ovs("h1", "list-ports", "brk") == "p9\n"
    assert "brk\n" in env.ovs("h2", "list-br")


def test_network_create_may_exist(env):
    assert env.ok("network-create", "name-label=n1", "--may-exist").strip() == env.n1
    a = env.inv.run("network-create", **{"name-label": "a", "bridge": "br-a"})
    assert env.ok("network-create", "name-label=other", "bridge=br-a", "--may-exist").strip() == a
    # arguments are checked before the key is looked up
    env.fails("INVALID_VALUE", "network-create", "name-label=other", "bridge=xapi0", "--may-exist")
    assert env.ok("network-destroy", "uuid=nope", "--if-exists") == ""


def test_network_destroy(env):
    env.fails("NETWORK_CONTAINS_PIF", "network-destroy", f"uuid={env.net('xenbr0')}")
    vm = env.inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    vif = env.inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": env.n1, "device": 0})
    env.fails("NETWORK_CONTAINS_VIF", "network-destroy", f"uuid={env.n1}", params={"vifs": vif})
    env.ok("vif-destroy", f"uuid={vif}")
    env.ok("network-destroy", f"uuid={env.n1}")
    for h in ("h1", "h2"):
        assert "xapi0" not in env.ovs(h, "list-br")
    env.fails("UUID_INVALID", "network-destroy", f"uuid={env.n1}")


def test_network_param_set_mtu(env):
    env.fails("INVALID_VALUE", "network-param-set", f"uuid={env.n1}", "mtu=10000")
    env.ok("network-param-set", f"uuid={env.n1}", "mtu=1400")
    env.fails("FIELD_READ_ONLY", "network-param-set", f"uuid={env.n1}", "bridge=brz")


# --- PIFs -----------------------------------------------------------------------------------------------
def test_pif_plug_unplug_forget(env):
    eth0, eth1, eth3 = (env.pif(env.h1, d) for d in ("eth0", "eth1", "eth3"))
    env.fails("PIF_IS_MANAGEMENT_INTERFACE", "pif-unplug", f"uuid={eth0}")
    env.ok("pif-unplug", f"uuid={eth1}")
    assert env.ovs("h1", "list-ports", "xenbr1") == ""
    assert env.get("pif", eth1, "currently-attached") is False
    assert env.get("pif", eth1, "plugged") is False
    env.break_switch("h1", "del-br", "xenbr1")
    env.ok("pif-plug", f"uuid={eth1}")
    assert env.ovs("h1", "list-ports", "xenbr1") == "eth1\n"
    assert env.get("pif", eth1, "currently-attached") is True
    env.fails("PIF_IS_MANAGEMENT_INTERFACE", "pif-forget", f"uuid={eth0}")
    env.ok("pif-forget", f"uuid={eth3}")
    assert env.ovs("h1", "list-ports", "xenbr3") == ""
    env.ok("pif-forget", f"uuid={eth3}", "--if-exists")
    env.fails("UUID_INVALID", "pif-forget", f"uuid={eth3}")


def test_ovs_del_br_detaches_pif(env):
    eth1 = env.pif(env.h1, "eth1")
    env.break_switch("h1", "del-br", "xenbr1")
    assert env.get("pif", eth1, "currently-attached") is False
    out = env.run("db-check")
    assert out.returncode == 1
    assert f"I13 network {env.net('xenbr1')}: bridge xenbr1 missing on host {env.h1}" in out.stdout
    assert f"I13 pif {eth1}: port eth1 missing" in out.stdout


def test_pif_reconfigure_ip(env):
    eth0, eth1 = env.pif(env.h1, "eth0"), env.pif(env.h1, "eth1")
    env.ok(
        "pif-reconfigure-ip",
        f"uuid={eth1}",
        "mode=static",
        "IP=192.168.1.5",
        "netmask=24",
        "gateway=192.168.1.1",
        "DNS=8.8.8.8,1.1.1.1",
    )
    row = env.inv.run("pif-param-list", uuid=eth1)
    assert (row["ip-configuration-mode"], row["ip"], row["netmask"], row["gateway"], row["dns"]) == (
        "static",
        "192.168.1.5",
        "255.255.255.0",
        "192.168.1.1",
        "8.8.8.8,1.1.1.1",
    )
    env.ok("pif-reconfigure-ip", f"uuid={eth1}", "mode=dhcp")
    assert env.get("pif", eth1, "ip") == ""
    env.fails("INVALID_VALUE", "pif-reconfigure-ip", f"uuid={eth1}", "mode=static", "IP=300.1.1.1")
    env.fails("INVALID_VALUE", "pif-reconfigure-ip", f"uuid={eth1}", "mode=manual")
    env.fails("MISSING_PARAMETER", "pif-reconfigure-ip", f"uuid={eth1}", "mode=static")
    env.fails("PIF_IS_MANAGEMENT_INTERFACE", "pif-reconfigure-ip", f"uuid={eth0}", "mode=none")


# --- VLANs ----------------------------------------------------------------------------------------------
@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_vlan_create_checks_in_order(env):
    eth1, eth2, eth3 = (env.pif(env.h1, d) for d in ("eth1", "eth2", "eth3"))
    un = env.ok("network-create", "name-label=u", "bridge=bru", "managed=false").strip()
    env.fails("NETWORK_UNMANAGED", "vlan-create", f"pif-uuid={eth1}", "vlan=10", f"network-uuid={un}")
    env.inv.run("pool-create", **{"name-label": "p2"})
    other = env.inv.run("network-create", **{"name-label": "o", "pool": "p2"})
    env.fails("NOT_IN_SAME_POOL", "vlan-create", f"pif-uuid={eth1}", "vlan=10", f"network-uuid={other}")
    env.fails(
        "NETWORK_ALREADY_CONNECTED",
        "vlan-create",
        f"pif-uuid={eth1}",
        "vlan=10",
        f"network-uuid={env.net('xenbr2')}",
        params={"pif": eth2},
    )
    bn = env.inv.run("network-create", **{"name-label": "bn", "pool": "p1"})
    env.inv.run("bond-create", **{"network-uuid": bn, "pif-uuids": f"{eth2},{eth3}"})
    env.fails(
        "CANNOT_ADD_VLAN_TO_BOND_SLAVE",
        "vlan-create",
        f"pif-uuid={eth2}",
        "vlan=10",
        f"network-uuid={env.n1}",
    )
    vp = env.ok("vlan-create", f"pif-uuid={eth1}", "vlan=10", f"network-uuid={env.n1}").strip()
    n4 = env.inv.run("network-create", **{"name-label": "n4", "pool": "p1"})
    env.fails("PIF_IS_VLAN", "vlan-create", f"pif-uuid={vp}", "vlan=11", f"network-uuid={n4}")
    tn = env.inv.run("network-create", **{"name-label": "tn", "pool": "p1"})
    t = env.inv.run("tunnel-create", **{"pif-uuid": env.pif(env.h1, "eth0"), "network-uuid": tn})
    access = env.inv.run("tunnel-param-get", uuid=t, **{"param-name": "access-pif"})
    env.fails("IS_TUNNEL_ACCESS_PIF", "vlan-create", f"pif-uuid={access}", "vlan=11", f"network-uuid={n4}")
    for bad in ("4095", "-1", "x", "1.5"):
        env.fails(
            "VLAN_TAG_INVALID",
            "vlan-create",
            f"pif-uuid={eth1}",
            f"vlan={bad}",
            f"network-uuid={n4}",
            params={"tag": bad},
        )
    env.fails(
        "PIF_VLAN_EXISTS",
        "vlan-create",
        f"pif-uuid={eth1}",
        "vlan=10",
        f"network-uuid={n4}",
        params={"device": "eth1"},
    )
    assert (
        env.ok("vlan-create", f"pif-uuid={eth1}", "vlan=10", f"network-uuid={n4}", "--may-exist").strip()
        == vp
    )
    env.fails("UUID_INVALID", "vlan-create", "pif-uuid=nope", "vlan=10", f"network-uuid={n4}")


def test_vlan_fake_bridge_and_destroy(env):
    eth1 = env.pif(env.h1, "eth1")
    # a running VM's port on the plain bridge moves to the parent with the tag
    vm = env.inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    env.inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": env.n1, "device": 0})
    env.start(vm, env.h1, 3)
    assert env.ovs("h1", "list-ports", "xapi0") == "vif3.0\n"
    vp = env.ok("vlan-create", f"pif-uuid={eth1}", "vlan=10", f"network-uuid={env.n1}").strip()
    assert env.get("pif", vp, "vlan") == 10 and env.get("pif", vp, "device") == "eth1"
    assert env.get("pif", vp, "mac") == "fe:ff:ff:ff:ff:ff" and env.get("pif", vp, "physical") is False
    assert env.get("pif", vp, "currently-attached") is True
    assert env.ovs("h1", "br-to-parent", "xapi0") == "xenbr1\n"
    assert env.ovs("h1", "br-to-vlan", "xapi0") == "10\n"
    assert env.ovs("h1", "br-get-external-id", "xapi0", "xs-network-uuids").strip() == env.n1
    assert env.ovs("h1", "list-ports", "xapi0") == "vif3.0\n"
    assert env.ovs("h1", "get", "port", "vif3.0", "tag") == "10\n"
    assert "iface-id" in env.iface_ids("h1", "vif3.0")
    assert env.ovs("h2", "br-to-parent", "xapi0") == "xapi0\n"  # no VLAN PIF on h2: a plain bridge
    assert env.problems() == []
    env.ok("vlan-destroy", f"uuid={vp}")
    assert env.ovs("h1", "br-to-parent", "xapi0") == "xapi0\n"
    assert env.ovs("h1", "list-ports", "xapi0") == "vif3.0\n"
    assert env.ovs("h1", "get", "port", "vif3.0", "tag") == "[]\n"
    assert env.problems() == []
    env.ok("vlan-destroy", f"uuid={vp}", "--if-exists")
    env.fails("UUID_INVALID", "vlan-destroy", f"uuid={vp}")


def test_vlan_destroy_management_refused(tmp_path):
    env = Env.bare(str(tmp_path / "m.db"))
    env.inv.run(
        "host-add",
        **{
            "name-label": "h",
            "address": "10.1.1.1",
            "cpu-count": 4,
            "memory-total": "8GiB",
            "management-vlan": 7,
        },
    )
    vl = env.inv.run("vlan-list", params="uuid")[0]["uuid"]
    env.fails("PIF_IS_MANAGEMENT_INTERFACE", "vlan-destroy", f"uuid={vl}")
    env.flush()


def test_pool_vlan_create(env):
    eth1 = env.pif(env.h1, "eth1")
    p = env.run("-f", "json", "pool-vlan-create", f"pif-uuid={eth1}", "vlan=20", f"network-uuid={env.n1}")
    assert p.returncode == 0 and len(json.loads(p.stdout)) == 2
    for h in ("h1", "h2"):
        assert env.ovs(h, "br-to-vlan", "xapi0") == "20\n"
        assert env.ovs(h, "br-to-parent", "xapi0") == "xenbr1\n"
    n2 = env.inv.run("network-create", **{"name-label": "n2"})
    env.inv.run("vlan-create", **{"pif-uuid": env.pif(env.h2, "eth1"), "vlan": 30, "network-uuid": n2})
    n3 = env.inv.run("network-create", **{"name-label": "n3"})
    # h2 already has tag 30 on eth1: nothing is created on h1 either
    env.fails("PIF_VLAN_EXISTS", "pool-vlan-create", f"pif-uuid={eth1}", "vlan=30", f"network-uuid={n3}")


# --- bonds ----------------------------------------------------------------------------------------------
@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_bond_create_checks(env):
    """message_forwarding Bond.create, then xapi_bond.create, in their order: a member at all, the
    network (managed, not yet on the host), a well-formed MAC, each member (bonded already, a VLAN
    PIF), one host, one IP configuration."""
    e = {d: env.pif(env.h1, d) for d in ("eth0", "eth1", "eth2", "eth3")}
    bn = env.ok("network-create", "name-label=bn").strip()
    env.fails("UUID_INVALID", "bond-create", f"network-uuid={bn}", "pif-uuids=a,b,c,d,e")
    env.fails(
        "INVALID_VALUE", "bond-create", f"network-uuid={bn}", f"pif-uuids={e['eth2']},{e['eth3']}", "mode=rr"
    )
    env.fails("UUID_INVALID", "bond-create", f"network-uuid={bn}", "pif-uuids=nope,nope2")
    env.fails("PIF_BOND_NEEDS_MORE_MEMBERS", "bond-create", f"network-uuid={bn}", "pif-uuids=")
    env.fails(
        "PIF_CANNOT_BOND_CROSS_HOST",
        "bond-create",
        f"network-uuid={bn}",
        f"pif-uuids={e['eth2']},{env.pif(env.h2, 'eth1')}",
    )
    vp = env.inv.run("vlan-create", **{"pif-uuid": e["eth1"], "vlan": 5, "network-uuid": env.n1})
    env.fails(
        "PIF_VLAN_EXISTS",
        "bond-create",
        f"network-uuid={bn}",
        f"pif-uuids={e['eth2']},{vp}",
        params={"device": "eth1"},
    )
    un = env.ok("network-create", "name-label=u", "bridge=bru", "managed=false").strip()
    env.fails("NETWORK_UNMANAGED", "bond-create", f"network-uuid={un}", f"pif-uuids={e['eth2']},{vp}")
    env.fails(
        "NETWORK_ALREADY_CONNECTED",
        "bond-create",
        f"network-uuid={env.net('xenbr2')}",
        f"pif-uuids={e['eth2']},{e['eth3']}",
    )
    env.inv.run("pif-reconfigure-ip", uuid=e["eth3"], mode="dhcp")
    env.fails(
        "PIF_BOND_MORE_THAN_ONE_IP", "bond-create", f"network-uuid={bn}", f"pif-uuids={e['eth0']},{e['eth3']}"
    )
    env.fails(
        "MAC_INVALID",
        "bond-create",
        f"network-uuid={bn}",
        f"pif-uuids={e['eth2']},{e['eth3']}",
        "mac=01:00:00:00:00",
    )
    b = env.ok("bond-create", f"network-uuid={bn}", f"pif-uuids={e['eth2']},{e['eth3']}").strip()
    bn2 = env.ok("network-create", "name-label=bn2").strip()
    env.fails(
        "PIF_ALREADY_BONDED",
        "bond-create",
        f"network-uuid={bn2}",
        f"pif-uuids={e['eth1']},{e['eth3']}",
        params={"pif": e["eth3"]},
    )
    assert (
        env.ok(
            "bond-create", f"network-uuid={bn}", f"pif-uuids={e['eth2']},{e['eth3']}", "--may-exist"
        ).strip()
        == b
    )


def test_bond_ports_and_destroy(env):
    e = {d: env.pif(env.h1, d) for d in ("eth0", "eth1", "eth2", "eth3")}
    bn = env.ok("network-create", "name-label=bn").strip()
    b = env.ok("bond-create", f"network-uuid={bn}", f"pif-uuids={e['eth0']},{e['eth2']}", "mode=lacp").strip()
    master = env.get("bond", b, "master")
    assert env.get("pif", master, "device") == "bond0"
    assert env.get("pif", master, "mac") == env.get("pif", e["eth0"], "mac")
    assert env.get("pif", master, "management") is True and env.get("pif", e["eth0"], "management") is False
    assert env.get("pif", master, "ip") == "10.0.0.1"
    assert env.get("bond", b, "primary-slave") == e["eth0"]
    assert env.ovs("h1", "list-ports", "xapi1") == "bond0\n"
    assert env.ovs("h1", "list-ifaces", "xapi1") == "eth0\neth2\n"
    assert env.ovs("h1", "get", "port", "bond0", "bond_mode") == "balance-tcp\n"
    assert env.ovs("h1", "get", "port", "bond0", "lacp") == "active\n"
    assert env.ovs("h1", "list-ports", "xenbr0") == "" and env.ovs("h1", "list-ports", "xenbr2") == ""
    for p in (master, e["eth0"], e["eth2"]):
        assert env.get("pif", p, "currently-attached") is True
    env.ok("bond-param-set", f"uuid={b}", "mode=active-backup")
    assert env.ovs("h1", "get", "port", "bond0", "bond_mode") == "active-backup\n"
    assert env.ovs("h1", "get", "port", "bond0", "lacp") == "[]\n"
    assert env.problems() == []
    # a second bond on the host is bond1
    bn2 = env.ok("network-create", "name-label=bn2").strip()
    b2 = env.ok("bond-create", f"network-uuid={bn2}", f"pif-uuids={e['eth1']},{e['eth3']}").strip()
    assert env.get("pif", env.get("bond", b2, "master"), "device") == "bond1"
    assert env.ovs("h1", "get", "port", "bond1", "bond_mode") == "balance-slb\n"
    env.ok("bond-destroy", f"uuid={b}")
    assert env.ovs("h1", "list-ports", "xapi1") == ""
    assert (
        env.ovs("h1", "list-ports", "xenbr0") == "eth0\n"
        and env.ovs("h1", "list-ports", "xenbr2") == "eth2\n"
    )
    assert env.get("pif", e["eth0"], "management") is True and env.get("pif", e["eth0"], "ip") == "10.0.0.1"
    assert env.problems() == []
    env.ok("bond-destroy", f"uuid={b}", "--if-exists")
    env.fails("UUID_INVALID", "bond-destroy", f"uuid={b}")


# --- tunnels --------------------------------------------------------------------------------------------
def test_tunnels(env):
    tn = env.ok("network-create", "name-label=tn").strip()
    t1 = env.ok(
        "tunnel-create", f"pif-uuid={env.pif(env.h1, 'eth0')}", f"network-uuid={tn}", "protocol=vxlan"
    ).strip()
    assert env.get("network", tn, "tunnel-key") == 1
    access = env.get("tunnel", t1, "access-pif")
    assert env.get("pif", access, "device") == "tunnel0"
    assert env.ovs("h1", "list-ports", "xapi1") == ""  # no peer yet
    env.fails(
        "NETWORK_INCOMPATIBLE_WITH_TUNNEL",
        "tunnel-create",
        f"pif-uuid={env.pif(env.h2, 'eth0')}",
        f"network-uuid={tn}",
        "protocol=gre",
    )
    env.fails(
        "TRANSPORT_PIF_NOT_CONFIGURED",
        "tunnel-create",
        f"pif-uuid={env.pif(env.h2, 'eth1')}",
        f"network-uuid={tn}",
    )
    env.fails("IS_TUNNEL_ACCESS_PIF", "tunnel-create", f"pif-uuid={access}", f"network-uuid={tn}")
    t2 = env.ok(
        "tunnel-create", f"pif-uuid={env.pif(env.h2, 'eth0')}", f"network-uuid={tn}", "protocol=vxlan"
    ).strip()
    p1, p2 = f"vxlan-{env.h2.replace('-', '')[:8]}", f"vxlan-{env.h1.replace('-', '')[:8]}"
    assert env.ovs("h1", "list-ports", "xapi1") == p1 + "\n"
    assert env.ovs("h2", "list-ports", "xapi1") == p2 + "\n"
    assert env.ovs("h1", "get", "interface", p1, "type") == "vxlan\n"
    assert env.ovs("h1", "get", "interface", p1, "options") == '{key="1", remote_ip="10.0.0.2"}\n'
    assert env.ovs("h2", "get", "interface", p2, "options") == '{key="1", remote_ip="10.0.0.1"}\n'
    assert (
        env.ok(
            "tunnel-create", f"pif-uuid={env.pif(env.h2, 'eth0')}", f"network-uuid={tn}", "--may-exist"
        ).strip()
        == t2
    )
    assert env.problems() == []
    env.break_switch("h2", "del-port", p2)
    out = env.run("db-check")
    assert out.returncode == 1 and "I13 tunnel" in out.stdout
    assert env.run("db-check", "--fix").returncode == 0
    env.ok("tunnel-destroy", f"uuid={t2}")
    assert env.ovs("h1", "list-ports", "xapi1") == "" and env.ovs("h2", "list-ports", "xapi1") == ""
    assert env.inv.run("pif-list", uuid=access, params="uuid")
    env.ok("tunnel-destroy", f"uuid={t2}", "--if-exists")
    # a network with a physical PIF cannot carry a tunnel
    env.fails(
        "NETWORK_INCOMPATIBLE_WITH_TUNNEL",
        "tunnel-create",
        f"pif-uuid={env.pif(env.h2, 'eth0')}",
        f"network-uuid={env.net('xenbr2')}",
        params={"network": f"{env.net('xenbr2')} (Pool-wide network associated with eth2)"},
    )


def test_tunnel_backend_and_bond_member(tmp_path):
    env = Env.bare(str(tmp_path / "b.db"))
    env.inv.run(
        "host-add",
        **{
            "name-label": "hb",
            "address": "10.2.2.2",
            "cpu-count": 4,
            "memory-total": "8GiB",
            "network-backend": "bridge",
            "pifs": "eth0,eth1,eth2",
        },
    )
    hb = env.inv.run("host-list", params="uuid")[0]["uuid"]
    tn = env.inv.run("network-create", **{"name-label": "tn"})
    env.fails(
        "OPENVSWITCH_NOT_ACTIVE", "tunnel-create", f"pif-uuid={env.pif(hb, 'eth0')}", f"network-uuid={tn}"
    )
    env.flush()


# --- VIFs -----------------------------------------------------------------------------------------------
def expected_mac(vm: str, device: int, k: int = 0) -> str:
    d = bytearray(hashlib.sha256(f"{vm}:{device}:{k}".encode()).digest()[:6])
    d[0] = (d[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in d)


def test_vif_create_and_macs(env):
    vm = env.inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    v0 = env.ok("vif-create", f"vm-uuid={vm}", f"network-uuid={env.n1}", "device=0").strip()
    assert env.get("vif", v0, "mac") == expected_mac(vm, 0)
    assert env.get("vif", v0, "mac-autogenerated") is True
    assert env.get("vif", v0, "plugged") is False and env.get("vif", v0, "mtu") == 1500
    env.fails(
        "DEVICE_ALREADY_EXISTS",
        "vif-create",
        f"vm-uuid={vm}",
        f"network-uuid={env.n1}",
        "device=0",
        params={"device": "0"},
    )
    assert (
        env.ok("vif-create", f"vm-uuid={vm}", f"network-uuid={env.n1}", "device=0", "--may-exist").strip()
        == v0
    )
    # Xapi_vif_helpers.valid_device: any unsigned decimal is a device
    for bad in ("-1", "x", "", "1.5"):
        env.fails("INVALID_DEVICE", "vif-create", f"vm-uuid={vm}", f"network-uuid={env.n1}", f"device={bad}")
    # Helpers.is_valid_MAC: six colon-separated hex pairs, nothing else asked
    for bad in ("02:00:00:00:00", "zz:00:00:00:00:00", "0200.0000.0001"):
        env.fails(
            "MAC_INVALID", "vif-create", f"vm-uuid={vm}", f"network-uuid={env.n1}", "device=1", f"mac={bad}"
        )
    v1 = env.ok(
        "vif-create",
        f"vm-uuid={vm}",
        f"network-uuid={env.n1}",
        "device=1",
        "MAC=00:16:3E:00:00:01",
    ).strip()
    assert env.get("vif", v1, "mac") == "00:16:3e:00:00:01"
    assert env.get("vif", v1, "mac-autogenerated") is False
    vm2 = env.inv.run("vm-create", **{"name-label": "w", "memory": "1GiB"})
    # another VM may have the same MAC, and a multicast or all-zero one is well-formed
    env.ok("vif-create", f"vm-uuid={vm2}", f"network-uuid={env.n1}", "device=0", "mac=00:16:3e:00:00:01")
    env.ok("vif-create", f"vm-uuid={vm2}", f"network-uuid={env.n1}", "device=1", "mac=01:00:00:00:00:00")
    env.ok("vif-create", f"vm-uuid={vm2}", f"network-uuid={env.n1}", "device=16", "mac=00:00:00:00:00:00")
    env.fails("UUID_INVALID", "vif-create", "vm-uuid=nope", f"network-uuid={env.n1}", "device=0")
    env.inv.run("pool-create", **{"name-label": "p2"})
    other = env.inv.run("network-create", **{"name-label": "o", "pool": "p2"})
    env.fails("NOT_IN_SAME_POOL", "vif-create", f"vm-uuid={vm}", f"network-uuid={other}", "device=2")
    # the generated MAC skips one already used in the pool (k = 1)
    env.ok("vif-create", f"vm-uuid={vm2}", f"network-uuid={env.n1}", "device=3", f"mac={expected_mac(vm, 2)}")
    v2 = env.ok("vif-create", f"vm-uuid={vm}", f"network-uuid={env.n1}", "device=2").strip()
    assert env.get("vif", v2, "mac") == expected_mac(vm, 2, 1)
    p = env.run("vm-vif-list", "vm=v", "-f", "json")
    assert p.returncode == 0 and p.stderr == ""
    assert [(r["device"], r["mac"]) for r in json.loads(p.stdout)] == [
        (0, expected_mac(vm, 0)),
        (1, "00:16:3e:00:00:01"),
        (2, expected_mac(vm, 2, 1)),
    ]
    assert env.problems() == []


def test_vif_create_power_state_and_snapshot(env):
    vm = env.inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    snap = env.inv.run("vm-create", **{"name-label": "s", "memory": "1GiB"})

    def fn(txn):
        txn.update("vm", vm, {"power-state": "suspended"})
        txn.update("vm", snap, {"is-a-snapshot": True, "is-a-template": True, "snapshot-of": vm})

    Store(env.db).run(fn, write=True)
    env.fails("VM_BAD_POWER_STATE", "vif-create", f"vm-uuid={vm}", f"network-uuid={env.n1}", "device=0")
    env.fails("VM_IS_SNAPSHOT", "vif-create", f"vm-uuid={snap}", f"network-uuid={env.n1}", "device=0")


@pytest.mark.slow  # one of the longest: the fast tier stays under 3 minutes
def test_vif_plug_unplug_move_destroy(env):
    vm = env.inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    v0 = env.inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": env.n1, "device": 0})
    v1 = env.inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": env.net("xenbr1"), "device": 1})
    env.fails("VM_BAD_POWER_STATE", "vif-plug", f"uuid={v0}")
    env.fails("VM_BAD_POWER_STATE", "vif-unplug", f"uuid={v0}")
    env.start(vm, env.h2, 7)
    assert env.ovs("h2", "list-ports", "xapi0") == "vif7.0\n"
    assert env.ovs("h2", "list-ports", "xenbr1") == "eth1\nvif7.1\n"
    assert f'iface-id="{v1}"' in env.iface_ids("h2", "vif7.1")
    ids = env.iface_ids("h2", "vif7.0")
    for k, v in (
        ("attached-mac", env.get("vif", v0, "mac")),
        ("iface-id", v0),
        ("vm-id", vm),
        ("xs-network-uuid", env.n1),
        ("xs-vif-uuid", v0),
        ("xs-vm-uuid", vm),
    ):
        assert f'{k}="{v}"' in ids
    assert env.get("vif", v0, "currently-attached") is True and env.get("vif", v0, "plugged") is True
    env.fails("DEVICE_ALREADY_ATTACHED", "vif-plug", f"uuid={v0}")
    env.fails("OPERATION_NOT_ALLOWED", "vif-destroy", f"uuid={v0}", params={"reason": "VIF is attached"})
    env.ok("vif-unplug", f"uuid={v0}")
    assert env.ovs("h2", "list-ports", "xapi0") == ""
    assert env.get("vif", v0, "currently-attached") is False
    env.fails("DEVICE_ALREADY_DETACHED", "vif-unplug", f"uuid={v0}")
    env.ok("vif-plug", f"uuid={v0}")
    assert env.ovs("h2", "list-ports", "xapi0") == "vif7.0\n"
    # vif-move: the port goes to the new bridge
    env.ok("vif-move", f"uuid={v0}", f"network-uuid={env.net('xenbr0')}")
    assert env.ovs("h2", "list-ports", "xapi0") == ""
    assert env.ovs("h2", "list-ports", "xenbr0") == "eth0\nvif7.0\n"
    assert f'xs-network-uuid="{env.net("xenbr0")}"' in env.iface_ids("h2", "vif7.0")
    # a network not available on h2 (its only PIF is on h1, unplugged there too)
    n9 = env.inv.run("network-create", **{"name-label": "n9"})
    env.inv.run("vlan-create", **{"pif-uuid": env.pif(env.h1, "eth1"), "vlan": 9, "network-uuid": n9})
    env.fails("VM_REQUIRES_NETWORK", "vif-move", f"uuid={v0}", f"network-uuid={n9}")
    v2 = env.inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": n9, "device": 2})
    assert env.get("vif", v2, "plugged") is False
    env.fails("VM_REQUIRES_NETWORK", "vif-plug", f"uuid={v2}", params={"network": f"{n9} (n9)"})
    assert env.problems() == []
    env.stop(vm)
    for br in ("xapi0", "xenbr0"):
        assert "vif" not in env.ovs("h2", "list-ports", br)
    assert env.get("vif", v0, "plugged") is False
    env.ok("vif-destroy", f"uuid={v0}")
    env.ok("vif-destroy", f"uuid={v0}", "--if-exists")
    assert env.problems() == []


def test_owned_port_name_conflicts(env):
    """network.md §8: an existing port X goes first; X as another port's interface refuses."""
    vm = env.inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    v0 = env.inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": env.n1, "device": 0})
    v1 = env.inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": env.n1, "device": 1})
    env.ovs("h1", "add-port", "xenbr0", "vif6.0")
    env.ovs("h1", "add-bond", "xenbr0", "bx", "vif6.1", "other")
    with pytest.raises(VmctlError) as ei:  # a start that must add port vif6.1 fails
        env.start(vm, env.h1, 6)
    assert ei.value.code == "DEVICE_ALREADY_EXISTS"
    env.ovs("h1", "del-port", "bx")
    env.start(vm, env.h1, 6)
    assert env.ovs("h1", "port-to-br", "vif6.0") == "xapi0\n"
    assert env.ovs("h1", "list-ports", "xenbr0") == "eth0\n"
    env.inv.run("vif-unplug", uuid=v0)
    env.inv.run("vif-unplug", uuid=v1)
    env.ovs("h1", "add-bond", "xenbr0", "bx", "vif6.1", "other")
    assert env.ovs("h1", "list-ports", "xapi0") == ""
    env.fails(
        "DEVICE_ALREADY_EXISTS",
        "vif-plug",
        f"uuid={v1}",
        params={"device": "vif6.1", "host": f"{env.h1} (h1)"},
    )
    assert env.inv.run("vif-param-get", uuid=v1, **{"param-name": "currently-attached"}) is False


def test_db_check_fix_vif_port_after_del_br(env):
    vm = env.inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    v0 = env.inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": env.n1, "device": 0})
    env.start(vm, env.h1, 4)
    env.break_switch("h1", "del-br", "xapi0")
    assert env.get("vif", v0, "currently-attached") is False
    out = env.run("db-check")
    assert out.returncode == 1
    assert out.stdout == (
        f"I13 network {env.n1}: bridge xapi0 missing on host {env.h1}\nI13 vif {v0}: port vif4.0 missing\n"
    )
    fixed = env.run("db-check", "--fix")
    assert fixed.returncode == 0 and fixed.stdout == (
        f"fixed I13 network {env.n1}: created bridge xapi0 on host h1 ({env.h1})\n"
        f"fixed I13 vif {v0}: added port vif4.0 on host h1 ({env.h1})\n"
        "db-check: all 16 invariants hold\n"
    )
    assert env.ovs("h1", "list-ports", "xapi0") == "vif4.0\n"
    assert env.get("vif", v0, "currently-attached") is True
    assert env.problems() == []


def test_dry_run_and_chain(env):
    before = env.dump()
    assert env.run("--dry-run", "network-create", "name-label=z").returncode == 0
    assert env.dump() == before
    p = env.run(
        "network-create",
        "name-label=z",
        "--",
        "--id=@z",
        "network-create",
        "name-label=zz",
        "--",
        "network-destroy",
        "uuid=@z",
    )
    assert p.returncode == 0, p.stderr
    assert [r["name-label"] for r in env.inv.run("network-list", params="name-label")].count("z") == 1
    # a failing chain commits nothing
    before = env.dump()
    p = env.run("network-create", "name-label=q", "--", "network-create", "name-label=q2", "bridge=xapi0")
    assert p.returncode == 1 and env.dump() == before
