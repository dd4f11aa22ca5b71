"""Figures of a fit: patient fits with prediction bands, visual predictive check, forest plot, profile likelihoods.

Each function takes plain results and returns a matplotlib Figure, in the house style of :mod:`hcvdyn.results.plotstyle`.
"""

from __future__ import annotations

import math

import numpy as np

from hcvdyn.results.plotstyle import VL_LABEL, arm_colors, draw_lloq, mark_samples, pyplot, style

__all__ = ["plot_patient_fits", "plot_vpc", "plot_forest", "plot_profiles", "plot_gof"]


def plot_patient_fits(patients, curves, ncols: int = 6, max_patients: int | None = None, colors=None):
    """Grid of patients: samples, fitted curve and 95% prediction band (log10 IU/mL vs days).

    patients: :class:`hcvdyn.estimate.data.PatientData` sequence. curves: id -> (t_days, fitted, lower, upper) with
    the band's limits (NaN to omit). Censored samples are open triangles at their limit; the limit is dotted.
    """
    matplotlib, plt = pyplot()
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
            mark_samples(ax, p.t_days, p.log10_vl, p.censored, c, ms=2.2)
            draw_lloq(ax, float(np.min(p.lloq_log10)), t[-1])
            ax.set_title(f"{p.id} ({p.arm})", fontsize=6.5, pad=2)
        for ax in axes.flat[len(pats):]:
            ax.set_visible(False)
        low = min(float(np.min(p.lloq_log10)) for p in pats) - 1.5
        axes[0, 0].set_ylim(bottom=low)
        fig.supylabel(VL_LABEL, fontsize=8)
        fig.supxlabel("time (days)", fontsize=8)
        fig.suptitle("data (dots; open triangles: below LLOQ), fit (line) and 95% prediction band", fontsize=8)
    return fig


VPC_OUTER, VPC_MEDIAN = "#56B4E9", "#D55E00"


def plot_vpc(observed, simulated, lloq_log10: float, percentiles=(10, 50, 90)):
    """Visual predictive check, one panel per arm, with a legend below the panels.

    observed: arm -> (t_days, (k, n_t) observed percentiles). simulated: arm -> (t_days, (k, 3, n_t)) median,
    lower and upper limits over replicate trials of each simulated percentile. Values in log10 IU/mL,
    censored samples counted at the limit. Observed: black points (the median joined by a solid line, the
    outer percentiles by dotted ones); simulated: the median over replicates of each percentile (dashed) and
    its 95% range (band; orange for the median, blue for the outer percentiles).
    """
    matplotlib, plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    arms = list(observed)
    outer = "/".join(f"{q:g}" for q in percentiles if q != 50)
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(1, len(arms), figsize=(2.6 * len(arms) + 0.4, 3.4), sharey=True, layout="constrained",
                                 squeeze=False)
        for ax, arm in zip(axes[0], arms):
            t_s, sim = simulated[arm]
            t_o, obs = observed[arm]
            for k, q in enumerate(percentiles):
                c = VPC_MEDIAN if q == 50 else VPC_OUTER
                ax.fill_between(t_s, sim[k, 1], sim[k, 2], color=c, alpha=0.25, lw=0)
                ax.plot(t_s, sim[k, 0], color=c, lw=0.8, ls="--")
                ax.plot(t_o, obs[k], "o-" if q == 50 else "o:", color="0.1", ms=2.5, lw=1.0)
            draw_lloq(ax, lloq_log10, t_s[-1])
            ax.set_title(arm, loc="left")
            ax.set_xlabel("time (days)")
        axes[0, 0].set_ylabel(VL_LABEL)
        handles = [Line2D([], [], color="0.1", marker="o", ms=2.5, lw=1.0, label="observed median"),
                   Patch(color=VPC_MEDIAN, alpha=0.25, label="simulated median: 95% range"),
                   Line2D([], [], color="0.1", marker="o", ms=2.5, lw=1.0, ls=":", label=f"observed {outer}th percentiles"),
                   Patch(color=VPC_OUTER, alpha=0.25, label=f"simulated {outer}th: 95% ranges"),
                   Line2D([], [], color="0.4", lw=0.8, ls="--", label="simulated: median over replicate trials")]
        fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize=7)
        fig.suptitle(f"visual predictive check: observed {'/'.join(map(str, percentiles))}th percentiles against "
                     "replicate trials simulated from the fit", fontsize=8)
    return fig


