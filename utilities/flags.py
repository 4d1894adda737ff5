"""Command-line flags declared next to the class they configure (losses, miners).

A component class lists its flags in `FLAGS`. Its registry adds them to the parser, in registration order
(`ComponentRegistry.add_flags`), and the CLI builds the class from the parsed namespace with
`options(opt, cls.FLAGS)`: each entry gives one keyword argument of the constructor. The constructor's own
defaults equal the flags' defaults (tests/test_python_api.py checks it), so a component built in Python with
no arguments is the component the CLI builds with no flags.

    FLAGS = (flag("--loss_triplet_margin", param="margin", default=0.2, type=float),)

`reads(dest, param)` is an entry for a keyword argument taken from a flag declared elsewhere (a general flag
such as --lr, or another component's flag); it is not added to the parser again.

Every numeric flag declares its range where it is declared, as its argparse `type`: `Bounded(float, gt=0)`
parses the value, refuses NaN, infinities and values outside the range with one line
(`main.py: error: argument --lr: -1 is out of range: must be a number > 0`), and `RangeHelpFormatter` writes
the range into --help. The ranges are those in which the run can be built and trained without a numerical
failure the flag alone causes (a temperature of 0, a weight of inf); combinations of flags are checked by
`parameters.validate`.
"""
from __future__ import annotations

import argparse
import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

Number = Union[int, float]

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


@dataclass(frozen=True)
class Bounded:
    """An argparse `type`: a number of `kind` (int or float), finite, with `ge` <= value, `gt` < value,
    value <= `le`, value < `lt` (each bound optional); `also` lists values accepted outside the range (a
    sentinel such as -1 = "off"). A bad value raises `argparse.ArgumentTypeError`, which argparse turns
    into one line naming the flag."""

    kind: type = float
    ge: Optional[Number] = None
    gt: Optional[Number] = None
    le: Optional[Number] = None
    lt: Optional[Number] = None
    also: Tuple[Number, ...] = ()

    def __call__(self, text: str) -> Number:
        noun = "an integer" if self.kind is int else "a number"
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {noun}; must be {self.describe()}") from None
        if value in self.also:
            return value
        if not math.isfinite(value) or not self.contains(value):
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {self.describe()}")
        return value

    def contains(self, value: Number) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self) -> str:
        """`an integer >= 1`, `a number in (0, 1]`, `a number >= 0, or -1`, `a finite number`."""
        noun = "an integer" if self.kind is int else "a number"
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        high = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        if low and high:
            text = f"{noun} in {low[0]}{_show(low[1])}, {_show(high[0])}{high[1]}"
        elif low:
            text = f"{noun} {'>=' if low[0] == '[' else '>'} {_show(low[1])}"
        elif high:
            text = f"{noun} {'<=' if high[1] == ']' else '<'} {_show(high[0])}"
        else:
            text = noun if self.kind is int else "a finite number"
        return text + "".join(f", or {_show(v)}" for v in self.also)


def _show(value: Number) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


class RangeHelpFormatter(argparse.HelpFormatter):
    """--help lists each numeric flag's range after its help text: `[range: a number > 0]`."""

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action.type, Bounded) and action.help != argparse.SUPPRESS:
            action = copy.copy(action)
            action.help = f"{action.help or ''} [range: {action.type.describe()}]".strip()
        return super()._format_action(action)
