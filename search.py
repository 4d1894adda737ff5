"""Search an index that embed.py wrote: nearest images, a picture of them, and the metrics of the index.

    python search.py --index INDEX_DIR --query IMAGE_OR_DIR [-k 10] [--grid FILE.png]
    python search.py --index INDEX_DIR --evaluate [--metrics e_recall@1 nmi ...]

Prints each query's k nearest images with their cosine similarities, nearest first. A query that is in the
index uses its stored embedding and is left out of its own neighbours (as the metrics' kNN leaves each
query out); any other image is embedded with the run and checkpoint that made the index. `--grid` draws the
queries and their neighbours, framed green (same class), red (another class) or grey (unknown).
`--evaluate` scores the index with the project's metrics, every image a query against all the others,
when every image has a class (class subfolders or a class column in the list file).
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from inference import adapters, cli, images, index
from inference import run as runs
from utilities.errors import UsageError


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog="search.py", allow_abbrev=False,
                        description="Nearest images in an index written by embed.py, and its metrics.")
    parser.add_argument("--index", required=True, help="The index folder embed.py wrote (--out).")
    parser.add_argument("--query", help="An image, a folder of images or a list file: each image is a query.")
    parser.add_argument("-k", type=int, default=10, help="Neighbours per query.")
    parser.add_argument("--grid", help="Draw the queries and their neighbours to this PNG file.")
    parser.add_argument("--grid_queries", type=int, default=8, help="Queries drawn in --grid (the first ones).")
    parser.add_argument("--evaluate", action="store_true",
                        help="Print the metrics of the index, every image a query against all the others.")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help="Metrics for --evaluate (default: the run's --evaluation_metrics).")
    parser.add_argument("--run", default=None,
                        help="The run folder that embeds new query images (default: the one that made the index).")
    cli.add_device_flags(parser)
    return parser


def shown(path: str) -> str:
    """`path` relative to the working folder when it lies inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def query_embeddings(args, ix: index.Index, queries: images.ImageList):
    """(embeddings, own rows in the index (-1: not in it), the readable queries). Queries in the index use
    their stored embeddings; the others are embedded with the run that made the index."""
    row_of = ix.row_of()
    own = [row_of.get(path, -1) for path in queries.paths]
    new = [i for i, row in enumerate(own) if row < 0]
    embedded = {}
    if new:
        run = runs.load(args.run or ix.meta["run"], ix.meta["checkpoint"], cli.device(args))
        vectors, kept = cli.embed(args, run, queries.subset(new), f"--query {args.query}")
        embedded = dict(zip(kept.paths, vectors))
    keep = [i for i, row in enumerate(own) if row >= 0 or queries.paths[i] in embedded]
    vectors = np.stack([ix.embeddings[own[i]] if own[i] >= 0 else embedded[queries.paths[i]] for i in keep])
    return vectors, np.asarray([own[i] for i in keep], dtype=np.int64), queries.subset(keep)


def class_text(ix: index.Index, row: int) -> str:
    label = ix.labels[row]
    return f" ({ix.class_names[label]})" if label >= 0 else ""


def same_class(ix: index.Index, query_row: int, query_class: str, row: int) -> Optional[bool]:
    """Whether neighbour `row` has the query's class; None when either class is unknown."""
    label = ix.labels[query_row] if query_row >= 0 else (ix.class_names.index(query_class)
                                                          if query_class in ix.class_names else -1)
    return None if label < 0 or ix.labels[row] < 0 else bool(label == ix.labels[row])


def open_image(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as err:  # PIL raises many types for broken files
        raise UsageError(f"--grid: cannot read {path} ({type(err).__name__}: {err})") from None


def search(args, ix: index.Index) -> dict:
    """Print each query's neighbours (and draw --grid); returns {"queries", "rows", "similarities"}."""
    found = images.find_images(args.query, flag="--query")
    vectors, own, queries = query_embeddings(args, ix, found)
    similarities, rows = index.nearest(ix, vectors, args.k, own)
    for q, path in enumerate(queries.paths):
        label = class_text(ix, own[q]) if own[q] >= 0 else (f" ({queries.classes[q]})" if queries.classes[q] else "")
        print(f"Query {shown(path)}{label}:")
        for rank, (row, similarity) in enumerate(zip(rows[q], similarities[q]), 1):
            if row >= 0:
                print(f"  {rank:3d}  {similarity:.4f}  {shown(ix.paths[row])}{class_text(ix, row)}")
    if args.grid:
        drawn = range(min(args.grid_queries, len(queries)))
        grid_rows = [(open_image(queries.paths[q]),
                      [(open_image(ix.paths[row]), same_class(ix, own[q], queries.classes[q], row))
                       for row in rows[q] if row >= 0]) for q in drawn]
        adapters.draw_grid(args.grid, grid_rows, f"{len(drawn)} of {len(queries)} queries and their {args.k} "
                                                 f"nearest in {shown(os.path.abspath(args.index))}")
        print(f"Grid of the first {len(drawn)} queries: {args.grid}")
    return {"queries": queries.paths, "rows": rows, "similarities": similarities}


def evaluate(args, ix: index.Index) -> dict:
    """Print and return the metrics of the whole index (every image a query against all the others)."""
    if not ix.labelled:
        unlabelled = int((ix.labels < 0).sum())
        raise UsageError(f"--evaluate: {unlabelled} of the {len(ix.labels)} images in {args.index} have no class; "
                         "embed a folder with one subfolder per class, or a list file with a class column")
    if len(ix.class_names) < 2:
        raise UsageError(f"--evaluate: {args.index} holds one class only; the metrics need at least two")
    names = args.metrics or ix.meta["evaluation_metrics"]
    try:
        values = adapters.compute_metrics(ix.embeddings, ix.labels, names, seed=ix.meta["seed"])
    except UsageError as err:  # the metrics name their own flag
        raise UsageError(str(err).replace("--evaluation_metrics", "--metrics", 1)) from None
    print(f"Metrics of {shown(os.path.abspath(args.index))} ({len(ix.labels)} images, {len(ix.class_names)} classes):")
    for name, value in values.items():
        print(f"  {name:<16s} {value:.4f}")
    return values


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.query or args.evaluate):
        parser.error("give --query IMAGE_OR_DIR, --evaluate, or both")
    if args.k < 1 or args.grid_queries < 1:
        parser.error("-k and --grid_queries must be at least 1")
    if args.grid and not args.query:
        parser.error("--grid draws the neighbours of --query; give --query too")
    with cli.one_line_messages("search.py"):
        ix = index.read(args.index)
        result = search(args, ix) if args.query else {}
        if args.evaluate:
            result["metrics"] = evaluate(args, ix)
        return result


if __name__ == "__main__":
    main(sys.argv[1:])
