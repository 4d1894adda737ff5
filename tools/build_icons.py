"""Build the embedded `icons` dataset (datasets/icons_data/) from openly licensed Debian icon themes.

A class is one standard icon name of the freedesktop.org Icon Naming Specification (as listed by
icon-naming-utils' legacy-icon-mapping.xml, with the legacy names it maps to each), an instance is that icon as
drawn by one icon theme. Images are 32 x 32 RGB, the icon composited on white.

    python tools/build_icons.py [--debs DIR]          # write icons.npz, MANIFEST.json, preview.png
    python tools/build_icons.py [--debs DIR] --check  # rebuild in a temporary folder, compare with the manifest

The .deb files (exact versions in PACKAGES) are read from --debs, or fetched there with `apt-get download`
(Debian 12). Build-time needs: dpkg-deb, rsvg-convert (librsvg2-bin 2.54.7), Pillow, numpy. See
datasets/icons_data/README.md for the rules; every choice made here is recorded in the manifest.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets", "icons_data")
SIZE = 32
#: package -> version (Debian 12 "bookworm")
PACKAGES = {
    "icon-naming-utils": "0.8.90-7",
    "adwaita-icon-theme": "43-1",
    "breeze-icon-theme": "4:5.103.0-1",
    "deepin-icon-theme": "2021.11.24-1",
    "elementary-icon-theme": "7.2.0-1",
    "elementary-xfce-icon-theme": "0.17-1",
    "faba-icon-theme": "4.3-1",
    "faenza-icon-theme": "1.3.1-3",
    "gnome-colors-common": "5.5.1-2.1",
    "gnome-icon-theme": "3.12.0-5",
    "gnome-icon-theme-gartoon": "0.5-5",
    "gnome-icon-theme-nuovo": "0.5-4.2",
    "gnome-icon-theme-suede": "0.2.5-3",
    "gnome-icon-theme-yasis": "0.4.2-1.2",
    "lxde-icon-theme": "0.5.1-2.1",
    "mate-icon-theme": "1.26.0-1",
    "mint-y-icons": "1.6.5-1",
    "moka-icon-theme": "5.5.0-2",
    "numix-icon-theme": "0~20230220-1",
    "obsidian-icon-theme": "3.5-1.1",
    "oxygen-icon-theme": "5:5.103.0-1",
    "paper-icon-theme": "1.5.0+git20200312.aa3e8af-4",
    "papirus-icon-theme": "20230104-2",
    "sugar-icon-theme": "0.120-1",
    "suru-icon-theme": "20.05.1-3",
    "tango-icon-theme": "0.8.90-11",
    "yaru-theme-icon": "22.10.3-1",
}
#: theme folder (under usr/share/icons) -> package. One theme per design: colour variants of a theme
#: (Papirus-Dark, Mint-Y-Blue, Yaru-olive, Obsidian-Aqua, ...) are never candidates.
THEMES = {
    "Tango": "tango-icon-theme",
    "gnome": "gnome-icon-theme",
    "Adwaita": "adwaita-icon-theme",
    "mate": "mate-icon-theme",
    "oxygen": "oxygen-icon-theme",
    "breeze": "breeze-icon-theme",
    "Papirus": "papirus-icon-theme",
    "Numix": "numix-icon-theme",
    "elementary": "elementary-icon-theme",
    "elementary-xfce": "elementary-xfce-icon-theme",
    "Faenza": "faenza-icon-theme",
    "Obsidian": "obsidian-icon-theme",
    "Faba": "faba-icon-theme",
    "Moka": "moka-icon-theme",
    "Paper": "paper-icon-theme",
    "Mint-Y": "mint-y-icons",
    "Yaru": "yaru-theme-icon",
    "bloom": "deepin-icon-theme",
    "Sea": "deepin-icon-theme",
    "Vintage": "deepin-icon-theme",
    "suru": "suru-icon-theme",
    "gnome-colors-common": "gnome-colors-common",
    "nuoveXT2": "lxde-icon-theme",
    "gartoon": "gnome-icon-theme-gartoon",
    "Nuovo": "gnome-icon-theme-nuovo",
    "Suede": "gnome-icon-theme-suede",
    "yasis": "gnome-icon-theme-yasis",
    "sugar": "sugar-icon-theme",
}
#: licence of a package's icons where its copyright file has no "Files: *" stanza (read by hand)
LICENCE_OVERRIDES = {
    "mate-icon-theme": "LGPL-3+ or CC-BY-SA (Files: src/*.svg)",
    "gnome-icon-theme-nuovo": "GPL-2+",
    "gnome-icon-theme-yasis": "GPL-2+",
    "suru-icon-theme": "CC-BY-SA-3.0 (Files: suru/*)",
}
#: two themes whose icons of the same class correlate this much (median over shared classes) are one design
THEME_SIMILARITY_MAX = 0.9
#: an image that differs from another class's image by less than this mean absolute value (0-255) is a duplicate
DUPLICATE_MAD = 4.0
MIN_THEMES_PER_CLASS = 10
CLASS_ORDER_SALT = "icons-class-order-v1:"
SIZE_DIR = re.compile(r"^(\d+)(?:x(\d+))?(?:@(\d+)x)?$")


# ------------------------------------------------------------------------------------------------------- inputs

def fetch_debs(folder: str) -> Dict[str, str]:
    """package -> path of its .deb in `folder`, downloading the pinned versions that are missing."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for package, version in PACKAGES.items():
        name = f"{package}_{version.replace(':', '%3a')}_all.deb"
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=folder, check=True)
        paths[package] = path
    return paths


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(debs: Dict[str, str], root: str) -> Dict[str, str]:
    """Unpack each package into root/<package>; returns package -> folder."""
    folders = {}
    for package, path in debs.items():
        folder = os.path.join(root, package)
        os.makedirs(folder)
        subprocess.run(["dpkg-deb", "-x", path, folder], check=True)
        folders[package] = folder
    return folders


