"""What embed.py and search.py share as command-line programs: one-line errors and warnings, interrupts.

* Bad input (`UsageError`) ends with one line `<prog>: error: ...` on stderr and exit status 2, no traceback.
* A failed export check (`ExportMismatch`) ends the same way with exit status 1: the input was fine.
* Warnings (an unreadable image skipped) print as one line `<prog>: warning: ...` each.
* Ctrl-C and SIGTERM stop the program with `<prog>: interrupted` and exit status 130; the writers are
  atomic, so nothing half-written is left.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from contextlib import contextmanager

import torch

from inference import images
from inference.export import ExportMismatch
from utilities.device import resolve_device
from utilities.errors import UsageError

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def one_line_messages(prog: str):
    """Run a program's body with the conventions of the module docstring."""
    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(f"{prog}: warning: {message}\n")

    previous_show, previous_term = warnings.showwarning, signal.getsignal(signal.SIGTERM)
    warnings.showwarning = show
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except UsageError as err:
        sys.stderr.write(f"{prog}: error: {err}\n")
        raise SystemExit(EXIT_USAGE) from None
    except ExportMismatch as err:
        sys.stderr.write(f"{prog}: error: {err}\n")
        raise SystemExit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; nothing half-written was left\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        warnings.showwarning = previous_show
        signal.signal(signal.SIGTERM, previous_term)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="Where the network runs (auto: CUDA when present).")
    parser.add_argument("--batch_size", type=positive_int, default=None,
                        help="Images per batch (default: the run's --bs).")
    parser.add_argument("--workers", type=int, default=None,
                        help="Image-loading processes (default: the run's --kernels, at most the CPU count).")


def device(args) -> torch.device:
    return resolve_device(argparse.Namespace(device=args.device, gpu=None))


def embed(args, run, found, source: str):
    """`images.embed_images` with --batch_size and --workers, defaulting to the run's --bs and --kernels."""
    workers = args.workers if args.workers is not None else min(run.opt.kernels, os.cpu_count() or 1)
    return images.embed_images(run, found, source, next(run.model.parameters()).device,
                               args.batch_size or run.opt.bs, max(0, workers))
