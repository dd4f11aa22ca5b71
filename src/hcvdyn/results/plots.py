"""Publication figures. Each function takes plain result objects and returns a matplotlib Figure.

matplotlib is imported inside the functions, so the numerical package never needs it. One style for
all figures (:mod:`hcvdyn.results.plotstyle`): the Okabe-Ito colour-blind-safe palette, axes labelled with units,
viral loads in log10 IU/mL with the assay limit drawn. The figures of a fit live in :mod:`hcvdyn.plots_fit`
and are re-exported here; this module holds those of simulated arms, outcomes, synergy and scenarios.
"""

from __future__ import annotations

import math

import numpy as np

from hcvdyn.results.plots_fit import plot_gof as plot_gof
from hcvdyn.results.plots_fit import plot_forest as plot_forest
from hcvdyn.results.plots_fit import plot_patient_fits as plot_patient_fits
from hcvdyn.results.plots_fit import plot_profiles as plot_profiles
from hcvdyn.results.plots_fit import plot_vpc as plot_vpc
from hcvdyn.results.plotstyle import DROP_LABEL, EFFECT_COLORS, EFFECT_LABELS, arm_colors, pyplot, style, wrap_to_width
from hcvdyn.results.plotstyle import OKABE_ITO as OKABE_ITO
from hcvdyn.results.plotstyle import save_figure as save_figure

__all__ = [
    "OKABE_ITO", "arm_colors", "style", "save_figure", "plot_arms", "plot_patient_fits", "plot_arm_trajectories",
    "plot_waterfall", "plot_vpc", "plot_pk_efficacy", "plot_synergy", "plot_forest", "plot_profiles", "plot_scenarios",
    "plot_scenario_trajectories", "plot_gof",
]


def plot_arms(sim):
    """Figure: typical-patient viral load per arm (a) and, for the arm with most drugs, the effects over 2 weeks (b).

    ``sim`` is a :class:`hcvdyn.analysis.arms.ArmSimulation`.
    """
    matplotlib, plt = pyplot()
    with matplotlib.rc_context(style()):
        fig, (ax_v, ax_e) = plt.subplots(1, 2, figsize=(7.2, 3.6), layout="constrained")
        colors = arm_colors(sim.trajectories)
        weeks = sim.t_days / 7.0
        styles = ("-", "--", ":", "-.")  # arms whose typical patients coincide stay visible, one over the other
        for k, (arm, tr) in enumerate(sim.trajectories.items()):
            ax_v.plot(weeks, tr.log10_vl, color=colors[arm], ls=styles[k % len(styles)], label=arm)
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



def plot_arm_trajectories(observed=None, model=None, unit: str = "days", title: str = ""):
    """Mean log10 decline by arm over time with 95% intervals: data (points with bars) and model (line, band).

    observed / model: arm -> (t_days, centre, lower, upper). Either may be None (e.g. a virtual trial has no data).
    """
    matplotlib, plt = pyplot()
    if not observed and not model:
        raise ValueError("plot_arm_trajectories: nothing to draw")
    arms = list(dict.fromkeys([*(observed or {}), *(model or {})]))
    colors = arm_colors(arms)
    scale = 7.0 if unit == "weeks" else 1.0
    with matplotlib.rc_context(style()):
        fig, ax = plt.subplots(figsize=(4.2, 3.2), layout="constrained")
        for arm in arms:
            c = colors[arm]
            if model and arm in model:
                t, m, lo, hi = (np.asarray(a, float) for a in model[arm])
                ax.fill_between(t / scale, lo, hi, color=c, alpha=0.18, lw=0)
                ax.plot(t / scale, m, color=c, label=f"{arm} (model)")
            if observed and arm in observed:
                t, m, lo, hi = (np.asarray(a, float) for a in observed[arm])
                ax.errorbar(t / scale, m, yerr=[m - lo, hi - m], fmt="o", ms=3.5, color=c, capsize=2, lw=1,
                            label=f"{arm} (data)")
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.invert_yaxis()
        ax.set_xlabel(f"time ({unit})")
        ax.set_ylabel(DROP_LABEL)
        ax.set_title(wrap_to_width(title or "mean decline by arm, 95% intervals", 3.9, 9), loc="left")
        ax.legend(frameon=False, fontsize=7)
    return fig