def licence(folder: str, package: str) -> str:
    if package in LICENCE_OVERRIDES:
        return LICENCE_OVERRIDES[package]
    with open(os.path.join(folder, "usr", "share", "doc", package, "copyright"), encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"^Files: \*[ \t]*\n(?:[^\n]+\n)*?License: *([^\n]+)$", text, re.M)
    if not match:
        raise SystemExit(f"build_icons.py: no 'Files: *' licence in {package}'s copyright; add it to LICENCE_OVERRIDES")
    return match.group(1).strip()


def standard_names(folder: str) -> List[Tuple[str, str, List[str]]]:
    """(context, standard name, legacy names) from legacy-icon-mapping.xml, in file order."""
    tree = ET.parse(os.path.join(folder, "usr", "share", "icon-naming-utils", "legacy-icon-mapping.xml"))
    return [(context.get("dir"), icon.get("name"), [link.text.strip() for link in icon.findall("link")])
            for context in tree.getroot().findall("context") for icon in context.findall("icon")]


# ------------------------------------------------------------------------------------------------------ themes

@dataclass(frozen=True)
class Source:
    path: str
    size: Optional[int]  # None: scalable
    raster: bool


def index_theme(theme_dir: str) -> Dict[str, List[Source]]:
    """icon name -> its files in the theme (never symbolic icons, never @2x/@3x renderings)."""
    found: Dict[str, List[Source]] = {}
    for folder, subfolders, files in os.walk(theme_dir):
        subfolders.sort()
        parts = os.path.relpath(folder, theme_dir).split(os.sep)
        if any("symbolic" in p or "@" in p for p in parts):
            continue
        size, scalable = None, "scalable" in parts
        for part in parts:
            match = SIZE_DIR.match(part)
            if match:
                size = int(match.group(1))
        if size is None and not scalable:
            continue
        for file_name in sorted(files):
            stem, ext = os.path.splitext(file_name)
            if ext not in (".png", ".svg", ".svgz") or stem.endswith("-symbolic"):
                continue
            path = os.path.join(folder, file_name)
            if not os.path.exists(path):  # a dangling link
                continue
            found.setdefault(stem, []).append(Source(path, None if scalable else size, ext == ".png"))
    return found


def choose(sources: List[Source]) -> Optional[Source]:
    """The theme's own 32 px drawing (PNG before SVG); else its scalable SVG; else its smallest larger drawing."""
    exact = [s for s in sources if s.size == SIZE]
    if exact:
        return sorted(exact, key=lambda s: (not s.raster, s.path))[0]
    scalable = sorted((s for s in sources if s.size is None), key=lambda s: s.path)
    if scalable:
        return scalable[0]
    larger = sorted((s for s in sources if s.size is not None and s.size > SIZE), key=lambda s: (s.size, not s.raster, s.path))
    return larger[0] if larger else None


