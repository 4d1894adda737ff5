"""Tables of mean +- std over seeds from run folders, grouped by --group: no W&B needed.

    python Result_Evaluations.py --runs Training_Results/cub200 [more folders] [--metrics test/e_recall@1 test/nmi]
                                 [--out results] [--min_epochs 41] [--at_epoch 5] [--scale 100] [--digits 2]

Writes `<out>.md` (one table per protocol: last epoch, and each value's maximum over epochs) and `<out>.csv`
(both protocols, one row per group and protocol, mean and std columns per value), and prints the markdown.
The successor of the reference's Result_Evaluations.py, which read the runs back from W&B. See
evaluation/results_table.py for the protocols and docs/runs.md for an example.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from evaluation import results_table
from utilities.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="Result_Evaluations.py", allow_abbrev=False,
                                     description="Mean +- std over seeds from run folders.")
    parser.add_argument("--runs", nargs="+", required=True,
                        help="Run folders, or folders above them (e.g. <save_path>/<dataset>).")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help="Values to tabulate, named as in summary.json (default: every test/ value).")
    parser.add_argument("--out", default=None, help="Output prefix for .md and .csv (default: <first --runs>/results).")
    parser.add_argument("--min_epochs", type=int, default=0,
                        help="Skip runs with fewer logged epochs (the reference dropped runs with 40 or fewer).")
    parser.add_argument("--at_epoch", type=int, default=None,
                        help="Read each run as it stood after this many epochs (a shorter budget read off longer runs "
                             "with a constant learning rate); runs with fewer epochs count with what they have.")
    parser.add_argument("--scale", type=float, default=100.0, help="Multiply values by this (100: percent).")
    parser.add_argument("--digits", type=int, default=2, help="Decimals in the markdown table.")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Write the tables; returns the markdown."""
    args = build_parser().parse_args(argv)
    try:
        rows, names, notes = results_table.build(args.runs, args.metrics, args.min_epochs, args.at_epoch)
    except UsageError as err:
        sys.stderr.write(f"Result_Evaluations.py: error: {err}\n")
        raise SystemExit(2) from None
    for note in notes:
        sys.stderr.write(f"Result_Evaluations.py: {note}\n")
    out = args.out or os.path.join(args.runs[0], "results")
    text = results_table.markdown(rows, names, args.scale, args.digits)
    with open(out + ".md", "w") as f:
        f.write(text)
    results_table.write_csv(out + ".csv", rows, names, args.scale)
    print(text)
    print(f"Wrote {out}.md and {out}.csv")
    return text


if __name__ == "__main__":
    main()