def plot_scenario_trajectories(model, reference: str, unit: str = "weeks", ncols: int = 3, title: str = ""):
    """Trajectories of what-if scenarios, one panel per scenario, each over the reference arm's.

    model: arm -> (t_days, centre, lower, upper) of the decline in log10 IU/mL (e.g. the median and 5-95% of
    virtual patients), the reference arm among them. Each panel: one scenario (its colour: band and line) over
    the reference (grey: dashed centre, dotted limits), on shared axes.
    """
    matplotlib, plt = pyplot()
    from matplotlib.lines import Line2D
    if reference not in model:
        raise ValueError(f"plot_scenario_trajectories: reference arm {reference!r} not among {', '.join(model)}")
    others = [a for a in model if a != reference]
    if not others:
        raise ValueError("plot_scenario_trajectories: no scenario besides the reference arm")
    colors = arm_colors(others)
    scale = 7.0 if unit == "weeks" else 1.0
    ncols = min(ncols, len(others))
    nrows = -(-len(others) // ncols)
    t_r, m_r, lo_r, hi_r = (np.asarray(a, float) for a in model[reference])
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols + 0.5, 1.9 * nrows + 0.8), sharex=True, sharey=True,
                                 layout="constrained", squeeze=False)
        for ax, arm in zip(axes.flat, others):
            t, m, lo, hi = (np.asarray(a, float) for a in model[arm])
            ax.fill_between(t / scale, lo, hi, color=colors[arm], alpha=0.3, lw=0)
            ax.plot(t / scale, m, color=colors[arm])
            ax.plot(t_r / scale, m_r, color="0.3", ls="--", lw=1.0)
            ax.plot(t_r / scale, np.c_[lo_r, hi_r], color="0.3", ls=":", lw=0.8)
            ax.axhline(0.0, color="0.6", lw=0.8)
            ax.set_title(arm, loc="left", fontsize=8)
        for k, ax in enumerate(axes.flat):
            if k >= len(others):
                ax.set_visible(False)
            elif k + ncols >= len(others):  # the lowest panel of its column: its time axis is labelled
                ax.xaxis.set_tick_params(labelbottom=True)
        axes[0, 0].invert_yaxis()
        axes[0, 0].legend(handles=[Line2D([], [], color="0.3", ls="--", lw=1.0, label=f"{reference} (reference)"),
                                   Line2D([], [], color="0.3", ls=":", lw=0.8, label="its 5-95% limits")],
                          frameon=False, fontsize=6.5, loc="lower left")
        fig.supxlabel(f"time ({unit})", fontsize=9)
        fig.supylabel(DROP_LABEL, fontsize=9)
        if title:
            fig.suptitle(wrap_to_width(title, 2.3 * ncols + 0.3, 8), fontsize=8)
    return fig


def plot_waterfall(drops, evr_threshold: float = 2.0, censored=None, week: int = 12):
    """Waterfall of each patient's week-``week`` log10 decline, one panel per arm, with the EVR threshold.

    drops: arm -> array of declines (log10 IU/mL; NaN = no week-12 sample, left out). censored: arm -> bool
    array (undetectable at that week: the bar is a lower bound and is hatched).
    """
    matplotlib, plt = pyplot()
    arms = list(drops)
    colors = arm_colors(arms)
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(1, len(arms), figsize=(2.4 * len(arms) + 0.4, 3.0), sharey=True, layout="constrained",
                                 squeeze=False)
        for ax, arm in zip(axes[0], arms):
            d = np.asarray(drops[arm], float)
            cen = np.asarray(censored[arm], bool) if censored and arm in censored else np.zeros(d.size, bool)
            keep = np.isfinite(d)
            d, cen = d[keep], cen[keep]
            order = np.argsort(-d)
            bars = ax.bar(np.arange(d.size), d[order], width=0.85, color=colors[arm], lw=0)
            for b, c in zip(bars, cen[order]):
                if c:
                    b.set_hatch("////")
                    b.set_edgecolor("white")
            ax.axhline(evr_threshold, color="0.2", ls="--", lw=1)
            ax.axhline(0.0, color="0.6", lw=0.8)
            pct = 100.0 * np.mean(d >= evr_threshold) if d.size else math.nan
            ax.set_title(f"{arm}: n = {d.size}, {pct:.0f}% >= {evr_threshold:g}", loc="left")
            ax.set_xlabel("patients (sorted)")
            ax.set_xticks([])
        axes[0, 0].set_ylabel(f"week-{week} decline (log$_{{10}}$ IU/mL)")
        axes[0, -1].text(1.0, evr_threshold, f" EVR ({evr_threshold:g} log$_{{10}}$)", transform=axes[0, -1].get_yaxis_transform(),
                         va="bottom", ha="right", fontsize=7)
    return fig



