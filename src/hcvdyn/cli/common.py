"""Helpers shared by the command modules: results folders refused before any work, aligned text tables,
argument types.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def results_folder(args, name: str) -> Path:
    """--out or results/NAME; refused before any work when it exists and --force is not given."""
    out = Path(args.out) if args.out else Path("results") / name
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} already exists; use --force to replace it")
    return out



def aligned(rows) -> str:
    """Rows of text cells as lines indented by two spaces: the first column left-aligned, the others right-aligned."""
    widths = [max(len(c) for c in col) for col in zip(*rows)]
    return "\n".join("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)



def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")
    return v
