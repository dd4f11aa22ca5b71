"""Publication figures. Each function takes plain result objects and returns a matplotlib Figure.

matplotlib is imported inside the functions, so the numerical package never needs it. One style for
all figures: the Okabe-Ito colour-blind-safe palette, axes labelled with units, viral loads in
log10 IU/mL with the assay limit drawn.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = [
    "OKABE_ITO", "arm_colors", "style", "save_figure", "plot_arms", "plot_patient_fits", "plot_arm_trajectories",
    "plot_waterfall", "plot_vpc", "plot_pk_efficacy", "plot_synergy", "plot_forest", "plot_profiles", "plot_scenarios",
]

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
    """Arm -> Okabe-Ito colour, in order."""
    return {a: OKABE_ITO[i % len(OKABE_ITO)] for i, a in enumerate(arms)}


def plot_arms(sim):
    """Figure: typical-patient viral load per arm (a) and, for the arm with most drugs, the effects over 2 weeks (b).

    ``sim`` is a :class:`hcvdyn.trial.ArmSimulation`.
    """
    matplotlib, plt = _pyplot()
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


# ---- shared pieces ---------------------------------------------------------------------------------

VL_LABEL = r"HCV RNA (log$_{10}$ IU/mL)"
DROP_LABEL = r"decline from baseline (log$_{10}$ IU/mL)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return matplotlib, plt


def _draw_lloq(ax, lloq_log10: float, x_right: float) -> None:
    ax.axhline(lloq_log10, color="0.4", ls=":", lw=1)
    ax.text(x_right, lloq_log10, "LLOQ", va="bottom", ha="right", fontsize=6, color="0.4")


def _mark_samples(ax, x, y, censored, color, ms=3.0):
    """Observed samples as filled circles; censored ones (at their limit) as open down-triangles."""
    x, y, censored = np.asarray(x), np.asarray(y), np.asarray(censored, bool)
    ax.plot(x[~censored], y[~censored], "o", ms=ms, color=color, zorder=3)
    if censored.any():
        ax.plot(x[censored], y[censored], "v", ms=ms + 1, mfc="white", mec=color, zorder=3)


def plot_patient_fits(patients, curves, ncols: int = 6, max_patients: int | None = None, colors=None):
    """Grid of patients: samples, fitted curve and 95% prediction band (log10 IU/mL vs days).

    patients: :class:`hcvdyn.data.PatientData` sequence. curves: id -> (t_days, fitted, lower, upper) with
    the band's limits (NaN to omit). Censored samples are open triangles at their limit; the limit is dotted.
    """
    matplotlib, plt = _pyplot()
    pats = list(patients)[:max_patients]
    if not pats:
        raise ValueError("plot_patient_fits: no patients")
    colors = colors or arm_colors(dict.fromkeys(p.arm for p in pats))
    nrows = -(-len(pats) // ncols)
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.25 * ncols + 0.4, 1.05 * nrows + 0.6), sharex=True, sharey=True,
                                 layout="constrained", squeeze=False)
        for ax, p in zip(axes.flat, pats):
            c = colors[p.arm]
            t, f, lo, hi = (np.asarray(a, float) for a in curves[p.id])
            if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
                ax.fill_between(t, lo, hi, color=c, alpha=0.2, lw=0)
            ax.plot(t, f, color=c, lw=1.0)
            _mark_samples(ax, p.t_days, p.log10_vl, p.censored, c, ms=2.2)
            _draw_lloq(ax, float(np.min(p.lloq_log10)), t[-1])
            ax.set_title(f"{p.id} ({p.arm})", fontsize=6.5, pad=2)
        for ax in axes.flat[len(pats):]:
            ax.set_visible(False)
        low = min(float(np.min(p.lloq_log10)) for p in pats) - 1.5
        axes[0, 0].set_ylim(bottom=low)
        fig.supylabel(VL_LABEL, fontsize=8)
        fig.supxlabel("time (days)", fontsize=8)
        fig.suptitle("data (dots; open triangles: below LLOQ), fit (line) and 95% prediction band", fontsize=8)
    return fig


def plot_arm_trajectories(observed=None, model=None, unit: str = "days", title: str = ""):
    """Mean log10 decline by arm over time with 95% intervals: data (points with bars) and model (line, band).

    observed / model: arm -> (t_days, centre, lower, upper). Either may be None (e.g. a virtual trial has no data).
    """
    matplotlib, plt = _pyplot()
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
        ax.set_title(title or "mean decline by arm, 95% intervals", loc="left")
        ax.legend(frameon=False, fontsize=7)
    return fig


def plot_waterfall(drops, evr_threshold: float = 2.0, censored=None, week: int = 12):
    """Waterfall of each patient's week-``week`` log10 decline, one panel per arm, with the EVR threshold.

    drops: arm -> array of declines (log10 IU/mL; NaN = no week-12 sample, left out). censored: arm -> bool
    array (undetectable at that week: the bar is a lower bound and is hatched).
    """
    matplotlib, plt = _pyplot()
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


def plot_vpc(observed, simulated, lloq_log10: float, percentiles=(10, 50, 90)):
    """Visual predictive check, one panel per arm.

    observed: arm -> (t_days, (k, n_t) observed percentiles). simulated: arm -> (t_days, (k, 3, n_t)) median,
    lower and upper limits over replicate trials of each simulated percentile. Values in log10 IU/mL,
    censored samples counted at the limit.
    """
    matplotlib, plt = _pyplot()
    arms = list(observed)
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(1, len(arms), figsize=(2.6 * len(arms) + 0.4, 3.0), sharey=True, layout="constrained",
                                 squeeze=False)
        shades = ("#56B4E9", "#D55E00", "#56B4E9")
        for ax, arm in zip(axes[0], arms):
            t_s, sim = simulated[arm]
            t_o, obs = observed[arm]
            for k, q in enumerate(percentiles):
                c = shades[k % len(shades)] if q != 50 else "#D55E00"
                ax.fill_between(t_s, sim[k, 1], sim[k, 2], color=c, alpha=0.25, lw=0)
                ax.plot(t_s, sim[k, 0], color=c, lw=0.8, ls="--")
                ax.plot(t_o, obs[k], "o-" if q == 50 else "o:", color="0.1", ms=2.5, lw=1.0)
            _draw_lloq(ax, lloq_log10, t_s[-1])
            ax.set_title(arm, loc="left")
            ax.set_xlabel("time (days)")
        axes[0, 0].set_ylabel(VL_LABEL)
        fig.suptitle(f"VPC: observed {'/'.join(map(str, percentiles))}th percentiles (black) vs 95% intervals of the "
                     "simulated ones (bands)", fontsize=8)
    return fig


def plot_pk_efficacy(sim, arm: str | None = None, days: float | None = 14.0):
    """Concentration (left) and effect (right) of each drug of an arm over time, from :func:`hcvdyn.trial.simulate_arms`."""
    matplotlib, plt = _pyplot()
    from .drugs import DRUGS

    arm = arm or max(sim.spec.arms, key=lambda a: len({r.drug for r in sim.spec.arms[a]}))
    ex = sim.exposures[arm]
    drugs = [d for d in dict.fromkeys(r.drug for r in sim.spec.arms[arm]) if f"conc_{d}" in ex]
    if not drugs:
        raise ValueError(f"plot_pk_efficacy: arm {arm!r} has no drug with pharmacokinetics")
    window = sim.t_days <= (days if days is not None else sim.t_days[-1])
    t = sim.t_days[window]
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(len(drugs), 2, figsize=(6.4, 1.8 * len(drugs) + 0.4), sharex=True, layout="constrained",
                                 squeeze=False)
        for row, d in zip(axes, drugs):
            drug = DRUGS[d]
            row[0].plot(t, ex[f"conc_{d}"][window], color="0.15")
            row[0].set_ylabel(f"{d.split('_')[0]}\nconcentration ({drug.conc_unit})")
            for e in drug.effects:
                if e in ex and np.any(ex[e][window] > 0):
                    row[1].plot(t, ex[e][window], color=EFFECT_COLORS[e], label=EFFECT_LABELS[e])
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
    """Isobologram (a) and excess over Bliss (b) of a drug pair, from :func:`hcvdyn.synergy.interaction_surface`.

    x: concentrations in EC50 units (log grid); surface / bliss: (n, n) combined effect at psi and at 0 (rows:
    drug A). point: (x_A, x_B) of the fitted exposures, marked on both panels.
    """
    matplotlib, plt = _pyplot()
    with matplotlib.rc_context(style()):
        fig, (ax_i, ax_s) = plt.subplots(1, 2, figsize=(7.0, 3.2), layout="constrained")
        cs_b = ax_i.contour(x, x, bliss, levels=levels, colors="0.45", linestyles="--", linewidths=1)
        cs_f = ax_i.contour(x, x, surface, levels=levels, colors="#D55E00", linewidths=1.3)
        ax_i.clabel(cs_f, fmt="%.2f", fontsize=6)
        ax_i.clabel(cs_b, fmt="%.2f", fontsize=6)
        lo, hi = psi_interval
        ax_i.plot([], [], color="#D55E00", label=f"fitted, psi = {psi:.2f} [{lo:.2f}, {hi:.2f}]")
        ax_i.plot([], [], color="0.45", ls="--", label="Bliss independence (psi = 0)")
        excess = ax_s.pcolormesh(x, x, surface - bliss, cmap="RdBu_r", vmin=-1, vmax=1, shading="auto")
        fig.colorbar(excess, ax=ax_s, label="combined effect minus Bliss (fraction)")
        for ax in (ax_i, ax_s):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(f"{names[1]} (concentration / EC50, 1)")
            ax.set_ylabel(f"{names[0]} (concentration / EC50, 1)")
            if point is not None:
                ax.plot([point[1]], [point[0]], "k*", ms=8, label="fitted exposure")
        ax_i.legend(frameon=False, fontsize=6.5, loc="upper right")
        ax_i.set_title("(a) isoboles of the combined effect", loc="left")
        ax_s.set_title("(b) departure from Bliss", loc="left")
    return fig


def plot_forest(rows, title: str = "estimates with 95% intervals"):
    """Forest plot; one panel per unit. rows: dicts with name, unit, value, lower, upper, and optional
    profile_lower/profile_upper (a second interval) and truth (a known value, e.g. of synthetic data)."""
    matplotlib, plt = _pyplot()
    if not rows:
        raise ValueError("plot_forest: no estimates")
    units = list(dict.fromkeys(r["unit"] for r in rows))
    groups = [[r for r in rows if r["unit"] == u] for u in units]
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(len(units), 1, figsize=(4.6, 0.9 + 0.32 * len(rows) + 0.5 * len(units)), layout="constrained",
                                 squeeze=False, height_ratios=[len(g) + 0.6 for g in groups])
        for ax, unit, group in zip(axes[:, 0], units, groups):
            y = np.arange(len(group))[::-1]
            for yi, r in zip(y, group):
                ax.plot([r["lower"], r["upper"]], [yi, yi], color="#0072B2", lw=1.6, label="Wald 95%" if yi == y[0] else None)
                if math.isfinite(r.get("profile_lower", math.nan)):
                    ax.plot([r["profile_lower"], r["profile_upper"]], [yi - 0.22] * 2, color="#D55E00", lw=1.6,
                            label="profile 95%" if yi == y[0] else None)
                ax.plot(r["value"], yi, "o", color="0.1", ms=4)
                if math.isfinite(r.get("truth", math.nan)):
                    ax.plot(r["truth"], yi, "x", color="#009E73", ms=6, mew=1.5, label="true value" if yi == y[0] else None)
            ax.set_yticks(y, [r["name"] for r in group])
            ax.set_ylim(-0.8, len(group) - 0.4)
            ax.set_xlabel(f"estimate ({'dimensionless' if unit == '1' else unit})")
            ax.legend(frameon=False, fontsize=6.5, loc="best")
        axes[0, 0].set_title(title, loc="left")
    return fig


def plot_profiles(traces, level: float = 0.95):
    """Profile likelihoods: Delta(-2 log L) against each parameter, with the chi-square cut-off and the limits.

    traces: name -> dict(theta, delta, estimate, interval, unit).
    """
    from scipy.stats import chi2

    matplotlib, plt = _pyplot()
    if not traces:
        raise ValueError("plot_profiles: no profiles")
    cut = float(chi2.ppf(level, 1))
    with matplotlib.rc_context(style()):
        n = len(traces)
        fig, axes = plt.subplots(1, n, figsize=(2.4 * n + 0.4, 2.6), layout="constrained", squeeze=False)
        for ax, (name, tr) in zip(axes[0], traces.items()):
            th = np.append(np.asarray(tr["theta"], float), tr["estimate"])
            de = np.append(np.asarray(tr["delta"], float), 0.0)
            order = np.argsort(th)
            ax.plot(th[order], de[order], "o-", color="#0072B2", ms=3)
            ax.axhline(cut, color="0.3", ls="--", lw=1)
            for lim in tr["interval"]:
                if math.isfinite(lim):
                    ax.axvline(lim, color="#D55E00", lw=0.9, ls=":")
            unit = tr.get("unit", "1")
            ax.set_xlabel(f"{name} ({unit})")
            ax.set_title(f"{name}: [{tr['interval'][0]:.3g}, {tr['interval'][1]:.3g}]", loc="left")
        axes[0, 0].set_ylabel(r"$\Delta(-2\log L)$ (1)")
    return fig


def plot_scenarios(rows, reference: str):
    """Scenario comparison: difference from the reference arm in mean week-12 decline and in % EVR, 95% CI.

    rows: :func:`hcvdyn.trial.compare_arms` output (keys scenario, diff_mean_drop(_lo/_hi), diff_pct_evr(_lo/_hi)).
    """
    matplotlib, plt = _pyplot()
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
