"""Figures drawn from a results folder's files (``hcvdyn figures`` and the report).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hcvdyn.results.tables import mean_ci, observed_at
from hcvdyn.results.writers import read_csv

__all__ = ["fit_figures", "population_figures", "report_figures", "figures_from_folder", "figure_writer", "close_figures"]


FIGURES = ("patient_fits", "arm_trajectories", "waterfall", "vpc", "pk_efficacy", "synergy", "forest", "profiles",
           "scenarios", "virtual_trajectories")  # the report's; a population fit folder draws population_figures



def fit_figures(folder: Path, meta: dict) -> dict:
    """Figures of a fit folder, from its files alone: observations.csv, curves.csv, parameters.csv and ``meta`` (its
    result.json)."""
    from hcvdyn.estimate.data import Dataset
    from hcvdyn.results import plots

    data = Dataset.from_rows(read_csv(folder / "observations.csv"))
    curves = read_csv(folder / "curves.csv")
    by_id: dict[str, list] = {}
    for r in curves:
        by_id.setdefault(r["id"], []).append(r)
    curve = {pid: tuple(np.array([r[k] for r in rs]) for k in ("day", "log10_vl_fitted", "pred95_low", "pred95_high"))
             for pid, rs in by_id.items()}
    figs = {"patient_fits": plots.plot_patient_fits(data, curve)}
    days = sorted({float(d) for p in data for d in p.t_days})
    observed, model = {}, {}
    for arm in data.arms:
        pats = [p for p in data if p.arm == arm]
        stats = [mean_ci([observed_at(p, d)[0] for p in pats]) for d in days]
        observed[arm] = (np.array(days), *np.array(stats).T)
        t = curve[pats[0].id][0]
        drops = np.array([curve[p.id][1][0] - curve[p.id][1] for p in pats])
        mstats = np.array([mean_ci(drops[:, j]) for j in range(t.size)])
        model[arm] = (t, *mstats.T)
    figs["arm_trajectories"] = plots.plot_arm_trajectories(observed, model, title="mean decline by arm: data (censored at the "
                                                           "limit) and fitted patients, 95% CI of the mean")
    from hcvdyn.analysis.outcomes import OutcomeDefinitions

    defs = OutcomeDefinitions()
    w12 = 7.0 * defs.evr_week
    drops = {a: np.array([observed_at(p, w12)[0] for p in data if p.arm == a]) for a in data.arms}
    cens = {a: np.array([observed_at(p, w12)[1] for p in data if p.arm == a]) for a in data.arms}
    figs["waterfall"] = plots.plot_waterfall(drops, defs.evr_drop_log10, cens, week=int(defs.evr_week))
    params = read_csv(folder / "parameters.csv")
    truth = meta.get("truth", {})
    rows = [{"name": r["name"], "unit": r["unit"], "value": r["value"], "lower": r["wald95_low"], "upper": r["wald95_high"],
             "profile_lower": r["profile95_low"], "profile_upper": r["profile95_high"], "truth": truth.get(r["name"], math.nan)}
            for r in params if r["kind"] != "individual"]
    if rows:
        figs["forest"] = plots.plot_forest(rows, "shared and per-arm estimates: Wald and profile 95% intervals")
    traces = meta.get("profile_trace", {})
    if traces:
        unit = {r["name"]: r["unit"] for r in params}
        figs["profiles"] = plots.plot_profiles({
            k: {"theta": v["theta"], "delta": v["delta_m2loglik"], "estimate": meta["estimates"][k]["value"],
                "interval": meta["estimates"][k]["profile95"], "unit": unit[k]} for k, v in traces.items()})
    return figs



def _vpc_figure(folder: Path, lloq: float):
    from hcvdyn.results import plots

    rows = read_csv(folder / "vpc.csv")
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    qs = sorted({r["percentile"] for r in rows})
    obs, sim = {}, {}
    for a in arms:
        t = np.array(sorted({r["day"] for r in rows if r["arm"] == a}))
        o, s = np.full((len(qs), t.size), np.nan), np.full((len(qs), 3, t.size), np.nan)
        for r in rows:
            if r["arm"] == a:
                k, j = qs.index(r["percentile"]), int(np.searchsorted(t, r["day"]))
                o[k, j] = r["observed"]
                s[k, :, j] = (r["simulated_median"], r["simulated_lo"], r["simulated_hi"])
        obs[a], sim[a] = (t, o), (t, s)
    return plots.plot_vpc(obs, sim, lloq, tuple(int(q) for q in qs))


def population_figures(folder: Path, meta: dict) -> dict:
    """Figures of a population fit folder from its files: individual fits (IPRED and PRED curves), goodness of fit,
    the VPC simulated from the fitted population, and the forest plot of the fixed effects, Omega and sigma."""
    from hcvdyn.estimate.data import Dataset
    from hcvdyn.results import plots

    data = Dataset.from_rows(read_csv(folder / "observations.csv"))
    by_id: dict[str, list] = {}
    for r in read_csv(folder / "curves.csv"):
        by_id.setdefault(r["id"], []).append(r)
    nan = lambda rs: np.full(len(rs), np.nan)  # noqa: E731
    curve = {pid: (np.array([r["day"] for r in rs]), np.array([r["ipred"] for r in rs]), nan(rs), nan(rs)) for pid, rs in by_id.items()}
    figs = {"patient_fits": plots.plot_patient_fits(data, curve), "gof": plots.plot_gof(read_csv(folder / "samples.csv")),
            "vpc": _vpc_figure(folder, meta["vpc"]["lloq_log10"])}
    truth = meta.get("truth", {})
    rows = [{"name": r["name"], "unit": r["unit"], "value": r["estimate"], "lower": r["lower"], "upper": r["upper"],
             "truth": truth.get(r["name"], math.nan)} for r in read_csv(folder / "parameters.csv") if math.isfinite(r["lower"])]
    figs["forest"] = plots.plot_forest(rows, f"population fit ({meta['options']['method']})", "95% (Wald; SDs: Satterthwaite)")
    return figs


def report_figures(folder: Path) -> dict:
    """Figures of a report folder: the fit's, plus VPC, synergy, scenarios and PK/efficacy where their files exist."""
    from hcvdyn.results import plots

    meta = json.loads((folder / "result.json").read_text())
    if meta.get("population"):
        return population_figures(folder, meta)
    figs = fit_figures(folder, meta)
    if (folder / "vpc.csv").is_file():
        figs["vpc"] = _vpc_figure(folder, json.loads((folder / "vpc.json").read_text())["lloq_log10"])
    if (folder / "synergy.json").is_file():
        syn = json.loads((folder / "synergy.json").read_text())
        s = syn["surface"]
        figs["synergy"] = plots.plot_synergy(np.array(s["x"]), np.array(s["effect"]), np.array(s["bliss"]), syn["psi"],
                                             tuple(syn["psi_interval"]), tuple(s["names"]), tuple(s["point"]) if s["point"] else None)
    comp = read_csv(folder / "comparison.csv") if (folder / "comparison.csv").is_file() else []
    reference = comp[0]["reference"] if comp and "reference" in comp[0] else None
    if comp:
        figs["scenarios"] = plots.plot_scenarios(comp, reference or "reference")
    if (folder / "virtual_trajectories.csv").is_file():
        rows = read_csv(folder / "virtual_trajectories.csv")
        model = {}
        for a in dict.fromkeys(r["arm"] for r in rows):
            rs = [r for r in rows if r["arm"] == a]
            model[a] = tuple(np.array([r[k] for r in rs]) for k in ("day", "median_drop", "p05_drop", "p95_drop"))
        figs["virtual_trajectories"] = plots.plot_scenario_trajectories(
            model, reference if reference in model else next(iter(model)), unit="weeks",
            title="virtual trial: median decline (line) and 5-95% of virtual patients (band), each scenario against the reference arm")
    if (folder / "pk_efficacy.csv").is_file():
        figs["pk_efficacy"] = plots.plot_pk_efficacy(read_csv(folder / "pk_efficacy.csv"))
    return figs



