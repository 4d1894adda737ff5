"""A synthetic CUB200-2011 tree: the real layout and image statistics, made once and reused.

`<root>/cub200/images/NNN.Synthetic_NNN/img_MMMM.jpg`, 100 training classes (5,864 images) and 100 test
classes (5,924 images), as CUB's split. Each image is ~500 x 375 (long side 500, short side 300-400, a fifth
portrait), JPEG quality 90, about 47 KB like CUB's photographs, so that decoding costs what it costs on
them: a 1/f-like texture (bicubic-upsampled noise at five octaves, two of them blended at random offsets),
a class colour, and fine sensor-like grain. Generation runs in a process pool (about 10 s on 16 cores);
a `MANIFEST.json` written last marks a finished tree, which later calls reuse.

    python benchmarks/synthetic_cub.py --root /tmp/s2sd_bench [--tiny]
"""
from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

TEXTURE_SIDE = 640
TEXTURES = 6


@dataclass(frozen=True)
class TreeSpec:
    train_classes: int = 100
    test_classes: int = 100
    train_images: int = 5864
    test_images: int = 5924
    long_side: int = 500
    short_side: Tuple[int, int] = (300, 400)
    quality: int = 90
    grain: float = 3.5
    seed: int = 0


FULL = TreeSpec()
TINY = TreeSpec(train_classes=4, test_classes=4, train_images=32, test_images=32, long_side=96, short_side=(64, 80))


def texture(seed: int, side: int = TEXTURE_SIDE) -> np.ndarray:
    """side x side x 3 float32, zero mean and unit std: noise at 5 octaves, each 0.6 x the coarser one."""
    rng = np.random.default_rng(seed)
    out = np.zeros((side, side, 3), np.float32)
    amplitude = 1.0
    for cells in (4, 12, 36, 108, 324):
        small = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
        out += amplitude * np.asarray(Image.fromarray(small).resize((side, side), Image.BICUBIC), np.float32)
        amplitude *= 0.6
    return (out - out.mean((0, 1))) / out.std()


_BANK: List[np.ndarray] = []


def _init_worker(seed: int) -> None:
    _BANK[:] = [texture(seed * 1000 + k) for k in range(TEXTURES)]


def _write(job) -> int:
    path, seed, width, height, tint, quality, grain = job
    rng = np.random.default_rng(seed)
    side = _BANK[0].shape[0]
    a, b = rng.choice(len(_BANK), 2, replace=False)
    ya, xa, yb, xb = rng.integers(0, side - height), rng.integers(0, side - width), \
        rng.integers(0, side - height), rng.integers(0, side - width)
    mix = 0.7 * _BANK[a][ya:ya + height, xa:xa + width] + 0.5 * _BANK[b][yb:yb + height, xb:xb + width][::-1]
    pixels = 128 + 50 * mix + np.asarray(tint, np.float32) + rng.normal(0, grain, (height, width, 1)).astype(np.float32)
    tmp = path + ".tmp"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(tmp, format="JPEG", quality=quality)
    os.replace(tmp, path)
    return os.path.getsize(path)


def _jobs(images_root: str, spec: TreeSpec):
    rng = np.random.default_rng(spec.seed)
    n_classes = spec.train_classes + spec.test_classes
    per_class = np.concatenate([np.full(spec.train_classes, spec.train_images // spec.train_classes),
                                np.full(spec.test_classes, spec.test_images // spec.test_classes)])
    per_class[:spec.train_images % spec.train_classes] += 1
    per_class[spec.train_classes:spec.train_classes + spec.test_images % spec.test_classes] += 1
    jobs = []
    for c in range(n_classes):
        folder = os.path.join(images_root, f"{c + 1:03d}.Synthetic_{c + 1:03d}")
        os.makedirs(folder, exist_ok=True)
        tint = rng.integers(-40, 41, 3).tolist()
        for i in range(per_class[c]):
            short = int(rng.integers(spec.short_side[0], spec.short_side[1] + 1))
            width, height = (spec.long_side, short) if rng.random() < 0.8 else (short, spec.long_side)
            jobs.append((os.path.join(folder, f"img_{i:04d}.jpg"), int(rng.integers(2**62)), width, height, tint,
                         spec.quality, spec.grain))
    return jobs


def make_tree(root: str, spec: TreeSpec = FULL, workers: Optional[int] = None) -> dict:
    """Write the tree under `root` (reusing a finished one); returns its manifest."""
    manifest_path = os.path.join(root, "cub200", "MANIFEST.json")
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest["spec"] == json.loads(json.dumps(asdict(spec))):
            return manifest
    jobs = _jobs(os.path.join(root, "cub200", "images"), spec)
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(spec.seed,)) as pool:
        sizes = list(pool.map(_write, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    manifest = {"spec": asdict(spec), "images": len(jobs), "mean_kb": float(np.mean(sizes)) / 1024}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    return json.loads(json.dumps(manifest))  # as a later call reads it back


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(make_tree(args.root, TINY if args.tiny else FULL, args.workers)))


if __name__ == "__main__":
    main()
