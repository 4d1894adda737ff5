"""What checking every image before a run costs (datasets/image_check.py), side by side in one process.

    python benchmarks/image_check_cost.py                    # 2000 JPEGs of 500 x 375 (CUB's typical size)
    python benchmarks/image_check_cost.py --n 200 --size 64 48

On a folder of synthetic photographs (smooth colour fields plus noise, JPEG quality 90) it times, each on
the same files:

1. reading only the headers (the check before issue 12, which let truncated files through);
2. the full decode check with an empty cache (a dataset's first run);
3. the same check again (every later run: one `stat` per file, verdicts from the cache);
4. decoding every image once as a training epoch's loader does (PIL open + RGB conversion, one thread):
   the yardstick, since a run reads its images every epoch.

and prints each time and its ratio to 4. One truncated file is among them; every check but the header scan
must flag it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def write_images(folder: str, n: int, size, seed: int = 0):
    """`n` JPEGs of `size` (width, height); the last one cut to two thirds of its bytes. Returns their paths."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    paths = []
    for i in range(n):
        a, b, c = rng.uniform(0, 255, (3, 3))
        field = np.stack([a[k] * xx + b[k] * yy + c[k] * xx * yy for k in range(3)], -1)
        pixels = np.clip(field + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"img_{i:05d}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    data = open(paths[-1], "rb").read()
    open(paths[-1], "wb").write(data[: len(data) * 2 // 3])
    return paths


def header_problem(path: str) -> str:
    try:
        with Image.open(path) as image:
            image.size
        return ""
    except Exception as err:
        return type(err).__name__


def load_once(path: str) -> None:
    from datasets.base import to_rgb

    try:
        with Image.open(path) as image:
            to_rgb(image)
    except OSError:
        pass


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, nargs=2, default=[500, 375], metavar=("W", "H"))
    args = parser.parse_args(argv)
    from datasets import image_check

    saved = os.environ.get("S2SD_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["S2SD_CACHE_DIR"] = os.path.join(tmp, "cache")  # an empty cache, removed afterwards
        try:
            paths = write_images(tmp, args.n, args.size)
            epoch, _ = timed(lambda: [load_once(p) for p in paths])
            header, header_flags = timed(lambda: [header_problem(p) for p in paths])
            first, first_flags = timed(lambda: image_check.decode_problems(paths))
            again, again_flags = timed(lambda: image_check.decode_problems(paths))
        finally:
            os.environ.pop("S2SD_CACHE_DIR")
            if saved is not None:
                os.environ["S2SD_CACHE_DIR"] = saved
    print(f"{args.n} JPEGs of {args.size[0]} x {args.size[1]}, one truncated; threads: "
          f"{min(32, os.cpu_count() or 1)}")
    rows = [("header scan (before)", header, header_flags), ("full decode check, first run", first, first_flags),
            ("full decode check, cached", again, again_flags)]
    print(f"{'one epoch of image loading (yardstick)':40s} {epoch:8.3f} s   1.000")
    for name, seconds, flags in rows:
        found = sum(bool(f) for f in flags)
        print(f"{name:40s} {seconds:8.3f} s   {seconds / epoch:.3f} of an epoch's loading; flags {found} file(s)")
    ok = [bool(f) for f in first_flags].count(True) == 1 and first_flags == again_flags and not any(header_flags)
    print("the truncated file is caught by the full check only" if ok else "UNEXPECTED verdicts")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