def render(source: Source) -> Optional[np.ndarray]:
    """SIZE x SIZE x 3 uint8, the icon (aspect ratio kept, centred) over white; None if it has no ink."""
    if source.raster:
        image = Image.open(source.path)
        image.load()
        image = image.convert("RGBA")
    else:
        data = open(source.path, "rb").read()
        if source.path.endswith(".svgz"):
            data = gzip.decompress(data)
        done = subprocess.run(["rsvg-convert", "-w", str(SIZE), "-h", str(SIZE), "-a", "-f", "png"], input=data,
                              capture_output=True)
        if done.returncode:
            return None
        image = Image.open(io.BytesIO(done.stdout)).convert("RGBA")
    if max(image.size) != SIZE:
        scale = SIZE / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BOX)
    canvas = Image.new("RGBA", (SIZE, SIZE), (255, 255, 255, 255))
    canvas.alpha_composite(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2))
    pixels = np.asarray(canvas.convert("RGB"), dtype=np.uint8)
    if np.abs(pixels.astype(np.int16) - 255).max() < 32:
        return None
    return pixels


# ------------------------------------------------------------------------------------------------------- selection

def near(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < DUPLICATE_MAD


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))


def draw_all(folders: Dict[str, str], names) -> Dict[Tuple[str, str], Tuple[np.ndarray, str, str]]:
    """(class, theme) -> (image, the icon name used, file path relative to the package), for every drawable pair.

    A theme's icon is looked up under the standard name, then under the legacy names that the mapping gives to
    this standard name alone (a legacy name shared by two standard names would draw one picture for both)."""
    legacy_owners: Dict[str, int] = {}
    for _, _, legacy in names:
        for link in legacy:
            legacy_owners[link] = legacy_owners.get(link, 0) + 1
    drawn = {}
    for theme, package in THEMES.items():
        index = index_theme(os.path.join(folders[package], "usr", "share", "icons", theme))
        for _, name, legacy in names:
            for candidate in [name] + [link for link in legacy if legacy_owners[link] == 1]:
                source = choose(index.get(candidate, []))
                pixels = render(source) if source else None
                if pixels is not None:
                    drawn[(name, theme)] = (pixels, candidate, os.path.relpath(source.path, folders[package]))
                    break
    return drawn


def clone_themes(drawn) -> Dict[str, dict]:
    """Themes that redraw an earlier theme of THEMES (median correlation over shared classes above the limit)."""
    order = list(THEMES)
    dropped: Dict[str, dict] = {}
    for j, later in enumerate(order):
        for earlier in order[:j]:
            if earlier in dropped:
                continue
            shared = sorted(n for (n, t) in drawn if t == earlier and (n, later) in drawn)
            if len(shared) < 10:
                continue
            median = float(np.median([correlation(drawn[(n, earlier)][0], drawn[(n, later)][0]) for n in shared]))
            if median > THEME_SIMILARITY_MAX:
                dropped[later] = {"theme": later, "reason": f"redraws {earlier}", "median_correlation": round(median, 4),
                                  "shared_classes": len(shared)}
                break
    return dropped


def alias_classes(drawn, names) -> Dict[str, dict]:
    """Classes that most themes draw with the same picture as another class: keep the better covered one."""
    order = {name: k for k, (_, name, _) in enumerate(names)}
    themes_of: Dict[str, set] = {}
    for (n, t) in drawn:
        themes_of.setdefault(n, set()).add(t)
    classes = sorted(themes_of, key=lambda n: (-len(themes_of[n]), order[n]))
    dropped: Dict[str, dict] = {}
    for i, a in enumerate(classes):
        if a in dropped:
            continue
        for b in classes[i + 1:]:
            if b in dropped:
                continue
            shared = sorted(themes_of[a] & themes_of[b])
            same = [t for t in shared if near(drawn[(a, t)][0], drawn[(b, t)][0])]
            if shared and 2 * len(same) >= len(shared):
                dropped[b] = {"class": b, "reason": f"alias of {a}", "same_picture_in": f"{len(same)}/{len(shared)} themes"}
    return dropped


