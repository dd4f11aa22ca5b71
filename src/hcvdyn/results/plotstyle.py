"""The house style of hcvdyn's figures and the pieces every figure module shares.

matplotlib is imported inside the functions (:func:`pyplot`), so the numerical package never needs it.
One style for all figures: the Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008, "Color Universal
Design"), axes labelled with units, viral loads in log10 IU/mL with the assay limit drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hcvdyn.model.drugs import DRUGS

__all__ = ["OKABE_ITO", "EFFECT_COLORS", "EFFECT_LABELS", "VL_LABEL", "DROP_LABEL", "style", "arm_colors", "save_figure",
           "pyplot", "draw_lloq", "mark_samples", "wrap_to_width"]

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

EFFECT_COLORS = {"eps": "#CC79A7", "eta": "#999999", "rho": "#56B4E9", "phi": "#E69F00", "sigma": "#000000"}
EFFECT_LABELS = {p.name: f"{p.label()} ({d.name.split('_')[0]})" for d in DRUGS.values() for p in d.constant_params}  # symbol and drug, declared once


def style() -> dict:
    """rcParams of the house style (use with ``matplotlib.rc_context``)."""
    return {
        "font.size": 9,
        "axes.titlesize": 9,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": __import__("cycler").cycler(color=OKABE_ITO),
        "lines.linewidth": 1.4,
        "savefig.bbox": "tight",
        "pdf.fonttype": 42,
        "svg.fonttype": "none",
    }


def arm_colors(arms) -> dict[str, str]:
    """Arm -> Okabe-Ito colour, in order."""
    return {a: OKABE_ITO[i % len(OKABE_ITO)] for i, a in enumerate(arms)}


def save_figure(fig, stem: str | Path, formats=("pdf", "svg", "png")) -> list[Path]:
    """Save as vector PDF/SVG and 300-dpi PNG next to each other; returns the paths.

    The layout engine (constrained layout) runs for the first format only; the others keep its axes
    positions (a 57-panel figure's layout costs as much as drawing it). ``fig`` keeps no layout engine after.
    """
    stem = Path(stem)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=300 if fmt == "png" else None)
        fig.set_layout_engine("none")
        paths.append(path)
    return paths


VL_LABEL = r"HCV RNA (log$_{10}$ IU/mL)"
DROP_LABEL = r"decline from baseline (log$_{10}$ IU/mL)"


def pyplot():
    """(matplotlib, matplotlib.pyplot), on the non-interactive Agg backend unless one was chosen."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return matplotlib, plt


def draw_lloq(ax, lloq_log10: float, x_right: float) -> None:
    """The assay limit as a dotted line labelled "LLOQ" at ``x_right``."""
    ax.axhline(lloq_log10, color="0.4", ls=":", lw=1)
    ax.text(x_right, lloq_log10, "LLOQ", va="bottom", ha="right", fontsize=6, color="0.4")


def mark_samples(ax, x, y, censored, color, ms=3.0):
    """Observed samples as filled circles; censored ones (at their limit) as open down-triangles."""
    x, y, censored = np.asarray(x), np.asarray(y), np.asarray(censored, bool)
    ax.plot(x[~censored], y[~censored], "o", ms=ms, color=color, zorder=3)
    if censored.any():
        ax.plot(x[censored], y[censored], "v", ms=ms + 1, mfc="white", mec=color, zorder=3)




def wrap_to_width(text: str, width_in: float, fontsize: float) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (glyphs taken as 0.55 em wide)."""
    import textwrap

    return textwrap.fill(text, max(20, int(width_in * 72 / (0.55 * fontsize))))