def plot_forest(rows, title: str = "estimates with 95% intervals", interval: str = "Wald 95%"):
    """Forest plot; one panel per unit. rows: dicts with name, unit, value, lower, upper, and optional
    profile_lower/profile_upper (a second interval) and truth (a known value, e.g. of synthetic data); ``interval``
    names the lower-upper interval in the legend."""
    matplotlib, plt = pyplot()
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
                ax.plot([r["lower"], r["upper"]], [yi, yi], color="#0072B2", lw=1.6, label=interval if yi == y[0] else None)
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

    traces: name -> dict(theta, delta, estimate, interval, unit): the profile evaluated at ``theta`` (for a
    smooth curve, a grid over the interval, :func:`hcvdyn.estimate.profile.profile_grid`); drawn as a line through those
    points with the estimate (Delta = 0) added.
    """
    from scipy.stats import chi2

    matplotlib, plt = pyplot()
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
            ax.plot(th[order], de[order], "-", color="#0072B2", marker="o", ms=1.8)
            ax.axhline(cut, color="0.3", ls="--", lw=1)
            for lim in tr["interval"]:
                if math.isfinite(lim):
                    ax.axvline(lim, color="#D55E00", lw=0.9, ls=":")
            unit = tr.get("unit", "1")
            ax.set_xlabel(f"{name} ({unit})")
            ax.set_title(f"{name}: [{tr['interval'][0]:.3g}, {tr['interval'][1]:.3g}]", loc="left")
        axes[0, 0].set_ylabel(r"$\Delta(-2\log L)$ (1)")
    return fig


def plot_gof(rows):
    """Goodness of fit of a population fit, four panels: observed against PRED and against IPRED (identity line;
    censored samples as open triangles at their limit), CWRES against time (0 and +/-2), and the NPDE's normal
    quantile plot. rows: samples.csv rows (log10_vl, censored, pred, ipred, cwres, npde, day, arm)."""
    matplotlib, plt = pyplot()
    from scipy.stats import norm

    if not rows:
        raise ValueError("plot_gof: no samples")
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    colors = arm_colors(arms)
    get = lambda k, sel: np.array([float(r[k]) for r in sel])  # noqa: E731
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(2, 2, figsize=(6.4, 5.6), layout="constrained")
        for ax, key, label in ((axes[0, 0], "pred", "PRED (population)"), (axes[0, 1], "ipred", "IPRED (individual)")):
            for a in arms:
                sel = [r for r in rows if r["arm"] == a]
                cens = np.array([bool(r["censored"]) for r in sel])
                x, y = get(key, sel), get("log10_vl", sel)
                ax.plot(x[~cens], y[~cens], "o", ms=2.2, color=colors[a], alpha=0.7, label=a)
                ax.plot(x[cens], y[cens], "v", ms=3, mfc="none", color=colors[a], alpha=0.9)
            lim = [min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])]
            ax.plot(lim, lim, color="0.3", lw=0.8)
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_xlabel(f"{label}, log10 IU/mL")
            ax.set_ylabel("observed, log10 IU/mL")
        axes[0, 0].legend(frameon=False, fontsize=6.5, loc="upper left")
        ax = axes[1, 0]
        for a in arms:
            sel = [r for r in rows if r["arm"] == a]
            ax.plot(get("day", sel), get("cwres", sel), "o", ms=2.2, color=colors[a], alpha=0.7)
        for level, ls in ((0, "-"), (2, ":"), (-2, ":")):
            ax.axhline(level, color="0.3", lw=0.8, ls=ls)
        ax.set_xlabel("time (days)")
        ax.set_ylabel("CWRES")
        ax = axes[1, 1]
        npde = np.sort(get("npde", rows))
        npde = npde[np.isfinite(npde)]
        theo = norm.ppf((np.arange(1, npde.size + 1) - 0.5) / npde.size)
        ax.plot(theo, npde, "o", ms=2.2, color="0.2")
        ax.plot(theo, theo, color="#D55E00", lw=0.8)
        ax.set_xlabel("standard normal quantile")
        ax.set_ylabel("NPDE")
        ax.set_title(f"NPDE: mean {npde.mean():.2f}, SD {npde.std(ddof=1):.2f} (n = {npde.size})", loc="left", fontsize=7)
        fig.suptitle("goodness of fit (censored samples: open triangles at their limit; no CWRES or NPDE)", fontsize=8)
    return fig
