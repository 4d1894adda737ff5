"""The run folder `<save_path>/<dataset>/<run>` and the record of the parameters it was made with.

A run folder is always inside `--save_path/<dataset>`: the run name is one folder name (`check_run_name`
refuses a --savename or --group that would leave it), and two runs started at the same instant with the
same name get two folders (`make_run_dir` creates them with an exclusive mkdir).
"""
from __future__ import annotations

import itertools
import json
import os
import time

from utilities.errors import UsageError

DEFAULT_NAME = "group_plus_seed"
SEPARATORS = tuple(sep for sep in (os.sep, os.altsep, "/") if sep)


def run_name(opt) -> str:
    """`<group>_s<seed>` by default with --log_online, `<DATASET>_<ARCH>_<timestamp>` by default without (a
    separator in a library model's name, `timm:hf-hub:org/model`, becomes '-'), else --savename as given."""
    if opt.savename == DEFAULT_NAME:
        if opt.log_online:
            return f"{opt.group}_s{opt.seed}"
        name = f"{opt.dataset.upper()}_{opt.arch.upper()}_{time.strftime('%Y-%m-%d-%H-%M-%S')}"
        for sep in SEPARATORS:
            name = name.replace(sep, "-")
        return name
    return opt.savename


def check_run_name(opt) -> None:
    """Refuse a --savename (or, with --log_online and the default name, a --group) that is not one folder name,
    so the run folder cannot land outside --save_path."""
    if opt.savename != DEFAULT_NAME:
        flag, value = "--savename", opt.savename
    elif opt.log_online:
        flag, value = "--group", opt.group
    else:
        return
    name = run_name(opt)
    if name in ("", ".", "..") or any(sep in name for sep in SEPARATORS):
        raise UsageError(f"{flag} {value}: the run folder's name must be one folder name (no '/', not '.' or '..'); "
                         "the run folder is always created inside --save_path/<dataset>")


def check_save_path(save_path: str, dataset: str) -> None:
    """Refuse, before anything is built, a --save_path in which no run folder can be created: the nearest
    existing folder of `<save_path>/<dataset>` must be a writable folder (nothing is created here)."""
    target = os.path.abspath(os.path.join(save_path, dataset))
    existing = target
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"--save_path {save_path}: {existing} is a file, not a folder; pass a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--save_path {save_path}: cannot write in {existing} (permission denied); pass a folder "
                         "you can write to")


def make_run_dir(opt) -> str:
    """Create a fresh run folder; when the name is taken, append _1, _2, ... (keeping the name). Each folder is
    made by one exclusive mkdir, so concurrent runs never share one."""
    parent = os.path.join(opt.save_path, opt.dataset)
    base = os.path.join(parent, run_name(opt))
    try:
        os.makedirs(parent, exist_ok=True)
        for n in itertools.count():
            path = base if n == 0 else f"{base}_{n}"
            try:
                os.mkdir(path)
                return path
            except FileExistsError:
                continue
    except OSError as err:
        raise UsageError(f"--save_path {opt.save_path}: cannot create the run folder {base} "
                         f"({err.strerror or type(err).__name__})") from None


def jsonable_options(opt) -> dict:
    return {k: v for k, v in sorted(vars(opt).items()) if isinstance(v, (str, int, float, bool, list, type(None)))}


def write_parameters(run_dir: str, opt) -> None:
    """`Parameter_Info.txt` (each key, then its tab-indented value, as the reference) and `parameters.json`."""
    options = jsonable_options(opt)
    with open(os.path.join(run_dir, "Parameter_Info.txt"), "w") as f:
        for key, value in options.items():
            f.write(f"{key}\n\t{value}\n")
    with open(os.path.join(run_dir, "parameters.json"), "w") as f:
        json.dump(options, f, indent=1)