def near_pairs(images: np.ndarray) -> List[Tuple[int, int]]:
    """(i, j), i < j, of near-identical images. Average pooling to 4 x 4 never increases the mean absolute
    difference, so the pooled images screen the pairs before the full comparison."""
    n = len(images)
    pooled = images.reshape(n, 4, SIZE // 4, 4, SIZE // 4, 3).astype(np.float32).mean(axis=(2, 4)).reshape(n, -1)
    pairs = []
    for i in range(n - 1):
        candidates = np.nonzero(np.abs(pooled[i + 1:] - pooled[i]).mean(axis=1) < DUPLICATE_MAD)[0] + i + 1
        pairs += [(i, int(j)) for j in candidates if near(images[i], images[j])]
    return pairs


def remove_duplicates(drawn) -> List[dict]:
    """Drop pictures that would sit in two classes (both copies), and repeats of a picture within a class (the
    later theme's). Returns what was dropped."""
    keys = sorted(drawn, key=lambda k: (list(THEMES).index(k[1]), k[0]))
    removed, gone = [], set()
    for i, j in near_pairs(np.stack([drawn[k][0] for k in keys])):
        a, b = keys[i], keys[j]
        if a[0] == b[0]:
            if b not in gone:
                gone.add(b)
                removed.append({"class": b[0], "theme": b[1], "reason": f"same picture as theme {a[1]}"})
            continue
        for k, other in ((a, b), (b, a)):
            if k not in gone:
                gone.add(k)
                removed.append({"class": k[0], "theme": k[1], "reason": f"same picture as {other[0]} ({other[1]})"})
    for k in gone:
        del drawn[k]
    return sorted(removed, key=lambda r: (r["class"], r["theme"]))


def class_order_key(name: str) -> str:
    return hashlib.sha256((CLASS_ORDER_SALT + name).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------- output

def tool_versions() -> dict:
    import PIL

    rsvg = subprocess.run(["rsvg-convert", "--version"], capture_output=True, text=True).stdout.strip()
    return {"python": sys.version.split()[0], "numpy": np.__version__, "Pillow": PIL.__version__, "rsvg-convert": rsvg}


def arrays_sha256(arrays: Dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def preview(images: np.ndarray, labels: np.ndarray, themes: np.ndarray, path: str, n: int = 12) -> None:
    """n classes (rows) by n themes (columns), white where a theme does not draw a class."""
    grid = np.full((n * SIZE, n * SIZE, 3), 255, np.uint8)
    theme_ids = np.unique(themes)[:n]
    for row, label in enumerate(np.unique(labels)[:n]):
        for col, theme in enumerate(theme_ids):
            hit = np.nonzero((labels == label) & (themes == theme))[0]
            if len(hit):
                grid[row * SIZE:(row + 1) * SIZE, col * SIZE:(col + 1) * SIZE] = images[hit[0]]
    Image.fromarray(grid).save(path, optimize=False, compress_level=9)


def build(out_dir: str, debs_dir: str) -> dict:
    debs = fetch_debs(debs_dir)
    with tempfile.TemporaryDirectory() as tmp:
        folders = extract(debs, tmp)
        names = standard_names(folders["icon-naming-utils"])
        context_of = {name: context for context, name, _ in names}
        drawn = draw_all(folders, names)
        licences = {p: licence(folders[p], p) for p in PACKAGES if p != "icon-naming-utils"}
    dropped_themes = clone_themes(drawn)
    drawn = {k: v for k, v in drawn.items() if k[1] not in dropped_themes}
    dropped_classes = alias_classes(drawn, names)
    drawn = {k: v for k, v in drawn.items() if k[0] not in dropped_classes}
    dropped_images = remove_duplicates(drawn)
    counts: Dict[str, int] = {}
    for (n, _) in drawn:
        counts[n] = counts.get(n, 0) + 1
    for name in sorted(counts):
        if counts[name] < MIN_THEMES_PER_CLASS:
            dropped_classes[name] = {"class": name, "reason": f"drawn by {counts[name]} themes (< {MIN_THEMES_PER_CLASS})"}
    classes = sorted((n for n in counts if n not in dropped_classes), key=class_order_key)
    themes = sorted({t for (n, t) in drawn if n in classes}, key=str.lower)
    keys = sorted(((n, t) for (n, t) in drawn if n in classes), key=lambda k: (classes.index(k[0]), themes.index(k[1])))
    arrays = {
        "images": np.stack([drawn[k][0] for k in keys]),
        "labels": np.array([classes.index(n) for n, _ in keys], dtype=np.int64),
        "themes": np.array([themes.index(t) for _, t in keys], dtype=np.int64),
        "class_names": np.array(classes),
        "theme_names": np.array(themes),
    }
    os.makedirs(out_dir, exist_ok=True)
    npz = os.path.join(out_dir, "icons.npz")
    np.savez_compressed(npz, **arrays)
    preview(arrays["images"], arrays["labels"], arrays["themes"], os.path.join(out_dir, "preview.png"))
    n_classes, labels = len(classes), arrays["labels"]
    manifest = {
        "name": "icons",
        "description": "Freedesktop standard icons drawn by openly licensed icon themes: one class per standard icon "
                       "name, one instance per theme. Class ids [0, C//2) train, [C//2, C) test.",
        "file": "icons.npz",
        "sha256": sha256_file(npz),
        "content_sha256": arrays_sha256(arrays),
        "size_bytes": os.path.getsize(npz),
        "arrays": {
            "images": f"uint8 {list(arrays['images'].shape)}, RGB, the icon over white",
            "labels": f"int64 [{len(keys)}], class id",
            "themes": f"int64 [{len(keys)}], theme index",
            "class_names": f"unicode [{n_classes}], standard icon name",
            "theme_names": f"unicode [{len(themes)}]",
        },
        "num_classes": n_classes,
        "num_themes": len(themes),
        "num_images": len(keys),
        "split": {"train_class_ids": [0, n_classes // 2], "test_class_ids": [n_classes // 2, n_classes],
                  "rule": "first half of the class ids trains, second half is the test set"},
        "class_order": f"sorted by sha256('{CLASS_ORDER_SALT}' + name)",
        "theme_order": "theme names, case-insensitive alphabetical",
        "sample_order": "(label, theme)",
        "rendering": {
            "image_size": SIZE,
            "background": "white (255, 255, 255); the icon's alpha composited over it",
            "source_choice": "the theme's own 32 px drawing (PNG before SVG); else its scalable SVG; else its smallest "
                             "larger drawing; never an upscaled smaller one, never symbolic or @2x icons",
            "svg": "rsvg-convert -w 32 -h 32 -a (aspect kept), centred",
            "png": "box-filter reduction of the longer side to 32 px (aspect kept), centred",
            "lookup": "the standard name, then the legacy names icon-naming-utils maps to this standard name only; "
                      "only icons the theme itself ships (no inherited themes)",
            "blank": "images within 32 of white everywhere are rejected",
        },
        "selection": {
            "theme_similarity": "median over shared classes of the pixel correlation of the rendered icons",
            "theme_similarity_max": THEME_SIMILARITY_MAX,
            "duplicate": f"mean absolute pixel difference < {DUPLICATE_MAD} (of 255)",
            "alias_rule": "a class whose picture equals another class's in at least half the themes drawing both is "
                          "dropped (the one drawn by fewer themes)",
            "duplicate_rule": "a picture in two classes is dropped from both; a picture repeated within a class by "
                              "a later theme is dropped from that theme",
            "min_themes_per_class": MIN_THEMES_PER_CLASS,
        },
        "packages": [{"package": p, "version": v, "deb_sha256": sha256_file(debs[p]),
                      **({"license": licences[p]} if p in licences else {"role": "list of standard icon names"})}
                     for p, v in PACKAGES.items()],
        "themes": [{"index": i, "theme": t, "package": THEMES[t], "package_version": PACKAGES[THEMES[t]],
                    "license": licences[THEMES[t]], "instances": int((arrays["themes"] == i).sum())}
                   for i, t in enumerate(themes)],
        "classes": [{"id": i, "name": n, "context": context_of[n], "count": int((labels == i).sum()),
                     "themes": [t for (c, t) in keys if c == n],
                     "drawn_as": sorted({drawn[(c, t)][1] for (c, t) in keys if c == n} - {n})}
                    for i, n in enumerate(classes)],
        "dropped_themes": sorted(dropped_themes.values(), key=lambda d: d["theme"]),
        "dropped_classes": sorted(dropped_classes.values(), key=lambda d: d["class"]),
        "dropped_images": dropped_images,
        "sources": {f"{n}|{t}": drawn[(n, t)][2] for (n, t) in keys},
        "tools": tool_versions(),
    }
    with open(os.path.join(out_dir, "MANIFEST.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return manifest


def check(debs_dir: str) -> int:
    """Rebuild in a temporary folder; 0 if the data file, preview and manifest equal the committed ones."""
    with tempfile.TemporaryDirectory() as tmp:
        build(tmp, debs_dir)
        different = [name for name in ("icons.npz", "preview.png", "MANIFEST.json")
                     if sha256_file(os.path.join(tmp, name)) != sha256_file(os.path.join(OUT_DIR, name))]
    for name in different:
        print(f"build_icons.py: {name} differs from the rebuild", file=sys.stderr)
    if not different:
        print("build_icons.py: the rebuild equals datasets/icons_data bit for bit")
    return 1 if different else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="build_icons.py", description=__doc__.split("\n")[0])
    parser.add_argument("--debs", default=os.path.join(tempfile.gettempdir(), "icons_debs"),
                        help="Folder with the pinned .deb files (missing ones are fetched with apt-get download).")
    parser.add_argument("--check", action="store_true", help="Rebuild elsewhere and compare bit for bit.")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.debs)
    manifest = build(OUT_DIR, args.debs)
    print(f"{manifest['num_classes']} classes, {manifest['num_themes']} themes, {manifest['num_images']} images, "
          f"{manifest['size_bytes']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
