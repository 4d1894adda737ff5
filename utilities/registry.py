"""Name -> object registries, one per package (criteria, batch miners, backbones, datasets, metrics)."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, TypeVar

from utilities import flags as flag_tools
from utilities.errors import UsageError

T = TypeVar("T")


class Registry(Dict[str, T]):
    """A dict filled by a decorator where each entry is defined.

    `kind` names what is registered ("loss", "batch miner", ...) and `flag` the command-line flag that
    picks from it, so that an unknown name gets one line listing the choices.
    """

    def __init__(self, kind: str, flag: str):
        super().__init__()
        self.kind = kind
        self.flag = flag

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self[name] = obj
            return obj

        return add

    def lookup(self, name: str) -> T:
        if name not in self:
            raise UsageError(
                f"{self.flag}: unknown {self.kind} '{name}'; choose one of: {', '.join(sorted(self))}"
            )
        return self[name]


class ComponentRegistry(Registry[type]):
    """A registry of classes configured by flags declared next to them (`FLAGS`, utilities/flags.py): the
    losses and the miners. Registering stamps the class with its registry `name`."""

    def register(self, name: str) -> Callable[[type], type]:
        add = super().register(name)

        def stamp(cls: type) -> type:
            cls.name = name
            return add(cls)

        return stamp

    def add_flags(self, group, names: Optional[Iterable[str]] = None) -> None:
        """Add the flags of the classes `names` (default: all, in registration order) to an argparse group."""
        names = list(self) if names is None else names
        flag_tools.add_flags(group, [f for name in names for f in self[name].FLAGS])
