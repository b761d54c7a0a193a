"""vmctl: an xe/ovs-vsctl-style virtualization manager.

The library is usable without the CLI::

    import vmctl
    inv = vmctl.open("/tmp/inv.db")
    uuid = inv.run("vm-create", **{"name-label": "web1"})
"""

__version__ = "0.1.0"


def open(db: str | None = None, **options):  # noqa: A001 - mirrors sqlite3.connect / dbm.open
    """Open an inventory and return an :class:`vmctl.api.Inventory`."""
    from vmctl.api import Inventory

    return Inventory(db, **options)