def figures_from_folder(folder, formats=("pdf", "svg", "png")) -> list[Path]:
    """Redraw the figures of a fit or report results folder into FOLDER/figures (replacing that subfolder only)."""
    from hcvdyn.results.writers import write_results

    folder = Path(folder)
    meta_path = folder / "result.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no result.json; give a folder written by hcvdyn fit or hcvdyn report")
    meta = json.loads(meta_path.read_text())
    if meta.get("command") != "fit":
        raise ValueError(f"{folder}: figures are drawn from fit and report folders; this one is from hcvdyn {meta.get('command')!r}")
    figs = report_figures(folder)
    try:
        write_results(folder / "figures", {name: figure_writer(fig, formats) for name, fig in figs.items()}, force=True)
    finally:
        close_figures(figs)
    return [folder / "figures" / f"{name}.{fmt}" for name in figs for fmt in formats]



def figure_writer(fig, formats=("pdf", "svg", "png")):
    """A :func:`hcvdyn.results.writers.write_results` writer saving ``fig`` under its destination stem in every format."""
    from hcvdyn.results.plotstyle import save_figure

    return lambda dest: save_figure(fig, dest, formats)



def close_figures(figs) -> None:
    """Close matplotlib figures (a dict of them, or one) so that long runs do not keep them in memory."""
    import matplotlib.pyplot as plt

    for fig in figs.values():
        plt.close(fig)
