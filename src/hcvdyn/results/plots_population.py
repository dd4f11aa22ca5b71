"""Figures of a virtual population against a trial's reported top line (the main job's figure)."""

from __future__ import annotations

import numpy as np

from hcvdyn.results.plotstyle import arm_colors, pyplot, style

__all__ = ["plot_population_arms"]


def plot_population_arms(t_days, arms, reported=None, weeks: float = 12.0, title: str = ""):
    """Per arm: median and 5-95% band of the change in log10 load from baseline, with the reported means.

    t_days: (n,) days; arms: name -> dict with ``median``, ``lo``, ``hi`` (n,) changes from baseline (log10,
    negative = decline), ``mean_drop`` (value, lo, hi) and ``pct_evr`` (value, lo, hi) of the virtual arm.
    reported: name -> dict with ``mean_drop`` (value, lo, hi) and ``pct_evr`` (value, lo, hi), or None where
    the trial reported nothing. The last panel compares EVR rates.
    """
    _, plt = pyplot()
    names = list(arms)
    colors = arm_colors(names)
    reported = reported or {}
    t_w = np.asarray(t_days, dtype=float) / 7.0
    keep = t_w <= weeks + 1e-9
    with plt.rc_context(style()):
        fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.3 * (len(names) + 1), 2.9), sharey=False, layout="constrained")
        lows = []
        for ax, a in zip(axes, names):
            r = arms[a]
            ax.fill_between(t_w[keep], r["lo"][keep], r["hi"][keep], color=colors[a], alpha=0.25, lw=0, label="virtual 5-95%")
            ax.plot(t_w[keep], r["median"][keep], color=colors[a], label="virtual median")
            m, lo, hi = r["mean_drop"]
            ax.errorbar([weeks + 0.35], [-m], yerr=[[hi - m], [m - lo]], fmt="o", ms=3.5, color=colors[a], mfc="white", capsize=2, label="virtual mean (95%)")
            if reported.get(a) and reported[a].get("mean_drop") is not None:
                m2, lo2, hi2 = reported[a]["mean_drop"]
                ax.errorbar([weeks - 0.35], [-m2], yerr=[[hi2 - m2], [m2 - lo2]], fmt="s", ms=3.5, color="black", capsize=2, label="reported mean (95%)")
            ax.axhline(0.0, color="0.6", lw=0.6)
            ax.axhline(-2.0, color="0.6", lw=0.6, ls=":")
            ax.set_title(a)
            ax.set_xlabel("week")
            ax.set_xlim(-0.3, weeks + 1.0)
            lows.append(float(np.nanmin(r["lo"][keep])))
        axes[0].set_ylabel("change from baseline\n(log10 IU/mL)")
        low = min(min(lows), -2.5)
        for ax in axes[: len(names)]:
            ax.set_ylim(low - 0.2, 0.6)
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1 : len(names)]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        axes[0].legend(handles, labels, loc="lower left", frameon=False, fontsize=7)
        ax = axes[-1]
        x = np.arange(len(names))
        for i, a in enumerate(names):
            v, lo, hi = arms[a]["pct_evr"]
            ax.errorbar([i + 0.12], [v], yerr=[[v - lo], [hi - v]], fmt="o", ms=3.5, color=colors[a], mfc="white", capsize=2)
            if reported.get(a) and reported[a].get("pct_evr") is not None:
                v2, lo2, hi2 = reported[a]["pct_evr"]
                ax.errorbar([i - 0.12], [v2], yerr=[[v2 - lo2], [hi2 - v2]], fmt="s", ms=3.5, color="black", capsize=2)
        ax.set_xticks(x, names)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylim(0, 100)
        ax.set_ylabel("EVR at week 12 (%)")
        ax.set_title("EVR at week 12")
        if title:
            fig.suptitle(title)
    return fig