def plot_pk_efficacy(rows):
    """Concentration (left) and effect (right) of each drug of one arm over time.

    rows: one arm's exposure table, as written to ``pk_efficacy.csv``
    (:meth:`hcvdyn.analysis.arms.ArmSimulation.exposure_rows`: arm, day, conc_DRUG, effects).
    """
    matplotlib, plt = pyplot()
    from hcvdyn.model.drugs import DRUGS

    if not rows:
        raise ValueError("plot_pk_efficacy: no rows")
    arm = rows[0]["arm"]
    t = np.array([r["day"] for r in rows], dtype=float)
    col = lambda k: np.array([r[k] for r in rows], dtype=float)  # noqa: E731
    drugs = [k[5:] for k in rows[0] if k.startswith("conc_") and k[5:] in DRUGS]
    if not drugs:
        raise ValueError(f"plot_pk_efficacy: arm {arm!r} has no drug with pharmacokinetics")
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(len(drugs), 2, figsize=(6.4, 1.8 * len(drugs) + 0.4), sharex=True, layout="constrained",
                                 squeeze=False)
        for row, d in zip(axes, drugs):
            drug = DRUGS[d]
            row[0].plot(t, col(f"conc_{d}"), color="0.15")
            row[0].set_ylabel(f"{d.split('_')[0]}\nconcentration ({drug.conc_unit})")
            for e in drug.effects:
                if e in rows[0] and np.any(col(e) > 0):
                    row[1].plot(t, col(e), color=EFFECT_COLORS[e], label=EFFECT_LABELS[e])
            row[1].set_ylim(0, 1)
            row[1].set_ylabel("effect (fraction, 0-1)")
            if row[1].lines:
                row[1].legend(fontsize=6.5, loc="upper right", framealpha=0.9, edgecolor="none")
        for ax in axes[-1]:
            ax.set_xlabel("time (days)")
        axes[0, 0].set_title(f"(a) concentrations, {arm} arm", loc="left")
        axes[0, 1].set_title("(b) effects", loc="left")
    return fig


