"""README "Use your model": every command in its block is accepted by the program it calls."""
from __future__ import annotations

import shlex

import embed
import search
from inference import glyph_images
from tests.test_readme import block

PARSERS = {"embed.py": embed.build_parser, "search.py": search.build_parser,
           "inference.glyph_images": glyph_images.build_parser}


def commands() -> list:
    """argv of each `python ...` line of the block, comments dropped, `$RUN` as a plain word."""
    text = block("use-your-model").replace("\\\n", " ")
    lines = [line.split(" #")[0].strip() for line in text.splitlines()]
    return [shlex.split(line.replace("$RUN", "RUN"))[1:] for line in lines if line.startswith("python ")]


def test_every_command_parses():
    programs = []
    for argv in commands():
        program, args = (argv[1], argv[2:]) if argv[0] == "-m" else (argv[0], argv[1:])
        PARSERS[program]().parse_args(args)
        programs.append(program + (" --export" if "--export" in args else ""))
    assert set(programs) == {"inference.glyph_images", "embed.py", "search.py", "embed.py --export"}
