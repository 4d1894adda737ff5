"""Every numeric flag's range: declared next to the flag (`Bounded`), refused at parse time with one line, shown
in --help; and a property test over random flag values in and out of range: the run builds (`--dry_run`) or
stops with one line and exit status 2, never a traceback."""
import argparse
import contextlib
import io
import math
import shlex

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import main
import parameters
from utilities.flags import Bounded

BASE = shlex.split("--dataset glyphs --arch slimresnet18_normalize --not_pretrained --kernels 0 --no_train_metrics "
                   "--tsne_points 0 --plot_every 0 --embed_dim 16 --bs 16 --device cpu --dry_run")
RANGED = [action for action in parameters.build_parser()._actions if isinstance(action.type, Bounded)]


def test_every_numeric_flag_declares_a_range_that_holds_its_default():
    untyped = [a.option_strings[0] for a in parameters.build_parser()._actions if a.type in (int, float)]
    assert untyped == []
    assert len(RANGED) > 60
    for action in RANGED:
        defaults = action.default if isinstance(action.default, list) else [action.default]
        for value in [v for v in defaults if v is not None]:
            assert value in action.type.also or action.type.contains(value), action.option_strings[0]


def test_help_shows_each_range():
    text = " ".join(parameters.build_parser().format_help().split())
    assert "Learning rate of the network (and the S2SD heads). [range: a number > 0]" in text
    assert "Own learning rate for the embedding layer; -1: --lr. [range: a number >= 0, or -1]" in text
    assert "--loss_arcface_angular_margin LOSS_ARCFACE_ANGULAR_MARGIN [range: a number in [0, 3.14159)]" in text
    assert text.count("[range: ") == len(RANGED)


@pytest.mark.parametrize("spec,text,expected", [
    (Bounded(int, ge=1), "3", 3),
    (Bounded(float, gt=0), "1e-5", 1e-5),
    (Bounded(float, ge=0, also=(-1,)), "-1", -1),
    (Bounded(float, ge=-1, le=1), "-1", -1),
])
def test_values_in_range_parse_to_their_type(spec, text, expected):
    value = spec(text)
    assert value == expected and type(value) is spec.kind


@pytest.mark.parametrize("spec,text,message", [
    (Bounded(int, ge=1), "0", "0 is out of range: must be an integer >= 1"),
    (Bounded(int, ge=1), "1.5", "'1.5' is not an integer; must be an integer >= 1"),
    (Bounded(float, gt=0), "0", "0 is out of range: must be a number > 0"),
    (Bounded(float, gt=0), "inf", "inf is out of range: must be a number > 0"),
    (Bounded(float, ge=0), "nan", "nan is out of range: must be a number >= 0"),
    (Bounded(float, ge=0), "-inf", "-inf is out of range: must be a number >= 0"),
    (Bounded(float, ge=0, also=(-1,)), "-0.5", "-0.5 is out of range: must be a number >= 0, or -1"),
    (Bounded(float, gt=0, lt=1), "1", "1 is out of range: must be a number in (0, 1)"),
    (Bounded(float, ge=-1, le=1), "x", "'x' is not a number; must be a number in [-1, 1]"),
])
def test_values_out_of_range_are_refused_with_the_range(spec, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        spec(text)
    assert str(err.value) == message


def _edge(spec: Bounded, below: bool) -> float:
    """The value just outside (below=True: under the lower bound) or just inside the range's lower end."""
    low = spec.ge if spec.ge is not None else spec.gt
    if spec.kind is int:
        first = low if spec.ge is not None else low + 1
        return first - 1 if below else first
    if below:
        return low if spec.gt is not None else math.nextafter(low, -math.inf)
    return low if spec.ge is not None else math.nextafter(low, math.inf)


@st.composite
def flag_value(draw, action):
    """A value for `action`: inside its range (at either end, or a little above its lower end), outside it
    (just below, above the upper end, NaN, infinities), or not a number at all."""
    spec = action.type
    kind = draw(st.sampled_from(["low", "high", "inside", "below", "above", "special", "garbage"]))
    has_low = spec.ge is not None or spec.gt is not None
    high = spec.le if spec.le is not None else spec.lt
    if kind == "low" and has_low:
        value = _edge(spec, below=False)
    elif kind == "high" and high is not None:
        value = high if spec.le is not None else high - 1 if spec.kind is int else math.nextafter(high, -math.inf)
    elif kind == "below" and has_low:
        value = _edge(spec, below=True)
    elif kind == "above" and high is not None:
        value = high + 1 if spec.kind is int or spec.lt is None else high
    elif kind == "special":
        return draw(st.sampled_from(["nan", "inf", "-inf", *map(str, spec.also)]))
    elif kind == "garbage":
        return draw(st.sampled_from(["", "abc", "1,5", "0x10", "--", "1.5" if spec.kind is int else "two"]))
    else:
        start = _edge(spec, below=False) if has_low else -8
        stop = min(high if high is not None else start + 64, start + 64)
        if spec.kind is int:
            value = draw(st.integers(start, stop if spec.le is not None or high is None else stop - 1))
        else:
            value = draw(st.floats(start, stop, allow_nan=False, exclude_max=spec.lt is not None))
    return repr(value) if spec.kind is float else str(value)


@st.composite
def command(draw):
    """The base command, a loss (S2SD among them), and 1 to 4 ranged flags with drawn values."""
    loss = draw(st.sampled_from(["multisimilarity", "margin", "proxyanchor", "softtriplet", "histogram", "s2sd"]))
    argv = BASE + ["--loss", loss]
    if loss == "s2sd":
        argv += ["--loss_s2sd_source", draw(st.sampled_from(["multisimilarity", "margin", "arcface"])),
                 "--loss_s2sd_target_dims", "8", "12"]
    for action in draw(st.lists(st.sampled_from(RANGED), min_size=1, max_size=4, unique_by=id)):
        count = action.nargs if isinstance(action.nargs, int) else (draw(st.integers(1, 3)) if action.nargs else 1)
        argv += [action.option_strings[0], *[draw(flag_value(action)) for _ in range(count)]]
    return argv


@pytest.fixture(scope="module")
def save_path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("never_written"))


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=command())
def test_random_flag_values_build_or_stop_with_one_line(save_path, argv):
    """Runs main.main in this process: a dry run returns; bad input raises SystemExit(2) after one line on stderr.
    Any other exception is a failure, which hypothesis reports with the command that caused it."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            summary = main.main(argv + ["--save_path", save_path])
        except SystemExit as exit_info:
            errors = [line for line in stderr.getvalue().splitlines() if "warning" not in line.lower()]
            assert exit_info.code == 2, (exit_info.code, stderr.getvalue())
            assert len(errors) == 1 and errors[0].startswith("main.py: error: "), stderr.getvalue()
            event("stopped with one line")
            return
    assert summary["dry_run"] is True
    event("built")


def test_the_dry_runs_wrote_nothing(save_path):
    import os

    assert os.listdir(save_path) == []