def plot_synergy(x, surface, bliss, psi: float, psi_interval=(math.nan, math.nan), names=("drug A", "drug B"),
                 point=None, levels=(0.5, 0.8, 0.9, 0.95)):
    """Isobologram (a) and excess over Bliss (b) of a drug pair, from :func:`hcvdyn.analysis.synergy.interaction_surface`.

    x: concentrations in EC50 units (log grid); surface / bliss: (n, n) combined effect at psi and at 0 (rows:
    drug A). point: (x_A, x_B) of the fitted exposures, marked on both panels. Each fitted isobole is labelled
    once, upright, near the diagonal and apart from the other labels (:func:`_isobole_label_points`); panel
    (b)'s colour scale is symmetric around 0 at the largest departure (at least 0.001).
    """
    matplotlib, plt = pyplot()
    departure = np.asarray(surface, float) - np.asarray(bliss, float)
    span = max(float(np.nanmax(np.abs(departure))) if np.any(np.isfinite(departure)) else 0.0, 1e-3)
    with matplotlib.rc_context(style()):
        fig, (ax_i, ax_s) = plt.subplots(1, 2, figsize=(7.0, 3.2), layout="constrained")
        ax_i.contour(x, x, bliss, levels=levels, colors="0.45", linestyles="--", linewidths=1)
        cs_f = ax_i.contour(x, x, surface, levels=levels, colors="#D55E00", linewidths=1.3)
        avoid = [(point[1], point[0])] if point is not None else []
        for level, (xb, xa) in _isobole_label_points(cs_f, (x[0], x[-1]), avoid).items():
            ax_i.text(xb, xa, f"{level:g}", fontsize=6, color="#D55E00", ha="center", va="center", rotation=0,
                      bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"}, zorder=4)
        lo, hi = psi_interval
        ax_i.plot([], [], color="#D55E00", label=f"fitted, psi = {psi:.2f} [{lo:.2f}, {hi:.2f}]")
        ax_i.plot([], [], color="0.45", ls="--", label="Bliss independence (psi = 0)")
        excess = ax_s.pcolormesh(x, x, departure, cmap="RdBu_r", vmin=-span, vmax=span, shading="gouraud")
        fig.colorbar(excess, ax=ax_s, label="combined effect minus Bliss (fraction)")
        for ax in (ax_i, ax_s):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(x[0], x[-1])
            ax.set_ylim(x[0], x[-1])
            ax.set_xlabel(f"{names[1]} (concentration / EC50, 1)")
            ax.set_ylabel(f"{names[0]} (concentration / EC50, 1)")
            if point is not None:
                ax.plot([point[1]], [point[0]], "k*", ms=8, label="fitted exposure")
        fig.legend(handles=ax_i.get_lines()[:3], frameon=False, fontsize=7, loc="outside lower center", ncol=3,
                   title=f"isoboles at combined effects {', '.join(map(str, levels))}", title_fontsize=7)
        ax_i.set_title("(a) isoboles of the combined effect", loc="left")
        ax_s.set_title("(b) departure from Bliss", loc="left")
    return fig


def _isobole_label_points(contours, limits, avoid=(), apart=(0.14, 0.08)) -> dict[float, tuple[float, float]]:
    """Level -> (x, y) on its isobole for an upright label: the vertex nearest the diagonal that lies at least
    ``apart`` (axes fractions, x and y) from every label placed before it and from the ``avoid`` points (a
    marker), away from the axes' edges. Both axes are logarithmic over ``limits``."""
    lo, hi = np.log10(limits[0]), np.log10(limits[1])
    placed: dict[float, tuple[float, float]] = {}
    frac = [(np.log10(np.asarray(a, float)) - lo) / (hi - lo) for a in avoid]
    for level, path in zip(contours.levels, contours.get_paths()):
        v = path.vertices
        if v.size == 0:
            continue
        f = (np.log10(np.clip(v, 10**lo, 10**hi)) - lo) / (hi - lo)
        ok = (f.min(axis=1) > 0.04) & (f.max(axis=1) < 0.96)
        for g in frac:
            ok &= (np.abs(f[:, 0] - g[0]) > apart[0]) | (np.abs(f[:, 1] - g[1]) > apart[1])
        if not ok.any():
            continue
        k = np.flatnonzero(ok)[np.argmin(np.abs(f[ok, 0] - f[ok, 1]))]
        placed[float(level)] = (float(v[k, 0]), float(v[k, 1]))
        frac.append(f[k])
    return placed


def plot_scenarios(rows, reference: str):
    """Scenario comparison: difference from the reference arm in mean week-12 decline and in % EVR, 95% CI.

    rows: :func:`hcvdyn.analysis.virtual_trial.compare_arms` output (keys scenario, diff_mean_drop(_lo/_hi), diff_pct_evr(_lo/_hi)).
    """
    matplotlib, plt = pyplot()
    if not rows:
        raise ValueError("plot_scenarios: no scenarios")
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(1, 2, figsize=(6.6, 0.8 + 0.35 * len(rows)), sharey=True, layout="constrained")
        y = np.arange(len(rows))[::-1]
        for ax, key, label in ((axes[0], "diff_mean_drop", r"difference in mean week-12 decline (log$_{10}$ IU/mL)"),
                               (axes[1], "diff_pct_evr", "difference in EVR (percentage points)")):
            for yi, r in zip(y, rows):
                c = "#D55E00" if r[f"{key}_lo"] > 0 else ("#0072B2" if r[f"{key}_hi"] < 0 else "0.4")
                ax.plot([r[f"{key}_lo"], r[f"{key}_hi"]], [yi, yi], color=c, lw=1.8)
                ax.plot(r[key], yi, "o", color=c, ms=4)
            ax.axvline(0.0, color="0.3", lw=0.9)
            ax.set_xlabel(label)
        axes[0].set_yticks(y, [r["scenario"] for r in rows])
        axes[0].set_title(f"vs reference arm {reference!r}", loc="left")
    return fig
