"""Publication figures. Each function takes plain result objects and returns a matplotlib Figure.

matplotlib is imported inside the functions, so the numerical package never needs it. One style for
all figures: the Okabe-Ito colour-blind-safe palette, axes labelled with units, viral loads in
log10 IU/mL with the assay limit drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["OKABE_ITO", "arm_colors", "plot_arms", "save_figure", "style"]

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

EFFECT_COLORS = {"eps": "#CC79A7", "eta": "#999999", "rho": "#56B4E9", "phi": "#E69F00", "sigma": "#000000"}
EFFECT_LABELS = {
    "eps": r"$\varepsilon$ (IFN: production block)",
    "eta": r"$\eta$ (IFN: infection block)",
    "rho": r"$\rho$ (RBV: non-infectious fraction)",
    "phi": r"$\varphi$ (celgosivir: non-infectious fraction)",
    "sigma": r"$\sigma$ (celgosivir: secretion block)",
}


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
    return {a: OKABE_ITO[i % len(OKABE_ITO)] for i, a in enumerate(arms)}


def plot_arms(sim):
    """Figure: typical-patient viral load per arm (a) and, for the arm with most drugs, the effects over 2 weeks (b).

    ``sim`` is a :class:`hcvdyn.trial.ArmSimulation`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(style()):
        fig, (ax_v, ax_e) = plt.subplots(1, 2, figsize=(7.2, 3.6), layout="constrained")
        colors = arm_colors(sim.trajectories)
        weeks = sim.t_days / 7.0
        for arm, tr in sim.trajectories.items():
            ax_v.plot(weeks, tr.log10_vl, color=colors[arm], label=arm)
            samples = np.isin(sim.t_days, sim.spec.sample_days)
            ax_v.plot(weeks[samples], tr.log10_vl[samples], "o", ms=3, color=colors[arm])
        ax_v.axhline(sim.spec.lloq_log10, color="0.4", ls=":", lw=1)
        ax_v.text(weeks[-1], sim.spec.lloq_log10, " LLOQ", va="bottom", ha="right", fontsize=7, color="0.4")
        ax_v.set_xlabel("time (weeks)")
        ax_v.set_ylabel(r"HCV RNA (log$_{10}$ IU/mL)")
        ax_v.set_title("(a) typical patient per arm", loc="left")
        ax_v.legend(frameon=False)
        arm = max(sim.spec.arms, key=lambda a: len({r.drug for r in sim.spec.arms[a]}))
        ex = sim.exposures[arm]
        window = sim.t_days <= min(14.0, sim.t_days[-1])
        for e, color in EFFECT_COLORS.items():
            if np.any(ex[e] > 0):
                ax_e.plot(sim.t_days[window], ex[e][window], color=color, label=EFFECT_LABELS[e])
        ax_e.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1)
        ax_e.set_ylim(0, 1.0)
        ax_e.set_xlabel("time (days)")
        ax_e.set_ylabel("effect (fraction, 0-1)")
        ax_e.set_title(f"(b) drug effects, {arm} arm, first 2 weeks", loc="left")
    return fig


def save_figure(fig, stem: str | Path, formats=("pdf", "svg", "png")) -> list[Path]:
    """Save as vector PDF/SVG and 300-dpi PNG next to each other; returns the paths."""
    stem = Path(stem)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=300 if fmt == "png" else None)
        paths.append(path)
    return paths
