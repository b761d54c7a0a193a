"""The command table, filled by importing the modules of this package (each family module
registers its commands with the `@command` decorator on import): all of them (`load`), or only
the one declaring a command (`find`), which is what starting one command needs."""

import importlib
import pkgutil

from vmctl.commands.table import COMMANDS, Command, register

_loaded = False
_NOT_FAMILIES = {"table", "_index"}
# Generic commands (<class>-list, <class>-param-*) apply the param hooks and setters every family
# module registers: they need the whole table.
_WHOLE_TABLE = "generic"


def load() -> dict[str, Command]:
    """The whole table, in the order of the generated index whatever was imported before."""
    global _loaded
    if not _loaded:
        _loaded = True
        from vmctl.commands import generic
        from vmctl.commands._index import MODULES

        generic.register_generic()
        for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
            if mod not in _NOT_FAMILIES and mod != "generic":
                importlib.import_module(f"vmctl.commands.{mod}")
        generic.describe_param_setters()
        order = {name: i for i, name in enumerate(MODULES)}
        ordered = sorted(COMMANDS.items(), key=lambda kv: order.get(kv[0], len(order)))
        COMMANDS.clear()
        COMMANDS.update(ordered)
    return COMMANDS


def find(name: str) -> Command | None:
    """The table entry of one command, importing only the module the generated index says
    declares it (vmctl start-up: one family module rather than all of them); None when there is
    no such command."""
    cmd = COMMANDS.get(name)
    if cmd is not None and (_loaded or cmd.module != _WHOLE_TABLE):
        return cmd
    if not _loaded:
        from vmctl.commands._index import MODULES

        mod = MODULES.get(name)
        if mod is not None and mod != _WHOLE_TABLE:
            importlib.import_module(f"vmctl.commands.{mod}")
            cmd = COMMANDS.get(name)
            if cmd is not None:
                return cmd
    return load().get(name)


__all__ = ["COMMANDS", "Command", "find", "load", "register"]
