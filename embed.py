"""Embed images with a trained run, or export its embedding network.

    python embed.py --run RUN_DIR [--checkpoint best|last|FILE] --images DIR_OR_LIST --out INDEX_DIR
    python embed.py --run RUN_DIR [--checkpoint ...] --export onnx|torchscript --out FILE

The network is rebuilt from the run's saved options (no training flags to repeat) and gets the weights of
the run's best checkpoint (default) or another one. Images go through the run's evaluation transform, in
batches, on the GPU when there is one; the index folder holds the L2-normalised embeddings, a table of
paths and classes, and a faiss index (inference/index.py), written atomically. Search it with search.py.
README.md "Use your model" shows both commands on the quickstart's run.
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import torch

from inference import cli, images, index
from inference import run as runs
from inference.export import EXPORTERS, TOLERANCE, export


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog="embed.py", allow_abbrev=False,
                        description="Embed an image folder with a trained run, or export its embedding network.")
    parser.add_argument("--run", required=True, help="The run folder (<save_path>/<dataset>/<run>).")
    parser.add_argument("--checkpoint", default="best",
                        help="best (the run's best checkpoint of its first --storage_metrics), last, or a "
                             "checkpoint file name in the run folder.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", help="A folder of images (class subfolders optional) or a list file with one "
                                       "image path per line (optionally a tab and its class).")
    what.add_argument("--export", choices=sorted(EXPORTERS),
                      help=f"Write the embedding network alone to --out, checked against PyTorch to {TOLERANCE:.0e}.")
    parser.add_argument("--out", required=True, help="The index folder to write (with --images), or the model file "
                                                     "(with --export).")
    cli.add_device_flags(parser)
    return parser


def embed_folder(args, run) -> dict:
    """Embed `args.images` and write the index folder `args.out`; returns what was written."""
    index.check_out(args.out)
    found = images.find_images(args.images)
    embeddings, kept = cli.embed(args, run, found, f"--images {args.images}")
    meta = {"run": run.run_dir, "checkpoint": os.path.basename(run.checkpoint), "evaltype": run.opt.evaltypes[0],
            "seed": run.opt.seed, "evaluation_metrics": run.opt.evaluation_metrics, "images": os.path.abspath(args.images)}
    index.write(args.out, embeddings, kept.paths, kept.classes, meta)
    labelled = sum(1 for c in kept.classes if c)
    return {"images": len(kept), "skipped": len(found) - len(kept), "dim": embeddings.shape[1],
            "classes": len({c for c in kept.classes if c}), "labelled": labelled}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    with cli.one_line_messages("embed.py"):
        device = cli.device(args) if args.images else torch.device("cpu")
        run = runs.load(args.run, args.checkpoint, device)
        print(f"Run {args.run}: {run.opt.arch}, embed_dim {run.opt.embed_dim}, "
              f"checkpoint {os.path.basename(run.checkpoint)}, on {device}", flush=True)
        if args.export:
            checked = export(run, args.export, args.out)
            print(f"Exported {args.out} ({args.export}): images B x {' x '.join(map(str, checked['input_shape']))} "
                  f"float32 -> embeddings B x {checked['output_dim']}; max |exported - PyTorch| "
                  f"{checked['max_abs_diff']:.1e} on {checked['checked_images']} sample images "
                  f"(tolerance {checked['tolerance']:.0e})", flush=True)
            return checked
        written = embed_folder(args, run)
        print(f"Wrote {args.out}: {written['images']} images ({written['labelled']} in {written['classes']} classes, "
              f"{written['skipped']} unreadable skipped), {written['dim']}-d embeddings", flush=True)
        return written


if __name__ == "__main__":
    main(sys.argv[1:])
