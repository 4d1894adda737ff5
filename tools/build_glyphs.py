#!/usr/bin/env python3
"""Build the embedded ``glyphs`` dataset: real font glyph drawings, 32x32.

What it is
----------
One class is one character (after merging Unicode homoglyphs, see below); one
instance is that character drawn by one font *family* in its regular/upright
style (e.g. "DejaVu Sans" Book only, never Bold or Oblique).  The fonts are
openly licensed fonts shipped by Debian packages.  The result is one file,
``glyphs.npz`` (written bit-for-bit reproducibly), plus ``MANIFEST.json``
(fonts, packages, versions, licences, sha256s, classes, parameters, report of
every selection decision) and ``preview.png`` (a contact sheet).

At run time nothing of this script is needed: the training code only reads the
committed ``glyphs.npz``.

How to regenerate (Debian 12 "bookworm", as root)
-------------------------------------------------
::

    apt-get update
    apt-get install -y --no-install-recommends \\
        fonts-3270 fonts-agave fonts-anonymous-pro fonts-arphic-uming \\
        fonts-baekmuk fonts-cantarell fonts-clear-sans fonts-cmu \\
        fonts-comfortaa fonts-croscore fonts-crosextra-carlito \\
        fonts-dejavu-core fonts-ebgaramond fonts-fantasque-sans \\
        fonts-firacode fonts-freefont-ttf fonts-georgewilliams fonts-go \\
        fonts-hack fonts-hanazono fonts-inter fonts-ipaexfont-gothic \\
        fonts-ipaexfont-mincho fonts-jetbrains-mono fonts-jura fonts-karmilla \\
        fonts-lato fonts-liberation2 fonts-linuxlibertine fonts-lmodern \\
        fonts-manrope fonts-monofur fonts-mononoki fonts-motoya-l-cedar \\
        fonts-mph-2b-damase fonts-nanum fonts-noto-cjk fonts-noto-core \\
        fonts-noto-mono fonts-oldstandard fonts-open-sans fonts-osifont \\
        fonts-paratype fonts-play fonts-roboto-slab fonts-roboto-unhinted \\
        fonts-sil-andika fonts-sil-charis fonts-sil-doulos \\
        fonts-sil-gentiumplus fonts-stix fonts-texgyre fonts-tuffy \\
        fonts-urw-base35 fonts-vlgothic fonts-vollkorn fonts-wqy-zenhei
    pip install Pillow==13.0.0 fonttools==4.68.0 numpy==2.4.6 \\
        confusable-homoglyphs==3.3.1
    python tools/build_glyphs.py           # rebuild datasets/glyphs_data/ in place
    python tools/build_glyphs.py --check   # rebuild in a temp
                                                          # dir, compare sha256

Pillow, fontTools and confusable-homoglyphs are build-time dependencies only.
Bit-for-bit identity needs the same font package versions (checked against
the manifest: a different version is reported), the same Pillow wheel (it
bundles FreeType; the FreeType version is recorded) and the same zlib (the
``content_sha256`` in the manifest hashes the uncompressed arrays and so does
not depend on zlib).  The script stops with a clear message when a package or
font file is missing.

Families (fonts)
----------------
``CANDIDATES`` below is a hand-kept list in priority order; every entry names
its *lineage*.  Only the first candidate of a lineage may be kept (by
construction: Liberation Sans 2 == Arimo, Liberation Serif == Tinos, Liberation
Mono == Cousine, Open Sans ~ Noto Sans, FreeSans ~ TeX Gyre Heros ~ Nimbus Sans
(Helvetica; Arimo/Liberation Sans are its Arial-metric counterparts and are put
in the same lineage to be safe), FreeSerif ~ TeX Gyre Termes ~ Tinos ~ STIX ~
Doulos SIL ~ Nimbus Roman (Times), FreeMono ~ TeX Gyre Cursor ~ Nimbus Mono PS
(Courier), TeX Gyre Pagella/Schola/Bonum/Adventor ~ P052/C059/URW Bookman/URW
Gothic, Latin Modern ~ CMU, Hack ~ DejaVu Sans Mono, Carlito ~ Lato).  The
lineage duplicates are still rendered so that the empirical check below can be
calibrated on them.  Then the check: for every pair of families the similarity
is the *median*, over the characters both have, of the pixel correlation of the
two normalised renderings (the median because clones often share the Latin
glyphs but add Greek/Cyrillic from elsewhere).  Clone pairs score >= 0.94
(FreeMono~Nimbus Mono PS 0.942, Nimbus Sans~FreeSans 0.987, Arimo~Liberation
Sans 0.997, Noto Sans~Open Sans 0.987, ...); a sans and its own monospaced
sibling score 0.928-0.944 (Noto Sans~Noto Sans Mono 0.938, Arimo~Cousine
0.941) and are treated as near-duplicates too; different designs of the same
genre score at most 0.922 (Noto Sans~Cantarell, CMU Sans Serif~CMU Bright
0.921, Arimo~Nimbus Sans 0.918).  A candidate is dropped when its similarity to an already kept family
exceeds ``FAMILY_SIMILARITY_MAX`` = 0.93, in that gap.  This also finds
undocumented borrowings and close relatives: Inter~Roboto 0.964,
NanumGothicCoding~NanumGothic 0.995, Noto Sans Mono~Noto Sans 0.938.  The report prints the top
pairs so the choice is visible, and the manifest keeps them.

Not used on purpose: decorative, display, handwriting, script, blackletter,
stencil, symbol/dingbat and bitmap fonts (e.g. Cupola, BabelStone Modern, Un
Pilgi/Gungseo, Z003, TeX Gyre Chorus), condensed/display/optical-size variants
of a kept family, and fonts under a plain GPL without a font exception (Un
fonts, Lexi Gulim, the LinEx fonts).  Licences are read from the DEP-5
``/usr/share/doc/<pkg>/copyright`` (the stanza whose ``Files:`` pattern matches
the font; hand-checked fallbacks for the few non-DEP-5 files) and mapped to
SPDX-style ids; the manifest also keeps the Debian wording.

Classes (characters)
--------------------
The candidate pool (``POOL``) is Latin letters and digits, a few Latin letters
with their own shape (Æ Œ Ø ß Þ Ð Ł Ŋ Ħ ...), Greek, Cyrillic (Russian,
Ukrainian/Belarusian/Serbian/Macedonian letters) and well recognisable
symbols.  Tiny or shapeless marks (. , - _ | ' " ` : ; · • ° ...) are not in it:
after normalisation they become bars, dots or rings; neither are superscripts
and ordinals (¹ ² ³ º), which the normalisation blows up to full-size copies.

1. Homoglyphs are merged by construction with Unicode's confusables data
   (UTS #39 ``confusables.txt`` as bundled by the PyPI package
   ``confusable-homoglyphs``): two pool characters whose skeletons (NFD, then
   each code point replaced by its confusable prototype) are equal form one
   class, e.g. "A Α А", "O 0 Ο О", "I l 1 Ι І", "3 З", "Φ Ф", "φ ф", "Σ ∑".
   The class is drawn with one canonical member: the one available in most
   kept families (ties: pool order).
2. Case pairs that differ only by scale under the normalisation (glyph bbox
   scaled to a fixed box) are dropped by construction (``CASE_PAIRS``: c/C,
   o/O, s/S, v/V, w/W, x/X, z/Z, ø/Ø, ə/Ə, κ/Κ, Cyrillic small-cap lowercase
   such as в/В, и/И, я/Я, ...).  A class whose homoglyph group contains such a
   lowercase letter is dropped as a whole (e.g. "o ο σ о", "π п", "ε є").
3. A class must be drawn by at least ``MIN_FAMILIES_PER_CLASS`` = 45 kept
   families.
4. Empirical check: for every pair of remaining classes, the leave-one-family-
   out 1-nearest-neighbour error between the two classes is measured on raw
   normalised pixels (for each image, is its nearest neighbour among the other
   families' images of the two classes in the wrong class?  0.5 = chance).
   The known scale-only case pairs of step 2 (those without diacritics) serve
   as calibration: they score 0.11-0.28.  Any pair above ``PAIR_NN_ERROR_MAX``
   = 0.06 (about half the least confusable scale-only pair) is too close and
   the later class in pool order is dropped: e.g. ψ next to Ψ, ª next to a,
   χ next to X, ¡ next to i, þ next to Þ, and letters that differ from another
   class by one stroke (Ł, ħ, ŧ, Ŧ, Ђ, ф next to Ф, ∂ next to ð).  Everything dropped is
   printed and kept in the manifest with the reason.

Rendering normalisation
-----------------------
Each glyph is rendered by FreeType through Pillow (basic layout, no shaping,
anti-aliased) once at ``MEASURE_SIZE`` px to measure its ink box, then
re-rendered at the font size that makes the longer side of the ink box
``BOX * SUPERSAMPLE`` = 104 px, cropped to its ink box, centred (box centre on
the canvas centre) on a ``SIZE * SUPERSAMPLE`` = 128 px black canvas and reduced
4x with a box filter to 32x32.  Ink is white (255) on black (0), aspect ratio
kept.  A glyph is only rendered when the font's cmap (fontTools) maps the code
point to a real glyph (never glyph 0 / ``.notdef``); a render identical to the
font's .notdef render or with no ink is rejected, and so is a legacy CJK
code-page substitution (a backslash drawn as a Won or Yen sign, a tilde drawn
as an overline), found by comparing with the consensus renderings.

Class ids and split
-------------------
Classes are ordered by ``sha256("glyphs-class-order-v1:" + code point of the
canonical char)`` - a fixed-seed shuffle that mixes scripts into both halves.
Like CUB, class ids ``[0, C // 2)`` are the training classes and
``[C // 2, C)`` the test classes.  Family indices follow the family names in
case-insensitive alphabetical order.  Samples are sorted by (label, family).

Output arrays (``glyphs.npz``)
------------------------------
``images`` uint8 [N, 32, 32]; ``labels`` int64 [N] (class id);
``families`` int64 [N] (family index); ``class_names`` unicode [C] (canonical
char); ``class_codepoints`` unicode [C] ("U+0041 U+0391 U+0410"; all merged
code points, canonical first); ``family_names`` unicode [F].
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path

#: the embedded dataset's folder, which this tool writes
HERE = Path(__file__).resolve().parents[1] / "datasets" / "glyphs_data"

# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------
SIZE = 32  # output image side (px)
SUPERSAMPLE = 4  # render at 4x, reduce with a box filter
BOX = 26  # longer side of the glyph's ink box in the output (px)
MEASURE_SIZE = 400.0  # font size (px) of the first, measuring render
FAMILY_SIMILARITY_MAX = 0.93  # median per-char pixel correlation
PAIR_NN_ERROR_MAX = 0.06  # leave-one-family-out 1-NN error between 2 classes
MIN_FAMILIES_PER_CLASS = 45
CLASS_ORDER_SALT = "glyphs-class-order-v1:"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
PIP_PINS = {"Pillow": "13.0.0", "fonttools": "4.68.0", "numpy": "2.4.6",
            "confusable-homoglyphs": "3.3.1"}

# --------------------------------------------------------------------------
# Candidate families, in priority order: (family, style, package, path,
# ttc index, lineage).  Only the first candidate of a lineage can be kept.
# --------------------------------------------------------------------------
_T = "/usr/share/fonts/truetype"
_O = "/usr/share/fonts/opentype"
_X = "/usr/share/texmf/fonts/opentype/public"
CANDIDATES = [
    # --- sans serif
    ("DejaVu Sans", "Book", "fonts-dejavu-core", f"{_T}/dejavu/DejaVuSans.ttf", 0, "Bitstream Vera Sans"),
    ("Noto Sans", "Regular", "fonts-noto-core", f"{_T}/noto/NotoSans-Regular.ttf", 0, "Open Sans / Noto Sans"),
    ("Open Sans", "Regular", "fonts-open-sans", f"{_T}/open-sans/OpenSans-Regular.ttf", 0, "Open Sans / Noto Sans"),
    ("Roboto", "Regular", "fonts-roboto-unhinted", f"{_T}/roboto/unhinted/RobotoTTF/Roboto-Regular.ttf", 0, "Roboto"),
    ("Nimbus Sans", "Regular", "fonts-urw-base35", f"{_O}/urw-base35/NimbusSans-Regular.otf", 0, "Helvetica / Arial metric"),
    ("FreeSans", "Regular", "fonts-freefont-ttf", f"{_T}/freefont/FreeSans.ttf", 0, "Helvetica / Arial metric"),
    ("TeX Gyre Heros", "Regular", "fonts-texgyre", f"{_X}/tex-gyre/texgyreheros-regular.otf", 0, "Helvetica / Arial metric"),
    ("Arimo", "Regular", "fonts-croscore", f"{_T}/croscore/Arimo-Regular.ttf", 0, "Helvetica / Arial metric"),
    ("Liberation Sans", "Regular", "fonts-liberation2", f"{_T}/liberation2/LiberationSans-Regular.ttf", 0, "Helvetica / Arial metric"),
    ("URW Gothic", "Book", "fonts-urw-base35", f"{_O}/urw-base35/URWGothic-Book.otf", 0, "ITC Avant Garde Gothic"),
    ("TeX Gyre Adventor", "Regular", "fonts-texgyre", f"{_X}/tex-gyre/texgyreadventor-regular.otf", 0, "ITC Avant Garde Gothic"),
    ("Go", "Regular", "fonts-go", "/usr/share/fonts/fonts-go/Go-Regular.ttf", 0, "Go"),
    ("Lato", "Regular", "fonts-lato", f"{_T}/lato/Lato-Regular.ttf", 0, "Lato"),
    ("Carlito", "Regular", "fonts-crosextra-carlito", f"{_T}/crosextra/Carlito-Regular.ttf", 0, "Lato"),
    ("Inter", "Regular", "fonts-inter", f"{_O}/inter/Inter-Regular.otf", 0, "Inter"),
    ("Cantarell", "Regular", "fonts-cantarell", f"{_O}/cantarell/Cantarell-Regular.otf", 0, "Cantarell"),
    ("Clear Sans", "Regular", "fonts-clear-sans", f"{_T}/clear-sans/ClearSans-Regular.ttf", 0, "Clear Sans"),
    ("Comfortaa", "Regular", "fonts-comfortaa", f"{_T}/comfortaa/Comfortaa-Regular.ttf", 0, "Comfortaa"),
    ("Jura", "Regular", "fonts-jura", f"{_O}/jura/Jura-Regular.otf", 0, "Jura"),
    ("Play", "Regular", "fonts-play", f"{_T}/play/Play-Regular.ttf", 0, "Play"),
    ("Manrope", "Regular", "fonts-manrope", f"{_T}/manrope/Manrope-Regular.ttf", 0, "Manrope"),
    ("Linux Biolinum O", "Regular", "fonts-linuxlibertine", f"{_O}/linux-libertine/LinBiolinum_R.otf", 0, "Linux Biolinum"),
    ("CMU Sans Serif", "Medium", "fonts-cmu", f"{_T}/cmu/cmunss.ttf", 0, "Computer Modern Sans"),
    ("CMU Bright", "Roman", "fonts-cmu", f"{_T}/cmu/cmunbmr.ttf", 0, "Computer Modern Bright"),
    ("Andika", "Regular", "fonts-sil-andika", f"{_T}/andika/Andika-Regular.ttf", 0, "Andika"),
    ("Tuffy", "Regular", "fonts-tuffy", f"{_T}/tuffy/Tuffy.ttf", 0, "Tuffy"),
    ("MPH 2B Damase", "Regular", "fonts-mph-2b-damase", f"{_T}/mph-2b-damase/damase.ttf", 0, "MPH 2B Damase"),
    ("osifont", "Medium", "fonts-osifont", f"{_T}/osifont/osifont.ttf", 0, "ISO 3098 lettering (osifont)"),
    ("PT Sans", "Regular", "fonts-paratype", f"{_T}/paratype/PTS55F.ttf", 0, "PT Sans"),
    ("Karmilla", "Regular", "fonts-karmilla", f"{_T}/karmilla/Karmilla-Regular.ttf", 0, "Karla / Karmilla"),
    ("Noto Sans CJK JP", "Regular", "fonts-noto-cjk", f"{_O}/noto/NotoSansCJK-Regular.ttc", 0, "Source Sans (Noto Sans CJK)"),
    ("IPAexGothic", "Regular", "fonts-ipaexfont-gothic", f"{_O}/ipaexfont-gothic/ipaexg.ttf", 0, "IPA Gothic"),
    ("VL Gothic", "Regular", "fonts-vlgothic", f"{_T}/vlgothic/VL-Gothic-Regular.ttf", 0, "M+ / VL Gothic"),
    ("WenQuanYi Zen Hei", "Regular", "fonts-wqy-zenhei", f"{_T}/wqy/wqy-zenhei.ttc", 0, "WenQuanYi Zen Hei"),
    ("NanumGothic", "Regular", "fonts-nanum", f"{_T}/nanum/NanumGothic.ttf", 0, "Nanum Gothic"),
    ("NanumBarunGothic", "Regular", "fonts-nanum", f"{_T}/nanum/NanumBarunGothic.ttf", 0, "Nanum Barun Gothic"),
    ("NanumSquare", "Regular", "fonts-nanum", f"{_T}/nanum/NanumSquareR.ttf", 0, "Nanum Square"),
    ("Baekmuk Dotum", "Regular", "fonts-baekmuk", f"{_T}/baekmuk/dotum.ttf", 0, "Baekmuk Dotum"),
    ("Baekmuk Gulim", "Regular", "fonts-baekmuk", f"{_T}/baekmuk/gulim.ttf", 0, "Baekmuk Gulim"),
    ("MotoyaLCedar", "W3 mono", "fonts-motoya-l-cedar", f"{_T}/motoya-l-cedar/MTLc3m.ttf", 0, "Motoya L Cedar"),
    # --- serif
    ("DejaVu Serif", "Book", "fonts-dejavu-core", f"{_T}/dejavu/DejaVuSerif.ttf", 0, "Bitstream Vera Serif"),
    ("Noto Serif", "Regular", "fonts-noto-core", f"{_T}/noto/NotoSerif-Regular.ttf", 0, "Noto Serif"),
    ("Nimbus Roman", "Regular", "fonts-urw-base35", f"{_O}/urw-base35/NimbusRoman-Regular.otf", 0, "Times / Times New Roman metric"),
    ("FreeSerif", "Regular", "fonts-freefont-ttf", f"{_T}/freefont/FreeSerif.ttf", 0, "Times / Times New Roman metric"),
    ("TeX Gyre Termes", "Regular", "fonts-texgyre", f"{_X}/tex-gyre/texgyretermes-regular.otf", 0, "Times / Times New Roman metric"),
    ("Tinos", "Regular", "fonts-croscore", f"{_T}/croscore/Tinos-Regular.ttf", 0, "Times / Times New Roman metric"),
    ("Liberation Serif", "Regular", "fonts-liberation2", f"{_T}/liberation2/LiberationSerif-Regular.ttf", 0, "Times / Times New Roman metric"),
    ("STIX Two Text", "Regular", "fonts-stix", f"{_O}/stix-word/STIX-Regular.otf", 0, "Times / Times New Roman metric"),
    ("Doulos SIL", "Regular", "fonts-sil-doulos", f"{_T}/doulos/DoulosSIL-Regular.ttf", 0, "Times / Times New Roman metric"),
    ("C059", "Roman", "fonts-urw-base35", f"{_O}/urw-base35/C059-Roman.otf", 0, "Century Schoolbook"),
    ("TeX Gyre Schola", "Regular", "fonts-texgyre", f"{_X}/tex-gyre/texgyreschola-regular.otf", 0, "Century Schoolbook"),
    ("P052", "Roman", "fonts-urw-base35", f"{_O}/urw-base35/P052-Roman.otf", 0, "Palatino"),
    ("TeX Gyre Pagella", "Regular", "fonts-texgyre", f"{_X}/tex-gyre/texgyrepagella-regular.otf", 0, "Palatino"),
    ("URW Bookman", "Light", "fonts-urw-base35", f"{_O}/urw-base35/URWBookman-Light.otf", 0, "ITC Bookman"),
    ("TeX Gyre Bonum", "Regular", "fonts-texgyre", f"{_X}/tex-gyre/texgyrebonum-regular.otf", 0, "ITC Bookman"),
    ("Roboto Slab", "Regular", "fonts-roboto-slab", f"{_O}/roboto/slab/RobotoSlab-Regular.otf", 0, "Roboto Slab"),
    ("Linux Libertine O", "Regular", "fonts-linuxlibertine", f"{_O}/linux-libertine/LinLibertine_R.otf", 0, "Linux Libertine"),
    ("CMU Serif", "Roman", "fonts-cmu", f"{_T}/cmu/cmunrm.ttf", 0, "Computer Modern Roman"),
    ("Latin Modern Roman", "10 Regular", "fonts-lmodern", f"{_X}/lm/lmroman10-regular.otf", 0, "Computer Modern Roman"),
    ("CMU Concrete", "Roman", "fonts-cmu", f"{_T}/cmu/cmunorm.ttf", 0, "Concrete Roman"),
    ("Gentium Plus", "Regular", "fonts-sil-gentiumplus", f"{_T}/gentiumplus/GentiumPlus-Regular.ttf", 0, "Gentium"),
    ("Charis SIL", "Regular", "fonts-sil-charis", f"{_T}/charis/CharisSIL-Regular.ttf", 0, "Bitstream Charter"),
    ("Old Standard TT", "Regular", "fonts-oldstandard", f"{_T}/fonts-oldstandard/OldStandard-Regular.ttf", 0, "Old Standard"),
    ("EB Garamond", "12 Regular", "fonts-ebgaramond", f"{_O}/ebgaramond/EBGaramond12-Regular.otf", 0, "Garamond (EB)"),
    ("Vollkorn", "Regular", "fonts-vollkorn", f"{_T}/vollkorn/Vollkorn-Regular.ttf", 0, "Vollkorn"),
    ("Caslon", "Roman", "fonts-georgewilliams", f"{_T}/fonts-georgewilliams/CaslonRoman.ttf", 0, "Caslon (George Williams)"),
    ("Caliban", "Medium", "fonts-georgewilliams", f"{_T}/fonts-georgewilliams/Caliban.ttf", 0, "Caliban"),
    ("PT Serif", "Regular", "fonts-paratype", f"{_T}/paratype/PTF55F.ttf", 0, "PT Serif"),
    ("Noto Serif CJK JP", "Regular", "fonts-noto-cjk", f"{_O}/noto/NotoSerifCJK-Regular.ttc", 0, "Source Serif (Noto Serif CJK)"),
    ("IPAexMincho", "Regular", "fonts-ipaexfont-mincho", f"{_O}/ipaexfont-mincho/ipaexm.ttf", 0, "IPA Mincho"),
    ("NanumMyeongjo", "Regular", "fonts-nanum", f"{_T}/nanum/NanumMyeongjo.ttf", 0, "Nanum Myeongjo"),
    ("Baekmuk Batang", "Regular", "fonts-baekmuk", f"{_T}/baekmuk/batang.ttf", 0, "Baekmuk Batang"),
    ("AR PL UMing CN", "Light", "fonts-arphic-uming", f"{_T}/arphic/uming.ttc", 0, "AR PL Mingti"),
    ("HanaMinA", "Regular", "fonts-hanazono", f"{_T}/hanazono/HanaMinA.ttf", 0, "Hanazono Mincho"),
    # --- monospaced
    ("DejaVu Sans Mono", "Book", "fonts-dejavu-core", f"{_T}/dejavu/DejaVuSansMono.ttf", 0, "Bitstream Vera Sans Mono"),
    ("Hack", "Regular", "fonts-hack", f"{_T}/hack/Hack-Regular.ttf", 0, "Bitstream Vera Sans Mono"),
    ("Noto Sans Mono", "Regular", "fonts-noto-mono", f"{_T}/noto/NotoSansMono-Regular.ttf", 0, "Noto Sans Mono"),
    ("Cousine", "Regular", "fonts-croscore", f"{_T}/croscore/Cousine-Regular.ttf", 0, "Liberation Mono / Cousine"),
    ("Liberation Mono", "Regular", "fonts-liberation2", f"{_T}/liberation2/LiberationMono-Regular.ttf", 0, "Liberation Mono / Cousine"),
    ("Nimbus Mono PS", "Regular", "fonts-urw-base35", f"{_O}/urw-base35/NimbusMonoPS-Regular.otf", 0, "Courier"),
    ("FreeMono", "Regular", "fonts-freefont-ttf", f"{_T}/freefont/FreeMono.ttf", 0, "Courier"),
    ("TeX Gyre Cursor", "Regular", "fonts-texgyre", f"{_X}/tex-gyre/texgyrecursor-regular.otf", 0, "Courier"),
    ("Go Mono", "Regular", "fonts-go", "/usr/share/fonts/fonts-go/Go-Mono.ttf", 0, "Go Mono"),
    ("JetBrains Mono", "Regular", "fonts-jetbrains-mono", f"{_T}/jetbrains-mono/JetBrainsMono-Regular.ttf", 0, "JetBrains Mono"),
    ("Fira Code", "Regular", "fonts-firacode", f"{_T}/firacode/FiraCode-Regular.ttf", 0, "Fira Mono"),
    ("Anonymous Pro", "Regular", "fonts-anonymous-pro", f"{_T}/anonymous-pro/Anonymous Pro.ttf", 0, "Anonymous"),
    ("Fantasque Sans Mono", "Regular", "fonts-fantasque-sans", f"{_T}/fantasque-sans/Normal/TTF/FantasqueSansMono-Regular.ttf", 0, "Fantasque Sans Mono"),
    ("mononoki", "Regular", "fonts-mononoki", f"{_T}/mononoki/mononoki-Regular.ttf", 0, "mononoki"),
    ("monofur", "Regular", "fonts-monofur", f"{_T}/monofur/monof55.ttf", 0, "monofur"),
    ("Agave", "Regular", "fonts-agave", f"{_T}/agave/agave-r-autohinted.ttf", 0, "Agave"),
    ("CMU Typewriter Text", "Regular", "fonts-cmu", f"{_T}/cmu/cmuntt.ttf", 0, "Computer Modern Typewriter"),
    ("GWMonospace", "Medium", "fonts-georgewilliams", f"{_T}/fonts-georgewilliams/GWMonospace.ttf", 0, "GW Monospace"),
    ("PT Mono", "Regular", "fonts-paratype", f"{_T}/paratype/PTM55F.ttf", 0, "PT Mono"),
    ("IBM 3270", "Regular", "fonts-3270", f"{_T}/3270/3270-Regular.ttf", 0, "IBM 3270"),
    ("NanumGothicCoding", "Regular", "fonts-nanum", f"{_T}/nanum/NanumGothicCoding.ttf", 0, "Nanum Gothic Coding"),
]

# Hand-checked licences for packages whose copyright file is not DEP-5
# (package: (SPDX-style id, text that must occur in the copyright file)).
LICENSE_FALLBACK = {
    "fonts-jura": ("OFL-1.1", "SIL Open Font License"),
    "fonts-oldstandard": ("OFL-1.0", "SIL OPEN FONT LICENSE Version 1.0"),
    "fonts-arphic-uming": ("Arphic-1999", "ARPHIC PUBLIC LICENSE"),
    "fonts-lmodern": ("LicenseRef-GUST-Font-License", "GUST Font License"),
    "fonts-mph-2b-damase": ("LicenseRef-Public-Domain", "License: Public Domain"),
}
# Debian DEP-5 short names -> SPDX-style ids.
SPDX = {
    "OFL-1.1": "OFL-1.1", "SIL-OFL-1.1": "OFL-1.1", "SIL-1.1": "OFL-1.1",
    "OFL-1.1-RFN": "OFL-1.1-RFN", "Open-Font-License": "OFL-1.1",
    "Apache-2": "Apache-2.0", "Apache-2.0": "Apache-2.0",
    "bitstream-vera": "Bitstream-Vera", "BitstreamVera": "Bitstream-Vera",
    "BSD-3-clause": "BSD-3-Clause", "BSD-3-Clause": "BSD-3-Clause",
    "MIT": "MIT", "Expat": "MIT", "IPA-1": "IPA",
    "ParaType-Free-Font-License": "ParaType-Free-Font-1.3",
    "public-domain": "LicenseRef-Public-Domain", "Public Domain": "LicenseRef-Public-Domain",
    "BAEKMUK-MIT-LIKE": "Baekmuk", "M+Font": "mplus", "M+ FONTS License": "mplus",
    "SazanamiFont": "LicenseRef-Sazanami", "Hanazono-Font-License": "LicenseRef-Hanazono",
    "GUST-Font-License": "LicenseRef-GUST-Font-License",
    "AGPL-3 with Font exception": "AGPL-3.0-only WITH LicenseRef-URW-Font-exception",
    "GPL-2+ with Font exception": "GPL-2.0-or-later WITH Font-exception-2.0",
    "GPL-3+ with Special Font Exception": "GPL-3.0-or-later WITH Font-exception-2.0",
    "GPL-2 with Font embedding exception": "GPL-2.0-only WITH Font-exception-2.0",
    "GPL-3-only+FE": "GPL-3.0-only WITH Font-exception-2.0",
    "LGPL-3-only+FE": "LGPL-3.0-only WITH Font-exception-2.0",
    "GPL-2-only+FE": "GPL-2.0-only WITH Font-exception-2.0",
    "BSD3": "BSD-3-Clause", "SIL": "OFL-1.1",
}

# --------------------------------------------------------------------------
# Character pool, in priority order (earlier wins a homoglyph tie-break and
# survives when a too-close pair is found).
# --------------------------------------------------------------------------
POOL_SECTIONS = [
    ("latin-upper", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("latin-lower", "abcdefghijklmnopqrstuvwxyz"),
    ("digit", "0123456789"),
    ("latin-extra", "ÆæŒœØøßÞþÐðŁłŊŋƏəĦħĐđıŦŧƒ"),
    ("greek-upper", "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ"),
    ("greek-lower", "αβγδεζηθικλμνξοπρσςτυφχψω"),
    ("cyrillic-upper", "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯЂЃЄЅІЇЈЉЊЋЌЎЏҐ"),
    ("cyrillic-lower", "абвгдеёжзийклмнопрстуфхцчшщъыьэюяђѓєѕіїјљњћќўџґ"),
    ("symbol", "&@#$%?!§¶€£¥¢¤+=<>*/\\()[]{}~^©®±×÷¿¡µ‰†‡№∞≠≤≥√∂∆∑∏∫≈¬ª½¼¾™«»‹›←↑→↓↔≡∩"),
]
POOL = "".join(s for _, s in POOL_SECTIONS)

# Lowercase letters that, under the bbox normalisation, are only a smaller
# copy of their uppercase partner (lower, upper).  Dropped by construction;
# also used to calibrate the empirical pair check.
CASE_PAIRS = [tuple(p) for p in (
    "cC oO sS vV wW xX zZ øØ əƏ κΚ "
    "вВ дД жЖ зЗ иИ йЙ кК лЛ мМ нН пП тТ цЦ чЧ шШ щЩ ъЪ ыЫ ьЬ эЭ юЮ яЯ "
    "ѓЃ єЄ їЇ ќЌ љЉ њЊ џЏ ґҐ").split()]

NOTDEF_PROBE = 0x10FFFD  # a private-use code point no font maps

# Legacy CJK code pages put other glyphs at some ASCII code points (the
# backslash drawn as a Won or Yen sign, the tilde as an overline).  A render of
# such a code point is rejected when it is closer to the consensus rendering
# of a substitute than to the consensus rendering of the character itself
# (and clearly like it: correlation >= 0.5 with the substitute's consensus).
LEGACY_SUBSTITUTES = {"\\": "\u20a9\u00a5", "~": "\u203e"}


def die(msg: str) -> None:
    sys.stderr.write(f"build_glyphs.py: error: {msg}\n")
    sys.exit(2)


def _import_deps():
    missing = []
    mods = {}
    for mod, pipname in (("numpy", "numpy"), ("PIL", "Pillow"),
                         ("fontTools", "fonttools"),
                         ("confusable_homoglyphs", "confusable-homoglyphs")):
        try:
            mods[mod] = __import__(mod)
        except ImportError:
            missing.append(pipname)
    if missing:
        pins = " ".join(f"{k}=={v}" for k, v in PIP_PINS.items())
        die(f"missing Python packages: {', '.join(missing)}\n  pip install {pins}")
    return mods


_deps = _import_deps()
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
import PIL.features  # noqa: E402
import fontTools  # noqa: E402
from fontTools.ttLib import TTFont  # noqa: E402
import confusable_homoglyphs  # noqa: E402


def log(*a):
    print(*a, flush=True)


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cp(ch: str) -> str:
    return f"U+{ord(ch):04X}"


# --------------------------------------------------------------------------
# Debian packages and licences
# --------------------------------------------------------------------------
def apt_command(pkgs) -> str:
    return "apt-get install -y --no-install-recommends " + " ".join(sorted(set(pkgs)))


def package_versions(pkgs):
    vers, missing = {}, []
    for p in sorted(set(pkgs)):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", p],
                           capture_output=True, text=True)
        if r.returncode != 0 or not r.stdout.startswith("install ok installed"):
            missing.append(p)
        else:
            vers[p] = r.stdout.split("\t", 1)[1]
    return vers, missing


def _dep5_stanzas(text):
    stanzas, cur, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, None
            continue
        if line[0] in " \t":
            if key:
                cur[key] += "\n" + line.strip()
            continue
        m = re.match(r"([A-Za-z-]+):\s*(.*)$", line)
        if m:
            key = m.group(1).lower()
            cur[key] = m.group(2).strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def _spdx(debian_name: str) -> str:
    def one(term):
        term = term.strip()
        if term in SPDX:
            return SPDX[term]
        if "|" in term:
            return " OR ".join(one(t) for t in term.split("|"))
        return "LicenseRef-" + re.sub(r"[^A-Za-z0-9.+-]+", "-", term).strip("-")
    if debian_name in SPDX:
        return SPDX[debian_name]
    parts = re.split(r"\s+(and|or)\s+", debian_name)
    out = [one(parts[0])]
    for i in range(1, len(parts), 2):
        out.append(parts[i].upper())
        out.append(one(parts[i + 1]))
    return " ".join(out)


def font_license(pkg: str, font_path: str):
    """(spdx, debian_wording, source) for the font file of a package."""
    cfile = Path(f"/usr/share/doc/{pkg}/copyright")
    if not cfile.exists():
        die(f"{cfile} not found (is {pkg} installed?)")
    text = cfile.read_text(encoding="utf-8", errors="replace")
    base = os.path.basename(font_path)
    match = None
    for st in _dep5_stanzas(text):
        if "files" not in st or "license" not in st:
            continue
        for pat in st["files"].split():
            if "/" in pat:
                continue  # a path we cannot relate to the installed file
            if fnmatch.fnmatchcase(base, pat):
                match = st["license"].split("\n", 1)[0].strip()  # last wins
    if match:
        return _spdx(match), match, f"{cfile}: DEP-5 Files stanza"
    if pkg in LICENSE_FALLBACK:
        spdx, needle = LICENSE_FALLBACK[pkg]
        if needle.lower() not in text.lower():
            die(f"{cfile} no longer mentions {needle!r}; re-check the licence of {pkg}")
        return spdx, needle, f"{cfile}: hand-checked text {needle!r}"
    die(f"cannot determine the licence of {font_path} from {cfile}")


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------
class FontRenderer:
    _instances = {}

    @classmethod
    def cached(cls, path: str, index: int) -> "FontRenderer":
        if (path, index) not in cls._instances:
            cls._instances[(path, index)] = cls(path, index)
        return cls._instances[(path, index)]

    def __init__(self, path: str, index: int):
        self.path, self.index = path, index
        tt = TTFont(path, fontNumber=index, lazy=True)
        self.cmap = tt.getBestCmap() or {}
        self.glyph_order = tt.getGlyphOrder()
        self._gid = {n: i for i, n in enumerate(self.glyph_order)}
        tt.close()
        self._notdef = None
        if NOTDEF_PROBE not in self.cmap:
            self._notdef = self._ink(MEASURE_SIZE, chr(NOTDEF_PROBE))

    def has(self, ch: str) -> bool:
        name = self.cmap.get(ord(ch))
        return name is not None and name != ".notdef" and self._gid.get(name, 0) != 0

    def _ink(self, size: float, ch: str):
        font = ImageFont.truetype(self.path, size=size, index=self.index,
                                  layout_engine=ImageFont.Layout.BASIC)
        left, top, right, bottom = font.getbbox(ch)
        pad = 8
        w, h = int(right - left) + 2 * pad, int(bottom - top) + 2 * pad
        if w <= 2 * pad or h <= 2 * pad:
            return None
        im = Image.new("L", (w, h), 0)
        ImageDraw.Draw(im).text((pad - left, pad - top), ch, font=font, fill=255)
        a = np.asarray(im)
        rows = np.flatnonzero(a.max(axis=1))
        cols = np.flatnonzero(a.max(axis=0))
        if rows.size == 0:
            return None
        return a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    def render(self, ch: str):
        """(image or None, reason)."""
        if not self.has(ch):
            return None, "not in cmap"
        a = self._ink(MEASURE_SIZE, ch)
        if a is None:
            return None, "empty"
        if self._notdef is not None and a.shape == self._notdef.shape and np.array_equal(a, self._notdef):
            return None, "notdef"
        big = BOX * SUPERSAMPLE
        a = self._ink(MEASURE_SIZE * big / max(a.shape), ch)
        if a is None:
            return None, "empty"
        canvas = SIZE * SUPERSAMPLE
        h, w = a.shape
        if max(h, w) > canvas:  # cannot happen with sane fonts; keep it safe
            s = canvas / max(h, w)
            a = np.asarray(Image.fromarray(a).resize(
                (max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX))
            h, w = a.shape
        c = np.zeros((canvas, canvas), np.uint8)
        y0, x0 = (canvas - h) // 2, (canvas - w) // 2
        c[y0:y0 + h, x0:x0 + w] = a
        out = np.asarray(Image.fromarray(c).reduce(SUPERSAMPLE))
        if int(out.max()) < 128 or int((out > 64).sum()) < 4:
            return None, "empty"
        return out, "ok"


def unit(a) -> "np.ndarray":
    v = a.astype(np.float64).ravel()
    v = v - v.mean()
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


# --------------------------------------------------------------------------
# Confusables (UTS #39 skeletons)
# --------------------------------------------------------------------------
def confusable_skeleton_fn():
    data_path = Path(confusable_homoglyphs.__file__).with_name("confusables.json")
    data = json.loads(data_path.read_text(encoding="utf-8"))
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for k in sorted(data):
        for e in data[k]:
            ra, rb = find(k), find(e["c"])
            if ra != rb:
                lo, hi = sorted((ra, rb))
                parent[hi] = lo

    def skeleton(ch):
        return "".join(find(c) for c in unicodedata.normalize("NFD", ch))

    return skeleton, sha256_file(data_path)


def script_of(ch: str) -> str:
    name = unicodedata.name(ch, "")
    for s in ("LATIN", "GREEK", "CYRILLIC", "DIGIT"):
        if name.startswith(s):
            return s.lower()
    return "symbol"


# --------------------------------------------------------------------------
# Deterministic npz
# --------------------------------------------------------------------------
def npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), version=(1, 0),
                              allow_pickle=False)
    return buf.getvalue()


def write_npz(path: Path, arrays):
    """np.savez_compressed-compatible zip with fixed timestamps/attributes."""
    content = hashlib.sha256()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays:
            data = npy_bytes(arr)
            content.update(name.encode() + b"\0" + data)
            zi = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return content.hexdigest()


# --------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------
def preflight():
    pkgs = [c[2] for c in CANDIDATES]
    vers, missing = package_versions(pkgs)
    if missing:
        die("missing Debian font packages: " + " ".join(missing) +
            "\n  run as root:  apt-get update && " + apt_command(pkgs))
    absent = [c[3] for c in CANDIDATES if not os.path.exists(c[3])]
    if absent:
        die("font files not found (package version changed?):\n  " + "\n  ".join(absent) +
            "\n  run as root:  apt-get update && " + apt_command(pkgs))
    for mod, want in (("PIL", PIP_PINS["Pillow"]), ("fontTools", PIP_PINS["fonttools"]),
                      ("numpy", PIP_PINS["numpy"])):
        have = _deps[mod].__version__
        if have != want:
            log(f"WARNING: {mod} {have} installed, {want} pinned: the output may differ")
    return vers


def median_similarity(ua, ub):
    """ua, ub: {char: unit vector}.  Median correlation over shared chars."""
    shared = [ch for ch in POOL if ch in ua and ch in ub]
    if not shared:
        return 0.0, 0
    A = np.array([ua[ch] for ch in shared])
    B = np.array([ub[ch] for ch in shared])
    return float(np.median(np.einsum("ij,ij->i", A, B))), len(shared)


def pair_nn_error(A, fa, B, fb):
    """Leave-one-family-out 1-NN error between two classes (rows: unit vectors)."""
    AA, AB, BB = A @ A.T, A @ B.T, B @ B.T
    AA = np.where(fa[:, None] == fa[None, :], -9.0, AA)
    AB = np.where(fa[:, None] == fb[None, :], -9.0, AB)
    BB = np.where(fb[:, None] == fb[None, :], -9.0, BB)
    ea = float(np.mean(AB.max(axis=1) > AA.max(axis=1)))
    eb = float(np.mean(AB.max(axis=0) > BB.max(axis=1)))
    return (ea + eb) / 2.0


def all_pair_nn_errors(stacks, names):
    """pair_nn_error for every pair of classes, vectorised.

    stacks: list of (unit-vector rows, family ids) per class."""
    U = np.concatenate([s[0] for s in stacks])
    F = np.concatenate([s[1] for s in stacks])
    sizes = [len(s[0]) for s in stacks]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    n = len(stacks)
    # err[a, b]: fraction of class a's images whose nearest other-family
    # neighbour among classes {a, b} lies in b.
    err = np.zeros((n, n))
    for a in range(n):
        rows = slice(starts[a], starts[a] + sizes[a])
        S = U[rows] @ U.T
        S[F[rows, None] == F[None, :]] = -9.0
        cmax = np.maximum.reduceat(S, starts, axis=1)  # [na, n] best per class
        err[a] = (cmax > cmax[:, a:a + 1]).mean(axis=0)
    out = []
    for a in range(n):
        for b in range(a + 1, n):
            out.append(((err[a, b] + err[b, a]) / 2.0, names[a], names[b]))
    return out


def build(outdir: Path) -> dict:
    outdir.mkdir(parents=True, exist_ok=True)
    versions = preflight()
    skeleton, confusables_sha = confusable_skeleton_fn()

    # ---- render everything ------------------------------------------------
    log(f"rendering {len(POOL)} characters x {len(CANDIDATES)} candidate fonts ...")
    renders, rejects = [], []
    for fam, style, pkg, path, idx, lineage in CANDIDATES:
        fr = FontRenderer.cached(path, idx)
        got, rej = {}, collections.Counter()
        for ch in POOL:
            img, why = fr.render(ch)
            if img is None:
                rej[why] += 1
            else:
                got[ch] = img
        renders.append(got)
        rejects.append(dict(rej))
    n_cand = len(CANDIDATES)

    # ---- legacy code-page substitutions (e.g. "\\" drawn as a Won sign) ----
    for ch, subs in LEGACY_SUBSTITUTES.items():
        cents = {}
        for c in ch + subs:
            vs = []
            for k, (fam, style, pkg, path, idx, lineage) in enumerate(CANDIDATES):
                img = renders[k].get(c) if c == ch else FontRenderer.cached(path, idx).render(c)[0]
                if img is not None:
                    vs.append(unit(img))
            cents[c] = np.mean(vs, axis=0)
        for k in range(n_cand):
            if ch not in renders[k]:
                continue
            v = unit(renders[k][ch])
            own = float(v @ cents[ch]) / float(np.linalg.norm(cents[ch]))
            best = max(subs, key=lambda c: float(v @ cents[c]) / float(np.linalg.norm(cents[c])))
            other = float(v @ cents[best]) / float(np.linalg.norm(cents[best]))
            if other > own and other >= 0.5:
                del renders[k][ch]
                rejects[k][f"drawn as {best} (legacy code page)"] = 1
                log(f"  rejected {ch!r} of {CANDIDATES[k][0]}: looks like {best} "
                    f"({other:.2f} vs {own:.2f})")
    rejects = [dict(sorted(r.items())) for r in rejects]

    # ---- family similarity -------------------------------------------------
    units = [{ch: unit(a) for ch, a in r.items()} for r in renders]
    sim = np.zeros((n_cand, n_cand))
    nshared = np.zeros((n_cand, n_cand), int)
    for i in range(n_cand):
        for j in range(i + 1, n_cand):
            s, n = median_similarity(units[i], units[j])
            sim[i, j] = sim[j, i] = s
            nshared[i, j] = nshared[j, i] = n
    top_pairs = sorted(((sim[i, j], i, j) for i in range(n_cand) for j in range(i + 1, n_cand)),
                       key=lambda t: (-t[0], t[1], t[2]))[:40]
    log(f"\ntop family pairs (median per-character pixel correlation; threshold {FAMILY_SIMILARITY_MAX}):")
    top_pairs_out = []
    for s, i, j in top_pairs:
        same = CANDIDATES[i][5] == CANDIDATES[j][5]
        log(f"  {s:.4f}  {CANDIDATES[i][0]} ~ {CANDIDATES[j][0]}  "
            f"({nshared[i, j]} chars){'  [same lineage]' if same else ''}")
        top_pairs_out.append({"a": CANDIDATES[i][0], "b": CANDIDATES[j][0],
                              "similarity": round(float(s), 4), "shared_chars": int(nshared[i, j]),
                              "same_lineage": same})

    kept, dropped_families, lineage_rep = [], [], {}
    for i, (fam, style, pkg, path, idx, lineage) in enumerate(CANDIDATES):
        if lineage in lineage_rep:
            r = lineage_rep[lineage]
            dropped_families.append({
                "family": fam, "style": style, "package": pkg, "file": os.path.basename(path),
                "reason": f"same lineage ({lineage}) as kept/earlier {CANDIDATES[r][0]}",
                "similarity_to": CANDIDATES[r][0], "similarity": round(float(sim[i, r]), 4)})
            continue
        lineage_rep[lineage] = i
        if kept:
            k = max(kept, key=lambda k: (sim[i, k], -k))
            if sim[i, k] > FAMILY_SIMILARITY_MAX:
                dropped_families.append({
                    "family": fam, "style": style, "package": pkg, "file": os.path.basename(path),
                    "reason": f"near-duplicate of kept {CANDIDATES[k][0]} "
                              f"(similarity {sim[i, k]:.4f} > {FAMILY_SIMILARITY_MAX})",
                    "similarity_to": CANDIDATES[k][0], "similarity": round(float(sim[i, k]), 4)})
                continue
        kept.append(i)
    log(f"\nkept {len(kept)} families; dropped {len(dropped_families)}:")
    for d in dropped_families:
        log(f"  - {d['family']}: {d['reason']} (similarity to {d['similarity_to']}: {d['similarity']:.4f})")
    nn_sim_kept = {i: max((sim[i, k] for k in kept if k != i), default=0.0) for i in kept}

    # ---- classes -----------------------------------------------------------
    pool_index = {ch: n for n, ch in enumerate(POOL)}
    cover = {ch: sum(ch in renders[k] for k in kept) for ch in POOL}
    groups = collections.OrderedDict()
    for ch in POOL:
        groups.setdefault(skeleton(ch), []).append(ch)
    case_lower = {lo: up for lo, up in CASE_PAIRS}
    classes, dropped_classes = [], []
    for members in groups.values():
        members = sorted(members, key=lambda c: pool_index[c])
        canon = max(members, key=lambda c: (cover[c], -pool_index[c]))
        members = [canon] + [m for m in members if m != canon]
        bad = [m for m in members if m in case_lower]
        if bad:
            dropped_classes.append({"chars": "".join(members), "codepoints": " ".join(map(cp, members)),
                                    "reason": "case pair, only a smaller copy under the normalisation: "
                                              + ", ".join(f"{b}/{case_lower[b]}" for b in bad)})
            continue
        if cover[canon] < MIN_FAMILIES_PER_CLASS:
            dropped_classes.append({"chars": "".join(members), "codepoints": " ".join(map(cp, members)),
                                    "reason": f"drawn by only {cover[canon]} kept families "
                                              f"(< {MIN_FAMILIES_PER_CLASS})"})
            continue
        classes.append(members)
    if len(set(c[0] for c in classes)) != len(classes):
        die("internal error: duplicate canonical characters")

    def stack(ch):
        rows = [k for k in kept if ch in renders[k]]
        return np.array([units[k][ch] for k in rows]), np.array(rows)

    # calibration: the known scale-only case pairs
    # (only the pairs without diacritics: an accent does not scale with the
    # letter, so ѓ/Ѓ, ї/Ї, й/Й, ќ/Ќ are not pure scale copies)
    calib = []
    for lo, up in CASE_PAIRS:
        if any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", lo + up)):
            continue
        if cover[lo] >= 10 and cover[up] >= 10:
            A, fa = stack(lo)
            B, fb = stack(up)
            calib.append((pair_nn_error(A, fa, B, fb), lo, up))
    calib.sort(key=lambda t: (t[0], pool_index[t[1]]))
    calib_min = calib[0][0]
    log(f"\ncalibration: 1-NN pair error of the {len(calib)} known scale-only case pairs: "
        f"min {calib_min:.3f} ({calib[0][1]}/{calib[0][2]}), "
        f"median {float(np.median([c[0] for c in calib])):.3f}; threshold {PAIR_NN_ERROR_MAX}")
    log("  " + " ".join(f"{lo}/{up}:{e:.3f}" for e, lo, up in calib))
    if calib_min <= PAIR_NN_ERROR_MAX:
        log("WARNING: the pair threshold does not separate all known case pairs")

    canon_list = [m[0] for m in classes]
    pair_err = all_pair_nn_errors([stack(c) for c in canon_list], canon_list)
    pair_err.sort(key=lambda t: (-t[0], pool_index[t[1]], pool_index[t[2]]))
    alive = set(canon_list)
    log("\nclosest class pairs (leave-one-family-out 1-NN error between the two classes):")
    for e, a, b in pair_err[:25]:
        log(f"  {e:.3f}  {a} {b}")
    top_class_pairs = [{"a": a, "b": b, "nn_error": round(e, 4)} for e, a, b in pair_err[:40]]
    for e, a, b in pair_err:
        if e <= PAIR_NN_ERROR_MAX:
            break
        if a in alive and b in alive:
            loser, winner = (b, a) if pool_index[b] > pool_index[a] else (a, b)
            alive.discard(loser)
            members = next(m for m in classes if m[0] == loser)
            dropped_classes.append({"chars": "".join(members), "codepoints": " ".join(map(cp, members)),
                                    "reason": f"too close to class {winner} (1-NN pair error {e:.3f} "
                                              f"> {PAIR_NN_ERROR_MAX})"})
    classes = [m for m in classes if m[0] in alive]
    log(f"\n{len(classes)} classes kept; dropped {len(dropped_classes)} candidate classes:")
    for d in dropped_classes:
        log(f"  - {d['chars']}: {d['reason']}")

    # ---- ids, order, arrays -----------------------------------------------
    classes.sort(key=lambda m: hashlib.sha256((CLASS_ORDER_SALT + cp(m[0])).encode()).hexdigest())
    fam_order = sorted(kept, key=lambda k: (CANDIDATES[k][0].casefold(), CANDIDATES[k][0]))
    fam_index = {k: n for n, k in enumerate(fam_order)}
    images, labels, fams = [], [], []
    for label, members in enumerate(classes):
        for k in fam_order:
            img = renders[k].get(members[0])
            if img is not None:
                images.append(img)
                labels.append(label)
                fams.append(fam_index[k])
    images = np.stack(images).astype(np.uint8)
    labels = np.array(labels, dtype=np.int64)
    fams = np.array(fams, dtype=np.int64)
    class_names = np.array([m[0] for m in classes])
    class_codepoints = np.array([" ".join(map(cp, m)) for m in classes])
    family_names = np.array([CANDIDATES[k][0] for k in fam_order])
    counts = np.bincount(labels, minlength=len(classes))
    n_classes = len(classes)
    half = n_classes // 2
    for name, ids in (("train", range(half)), ("test", range(half, n_classes))):
        sc = collections.Counter(script_of(classes[i][0]) for i in ids)
        log(f"{name} classes: {len(ids)}  by script: {dict(sorted(sc.items()))}")

    # raw-pixel sanity metric: leave-one-family-out 1-NN accuracy over all classes
    U = np.array([unit(x) for x in images])
    correct = 0
    for s in range(0, len(U), 1024):
        G = U[s:s + 1024] @ U.T
        G[fams[s:s + 1024, None] == fams[None, :]] = -9.0
        correct += int((labels[G.argmax(axis=1)] == labels[s:s + 1024]).sum())
    nn_acc = correct / len(U)
    # identical images within a class (two families drawing the same glyph)
    dup_within_class = 0
    for label in range(n_classes):
        sel = U[labels == label]
        G = sel @ sel.T
        dup_within_class += int(((G > 0.995).sum() - len(sel)) // 2)

    npz_path = outdir / "glyphs.npz"
    content_sha = write_npz(npz_path, [
        ("images", images), ("labels", labels), ("families", fams),
        ("class_names", class_names), ("class_codepoints", class_codepoints),
        ("family_names", family_names)])
    npz_sha = sha256_file(npz_path)
    write_preview(outdir / "preview.png", images, labels, fams, n_classes, len(fam_order))

    # ---- manifest ----------------------------------------------------------
    fam_entries = []
    for n, k in enumerate(fam_order):
        fam, style, pkg, path, idx, lineage = CANDIDATES[k]
        spdx, deb, src = font_license(pkg, path)
        fam_entries.append({
            "index": n, "family": fam, "style": style, "file": os.path.basename(path),
            "path": path, "ttc_index": idx, "package": pkg, "package_version": versions[pkg],
            "license": spdx, "license_debian": deb, "license_source": src,
            "sha256": sha256_file(path), "lineage": lineage,
            "max_similarity_to_other_kept": round(float(nn_sim_kept[k]), 4),
            "instances": int((fams == n).sum()),
            "rejected_renders": rejects[k],
        })
    for d in dropped_families:
        d["package_version"] = versions[d["package"]]
    class_entries = []
    for label, members in enumerate(classes):
        present = set(fams[labels == label].tolist())
        class_entries.append({
            "id": label, "split": "train" if label < half else "test",
            "char": members[0], "codepoints": " ".join(map(cp, members)),
            "merged_chars": "".join(members),
            "names": [unicodedata.name(m, "?") for m in members],
            "count": int(counts[label]),
            "missing_families": [n for n in range(len(fam_order)) if n not in present],
        })
    manifest = {
        "name": "glyphs",
        "description": "Real font glyph drawings: one class per character (homoglyphs merged), "
                       "one instance per font family (regular/upright style). CUB-style split: "
                       "class ids [0, C//2) train, [C//2, C) test.",
        "file": "glyphs.npz",
        "sha256": npz_sha,
        "content_sha256": content_sha,
        "size_bytes": npz_path.stat().st_size,
        "arrays": {
            "images": f"uint8 [{images.shape[0]}, {SIZE}, {SIZE}], white ink (255) on black (0)",
            "labels": f"int64 [{len(labels)}], class id",
            "families": f"int64 [{len(fams)}], family index",
            "class_names": f"unicode [{n_classes}], canonical character of each class",
            "class_codepoints": f"unicode [{n_classes}], all merged code points, canonical first",
            "family_names": f"unicode [{len(fam_order)}]",
        },
        "num_classes": n_classes, "num_families": len(fam_order), "num_images": int(len(labels)),
        "split": {"train_class_ids": [0, half], "test_class_ids": [half, n_classes],
                  "rule": "first half of the class ids trains, second half is the test set"},
        "class_order": f"sorted by sha256('{CLASS_ORDER_SALT}' + 'U+XXXX' of the canonical char)",
        "family_order": "family names, case-insensitive alphabetical",
        "sample_order": "(label, family)",
        "min_instances_per_class": int(counts.min()),
        "max_instances_per_class": int(counts.max()),
        "normalisation": {
            "image_size": SIZE, "supersample": SUPERSAMPLE, "box": BOX,
            "measure_font_size_px": MEASURE_SIZE,
            "description": "FreeType via Pillow (basic layout, anti-aliased); render at a font size "
                           f"making the ink bbox's longer side {BOX * SUPERSAMPLE} px; crop to the ink "
                           f"bbox; centre on a {SIZE * SUPERSAMPLE} px black canvas; reduce "
                           f"{SUPERSAMPLE}x with a box filter; white ink on black; aspect ratio kept",
            "missing_glyphs": "only code points the cmap (fontTools getBestCmap) maps to a glyph other "
                              "than glyph 0/.notdef; renders equal to the .notdef render or without ink "
                              "are rejected",
        },
        "selection": {
            "family_similarity": "median over shared pool characters of the pixel correlation of the "
                                 "normalised renderings",
            "family_similarity_max": FAMILY_SIMILARITY_MAX,
            "pair_nn_error_max": PAIR_NN_ERROR_MAX,
            "pair_nn_error": "leave-one-family-out 1-NN error between two classes on raw normalised "
                             "pixels (0.5 = indistinguishable)",
            "min_families_per_class": MIN_FAMILIES_PER_CLASS,
            "homoglyphs": "UTS #39 confusables skeletons (confusable-homoglyphs "
                          f"{confusable_homoglyphs.__version__ if hasattr(confusable_homoglyphs, '__version__') else PIP_PINS['confusable-homoglyphs']}, "
                          f"confusables.json sha256 {confusables_sha})",
            "case_pairs_dropped_by_construction": " ".join(lo + up for lo, up in CASE_PAIRS),
            "case_pair_calibration": [{"pair": lo + "/" + up, "nn_error": round(e, 4)} for e, lo, up in calib],
            "top_family_pairs": top_pairs_out,
            "top_class_pairs": top_class_pairs,
            "raw_pixel_leave_one_family_out_1nn_accuracy": round(nn_acc, 4),
            "near_identical_instance_pairs_within_classes": dup_within_class,
        },
        "pool": {name: s for name, s in POOL_SECTIONS},
        "families": fam_entries,
        "dropped_families": dropped_families,
        "classes": class_entries,
        "dropped_classes": dropped_classes,
        "build": {
            "debian": Path("/etc/debian_version").read_text().strip()
            if Path("/etc/debian_version").exists() else None,
            "python": platform.python_version(),
            "numpy": np.__version__, "Pillow": _deps["PIL"].__version__,
            "freetype": PIL.features.version("freetype2"),
            "fonttools": fontTools.version, "zlib": __import__("zlib").ZLIB_RUNTIME_VERSION,
            "pip": "pip install " + " ".join(f"{k}=={v}" for k, v in PIP_PINS.items()),
            "apt": "apt-get update && " + apt_command([c[2] for c in CANDIDATES]),
        },
    }
    (outdir / "MANIFEST.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(f"\nwrote {npz_path} ({npz_path.stat().st_size} bytes, sha256 {npz_sha})")
    log(f"classes {n_classes}, families {len(fam_order)}, images {len(labels)}, "
        f"instances/class {counts.min()}..{counts.max()}, raw-pixel LOFO 1-NN acc {nn_acc:.3f}, "
        f"near-identical same-class pairs {dup_within_class}")
    return manifest


def write_preview(path: Path, images, labels, fams, n_classes, n_fams, n=12):
    cls = [round(i * (n_classes - 1) / (n - 1)) for i in range(n)]
    fis = [round(i * (n_fams - 1) / (n - 1)) for i in range(n)]
    lookup = {(int(l), int(f)): i for i, (l, f) in enumerate(zip(labels, fams))}
    cell = SIZE + 2
    sheet = np.full((n * cell, n * cell), 96, np.uint8)
    for r, c in enumerate(cls):
        for col, f in enumerate(fis):
            i = lookup.get((c, f))
            if i is not None:
                sheet[r * cell + 1:r * cell + 1 + SIZE, col * cell + 1:col * cell + 1 + SIZE] = images[i]
            else:
                sheet[r * cell + 1:r * cell + 1 + SIZE, col * cell + 1:col * cell + 1 + SIZE] = 40
    Image.fromarray(sheet).save(path, optimize=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output directory (default: datasets/glyphs_data)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temporary directory and compare with the committed MANIFEST.json")
    args = ap.parse_args(argv)
    if not args.check:
        build(args.out)
        return 0
    ref_path = HERE / "MANIFEST.json"
    if not ref_path.exists():
        die(f"{ref_path} not found; nothing to check against")
    ref = json.loads(ref_path.read_text(encoding="utf-8"))
    tmp = Path(tempfile.mkdtemp(prefix="glyphs_check_"))
    try:
        new = build(tmp)
        have_npz = HERE / "glyphs.npz"
        committed = sha256_file(have_npz) if have_npz.exists() else None
        ok = new["sha256"] == ref["sha256"] and committed == ref["sha256"]
        log(f"\nmanifest sha256 : {ref['sha256']}")
        log(f"committed file  : {committed}")
        log(f"rebuilt         : {new['sha256']}")
        if not ok:
            if new["content_sha256"] == ref["content_sha256"]:
                log("arrays are identical; only the zip compression differs (zlib version?)")
            for key in ("families", "classes", "build"):
                if new[key] != ref[key]:
                    log(f"differs: {key}")
            for a, b in zip(ref["families"], new["families"]):
                for f in ("package_version", "sha256"):
                    if a.get(f) != b.get(f):
                        log(f"  {a['family']}: {f} {a.get(f)} -> {b.get(f)}")
            log("CHECK FAILED")
            return 1
        same_manifest = (new == ref)
        log("CHECK OK: rebuilt glyphs.npz is bit-for-bit identical"
            + ("" if same_manifest else " (manifest text differs)"))
        return 0 if same_manifest else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
