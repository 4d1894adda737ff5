"""The run folder `<save_path>/<dataset>/<run>` and the record of the parameters it was made with."""
from __future__ import annotations

import json
import os
import time


def run_name(opt) -> str:
    """`<group>_s<seed>` by default with --log_online, `<DATASET>_<ARCH>_<timestamp>` by default without,
    else --savename as given."""
    if opt.savename == "group_plus_seed":
        if opt.log_online:
            return f"{opt.group}_s{opt.seed}"
        return f"{opt.dataset.upper()}_{opt.arch.upper()}_{time.strftime('%Y-%m-%d-%H-%M-%S')}"
    return opt.savename


def make_run_dir(opt) -> str:
    """Create a fresh run folder; on a name collision append _1, _2, ... (keeping the name)."""
    base = os.path.join(opt.save_path, opt.dataset, run_name(opt))
    path, n = base, 0
    while os.path.exists(path):
        n += 1
        path = f"{base}_{n}"
    os.makedirs(path)
    return path


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
