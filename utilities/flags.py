"""Command-line flags declared next to the class they configure (losses, miners).

A component class lists its flags in `FLAGS`. Its registry adds them to the parser, in registration order
(`ComponentRegistry.add_flags`), and the CLI builds the class from the parsed namespace with
`options(opt, cls.FLAGS)`: each entry gives one keyword argument of the constructor. The constructor's own
defaults equal the flags' defaults (tests/test_python_api.py checks it), so a component built in Python with
no arguments is the component the CLI builds with no flags.

    FLAGS = (flag("--loss_triplet_margin", param="margin", default=0.2, type=float),)

`reads(dest, param)` is an entry for a keyword argument taken from a flag declared elsewhere (a general flag
such as --lr, or another component's flag); it is not added to the parser again.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

#: (flag value, whole namespace) -> keyword argument
Convert = Callable[[Any, argparse.Namespace], Any]


@dataclass(frozen=True, eq=False)
class Flag:
    """One flag: its names (the first is the canonical one, the others aliases; none for `reads`), the
    namespace attribute it fills, the constructor keyword it sets (None: read by the class's own
    `options_from`), argparse's keyword arguments, and an optional conversion of the value."""

    names: Tuple[str, ...]
    dest: str
    param: Optional[str]
    spec: Mapping[str, Any] = field(default_factory=dict)
    convert: Optional[Convert] = None

    def value(self, opt: argparse.Namespace):
        value = getattr(opt, self.dest)
        return value if self.convert is None else self.convert(value, opt)


def flag(*names: str, param: Optional[str], convert: Optional[Convert] = None, dest: Optional[str] = None,
         **spec) -> Flag:
    """A flag declared by this component; `spec` holds argparse's keyword arguments (default, type, help...)."""
    return Flag(tuple(names), dest or names[0].lstrip("-"), param, spec, convert)


def reads(dest: str, param: str, convert: Optional[Convert] = None) -> Flag:
    """Keyword argument `param` from the namespace attribute `dest` of a flag declared elsewhere."""
    return Flag((), dest, param, {}, convert)


def add_flags(group, flags: Iterable[Flag]) -> None:
    """Add each declared flag to the argparse `group` once (subclasses inherit their parent's FLAGS; a flag is
    the same when it is the same declaration)."""
    added = set()
    for f in flags:
        if f.names and f not in added:
            group.add_argument(*f.names, dest=f.dest, **f.spec)
            added.add(f)


def options(opt: argparse.Namespace, flags: Iterable[Flag]) -> Dict[str, Any]:
    """The constructor keyword arguments that `flags` give for the parsed namespace `opt`."""
    return {f.param: f.value(opt) for f in flags if f.param is not None}


def times_lr(value: float, opt: argparse.Namespace) -> float:
    """An lr multiplier flag turned into an absolute lr: value x --lr."""
    return value * opt.lr
