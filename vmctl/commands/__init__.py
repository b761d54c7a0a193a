"""The command table, filled by importing every module of this package (each family module
registers its commands with the `@command` decorator on import)."""

import importlib
import pkgutil

from vmctl.commands.table import COMMANDS, Command, register

_loaded = False
_NOT_FAMILIES = {"table"}


def load() -> dict[str, Command]:
    global _loaded
    if not _loaded:
        _loaded = True
        from vmctl.commands import generic

        generic.register_generic()
        for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
            if mod not in _NOT_FAMILIES and mod != "generic":
                importlib.import_module(f"vmctl.commands.{mod}")
    return COMMANDS


__all__ = ["COMMANDS", "Command", "load", "register"]
