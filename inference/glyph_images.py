"""Write the embedded glyphs as an image folder, so that embed.py and search.py can be tried on them:

    python -m inference.glyph_images glyph_images [--split test|train]

writes `<out>/<code point>/<nnnnn>.png`: one folder per character, named by its first Unicode code point
(`U+0041`), and one 32 x 32 grayscale PNG per font, numbered by its position in the split (the order in
which `datasets.select("glyphs", ...)` serves it). PNG is lossless, so the files hold the dataset's pixels
exactly. The folder is written atomically (a temporary folder renamed at the end).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import List, Optional, Sequence

from PIL import Image

from datasets import glyphs
from datasets.layout import Part
from inference import atomic


def class_folder(class_name: str) -> str:
    """'Α (U+0041 U+0391 U+0410)' -> 'U+0041' (class names as datasets/glyphs.py builds them)."""
    return re.search(r"U\+[0-9A-F]+", class_name).group(0)


def write_part(part: Part, class_names: Sequence[str], out: str) -> List[str]:
    """Write `part`'s images under `out` atomically; returns the path of each image, in the part's order."""
    relative = [os.path.join(class_folder(class_names[label]), f"{i:05d}.png")
                for i, label in enumerate(part.labels.tolist())]
    with atomic.written_folder(out) as tmp:
        for name, image in zip(relative, part.sources):
            os.makedirs(os.path.join(tmp, os.path.dirname(name)), exist_ok=True)
            Image.fromarray(image).save(os.path.join(tmp, name))
    return [os.path.join(out, name) for name in relative]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference.glyph_images", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="The folder to create.")
    parser.add_argument("--split", choices=["test", "train"], default="test",
                        help="The test characters (the 85 unseen ones) or the training ones.")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if os.path.exists(args.out):
        parser.error(f"{args.out} exists; choose a new folder")
    layout = glyphs.glyphs(None, None)
    paths = write_part(layout.testing if args.split == "test" else layout.training, layout.class_names, args.out)
    print(f"Wrote {len(paths)} glyph images of the {args.split} split to {args.out}/<code point>/", flush=True)
    return paths


if __name__ == "__main__":
    main(sys.argv[1:])
