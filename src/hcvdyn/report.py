"""Result tables of a whole-trial fit, the figures drawn from them, and the Markdown report.

Everything the report states is first written to a result file (CSV or JSON) and then formatted from that
same value; each table of ``report.md`` names its file. ``hcvdyn figures FOLDER`` redraws the figures of a
fit or report folder from its files alone (:func:`figures_from_folder`).

Folder written by :func:`make_report` (all or nothing, see :func:`hcvdyn.io.write_results`)::

    report.md            the report
    result.json          fit: version, inputs with sha256, model, options, estimates, covariance, profiles
    parameters.csv       every estimate with Wald and (shared / per-arm) profile intervals
    curves.csv           fitted curve and 95% prediction band per patient (delta method)
    outcomes.csv         per patient: observed and predicted week-4/12 declines, RVR / EVR / cEVR
    arms.csv             per arm: data, observed and predicted outcomes
    vpc.csv              observed and simulated percentiles (visual predictive check)
    synergy.json         psi, its profile interval, LRT, Loewe index, verdict (models with an interaction pair)
    comparison.csv       what-if scenarios against their reference arm ([report] scenarios)
    virtual_arms.csv     the scenarios' per-arm table
    figures/NAME.pdf|svg|png
"""

from __future__ import annotations

import csv
import datetime
import io as _io
import json
import math
import sys
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["fit_tables", "fit_curves_rows", "outcome_tables", "make_report", "figures_from_folder", "FIGURES"]

FIGURES = ("patient_fits", "arm_trajectories", "waterfall", "vpc", "pk_efficacy", "synergy", "forest", "profiles",
           "scenarios", "virtual_trajectories")


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    return f"{v:.8g}"


def rows_csv(rows: list[dict]) -> str:
    """CSV of dicts with the same keys (numbers to 8 significant digits)."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = list(rows[0]) if rows else []
    w.writerow(header)
    w.writerows([[_fmt(r[k]) for k in header] for r in rows])
    return buf.getvalue()


TEXT_COLUMNS = {"id", "arm", "name", "parameter", "kind", "patient_or_arm", "unit", "group", "scenario", "reference"}


def read_csv(path) -> list[dict]:
    """Rows of a results CSV; numeric cells as floats (text columns kept), empty cells as NaN."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            conv = {}
            for k, v in row.items():
                if k in TEXT_COLUMNS:
                    conv[k] = v
                    continue
                try:
                    conv[k] = float(v) if v != "" else math.nan
                except ValueError:
                    conv[k] = v
            out.append(conv)
    return out


# ---- tables ----------------------------------------------------------------------------------------

def fit_tables(spec, data, fit) -> tuple[list[dict], dict]:
    """(parameter rows, result.json content) of a whole-trial fit of ``spec`` (a :class:`hcvdyn.io.FitSpec`)."""
    from . import __version__
    from .io import file_sha256

    rows = []
    for name, value in fit.values.items():
        base, _, owner = name.partition("__")
        kind = "individual" if base in spec.individual else ("per_arm" if base in spec.per_arm else "shared")
        lo, hi = fit.interval(name)
        plo, phi_ = fit.profile.get(name, (math.nan, math.nan))
        rows.append({"name": name, "parameter": base, "kind": kind, "patient_or_arm": owner, "value": value,
                     "stderr": fit.stderr[name], "wald95_low": lo, "wald95_high": hi, "profile95_low": plo,
                     "profile95_high": phi_, "unit": spec.model.params[base].unit})
    meta = {
        "hcvdyn_version": __version__,
        "command": "fit",
        "spec": {"name": spec.name, "path": spec.path, "sha256": file_sha256(spec.path)},
        "data": {"path": spec.data_path, "sha256": file_sha256(spec.data_path), "patients": len(data), "samples": fit.n_obs,
                 "censored": int(sum(p.censored.sum() for p in data))},
        "model": spec.model.name,
        "free": {"individual": list(spec.individual), "shared": {k: list(v) for k, v in spec.shared.items()},
                 "per_arm": {k: list(v) for k, v in spec.per_arm.items()}},
        "options": {"residual_sd": spec.sigma, "atol": spec.atol, "max_nfev": spec.max_nfev, "likelihood": "M3 (Beal 2001)",
                    "bounds": {k: list(v) for k, v in spec.bounds.items()}, "weight_kg": spec.weight_kg,
                    "estimate_residual_sd": spec.estimate_sigma, "n_starts": spec.n_starts, "seed": spec.seed},
        "residual_sd": {"value": fit.sigma, "stderr": fit.sigma_se, "estimated": fit.sigma_estimated, "unit": "log10 IU/mL"},
        "start_objectives": [v if math.isfinite(v) else None for v in fit.start_objectives],
        "converged": fit.success,
        "message": fit.message,
        "objective_minus2loglik_plus_const": fit.objective,
        "aic": fit.aic,
        "bic": fit.bic,
        "nfev": fit.nfev,
        "estimates": {k: {"value": v, "stderr": fit.stderr[k], **({"profile95": list(fit.profile[k])} if k in fit.profile else {})}
                      for k, v in fit.values.items()},
        "profile_trace": {k: {"theta": list(t), "delta_m2loglik": list(d)} for k, (t, d) in fit.profile_trace.items()},
        "covariance": {"names": list(fit.values), "matrix": np.asarray(fit.covariance).tolist()},
    }
    if "truth" in spec.report:  # synthetic data: the true values, drawn in the forest plot of any fit folder
        meta["truth"] = _truth_values(spec.report["truth"], [r["name"] for r in rows if r["kind"] != "individual"])
    return rows, meta


def fit_curves_rows(data, bands) -> list[dict]:
    """curves.csv rows: fitted log10 load and prediction band per patient on the band's grid."""
    arm = {p.id: p.arm for p in data}
    return [{"id": pid, "arm": arm[pid], "day": t, "log10_vl_fitted": bands.fitted[i, j], "pred95_low": bands.lower[i, j],
             "pred95_high": bands.upper[i, j]}
            for i, pid in enumerate(bands.ids) for j, t in enumerate(bands.t_days)]


def _observed_at(p, day: float):
    """(decline from the first sample, censored) at ``day``, or (NaN, False) without a sample that day."""
    hit = np.flatnonzero(np.isclose(p.t_days, day))
    if hit.size == 0:
        return math.nan, False
    j = hit[0]
    return float(p.log10_vl[0] - p.log10_vl[j]), bool(p.censored[j])


def outcome_tables(data, bands, defs) -> tuple[list[dict], list[dict]]:
    """Per-patient and per-arm outcomes: observed (data at weeks 4 and 12) and predicted (fitted curves).

    Observed: decline from the day-0 sample; a censored sample counts at its limit (a lower bound of the
    decline) and is undetectable for RVR / cEVR. Predicted: :func:`hcvdyn.outcomes.patient_outcomes` of the
    fitted curve. Per arm, observed rates are over patients with a sample that week (dropouts left out).
    """
    from .outcomes import classify, patient_outcomes

    pred = patient_outcomes(bands.t_days, bands.fitted, defs)
    by_id = {p.id: p for p in data}
    rows = []
    for i, pid in enumerate(bands.ids):
        p = by_id[pid]
        d4, c4 = _observed_at(p, 7.0 * defs.rvr_week)
        d12, c12 = _observed_at(p, 7.0 * defs.evr_week)
        obs = classify(p.log10_vl[0], p.log10_vl[0] - d4, p.log10_vl[0] - d12, c4, c12, defs=defs)
        rows.append({
            "id": pid, "arm": p.arm, "group": p.group,
            "observed_drop_w4": d4, "observed_drop_w12": d12, "observed_censored_w12": c12,
            "observed_rvr": bool(obs["rvr"]) if math.isfinite(d4) else math.nan,
            "observed_evr": bool(obs["evr"]) if math.isfinite(d12) else math.nan,
            "observed_cevr": bool(obs["cevr"]) if math.isfinite(d12) else math.nan,
            "predicted_drop_w4": float(pred["drop_w4"][i]), "predicted_drop_w12": float(pred["drop_w12"][i]),
            "predicted_rvr": bool(pred["rvr"][i]), "predicted_evr": bool(pred["evr"][i]), "predicted_cevr": bool(pred["cevr"][i]),
        })
    arm_rows = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm]
        seen = [r for r in rs if math.isfinite(r["observed_drop_w12"])]
        pats = [by_id[r["id"]] for r in rs]
        pct = lambda xs: 100.0 * float(np.mean(xs)) if len(xs) else math.nan  # noqa: E731
        arm_rows.append({
            "arm": arm, "patients": len(rs), "samples": int(sum(p.n_obs for p in pats)),
            "censored": int(sum(p.censored.sum() for p in pats)), "with_week12": len(seen),
            "observed_mean_drop_w12": float(np.mean([r["observed_drop_w12"] for r in seen])) if seen else math.nan,
            "predicted_mean_drop_w12": float(np.mean([r["predicted_drop_w12"] for r in rs])),
            "observed_pct_evr": pct([r["observed_evr"] for r in seen]),
            "predicted_pct_evr": pct([r["predicted_evr"] for r in rs]),
            "observed_pct_cevr": pct([r["observed_cevr"] for r in seen]),
            "predicted_pct_cevr": pct([r["predicted_cevr"] for r in rs]),
        })
    return rows, arm_rows


def _truth_values(truth_path, names) -> dict[str, float]:
    """True values of shared parameters from a synthetic-data truth file ([arms.ARM] tables), where one value holds."""
    from .io import load_toml

    doc = load_toml(truth_path)
    out = {}
    for k in names:
        vals = {float(a[k]) for a in doc.get("arms", {}).values() if k in a and float(a[k]) != 0.0}
        if len(vals) == 1:
            out[k] = vals.pop()
        elif k in doc.get("fixed", {}):
            out[k] = float(doc["fixed"][k])
    return out


# ---- figures from result files ---------------------------------------------------------------------

def _mean_ci(x):
    from scipy.stats import t as student

    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return (float(x.mean()) if x.size else math.nan,) * 3
    m, h = float(x.mean()), float(student.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - h, m + h


def _fit_figures(folder: Path, meta: dict, data=None) -> dict:
    """Figures of a fit folder (curves.csv, parameters.csv and ``meta``, its result.json; data from its path)."""
    from . import plots
    from .data import read_viral_loads

    data = data if data is not None else read_viral_loads(meta["data"]["path"])
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
        stats = [_mean_ci([_observed_at(p, d)[0] for p in pats]) for d in days]
        observed[arm] = (np.array(days), *np.array(stats).T)
        t = curve[pats[0].id][0]
        drops = np.array([curve[p.id][1][0] - curve[p.id][1] for p in pats])
        mstats = np.array([_mean_ci(drops[:, j]) for j in range(t.size)])
        model[arm] = (t, *mstats.T)
    figs["arm_trajectories"] = plots.plot_arm_trajectories(observed, model, title="mean decline by arm: data (censored at the "
                                                           "limit) and fitted patients, 95% CI of the mean")
    from .outcomes import OutcomeDefinitions

    defs = OutcomeDefinitions()
    w12 = 7.0 * defs.evr_week
    drops = {a: np.array([_observed_at(p, w12)[0] for p in data if p.arm == a]) for a in data.arms}
    cens = {a: np.array([_observed_at(p, w12)[1] for p in data if p.arm == a]) for a in data.arms}
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


def _report_figures(folder: Path, data=None) -> dict:
    """Figures of a report folder: the fit's, plus VPC, synergy, scenarios and PK/efficacy where their files exist."""
    from . import plots

    meta = json.loads((folder / "result.json").read_text())
    figs = _fit_figures(folder, meta, data)
    if (folder / "vpc.csv").is_file():
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
        lloq = json.loads((folder / "vpc.json").read_text())["lloq_log10"]
        figs["vpc"] = plots.plot_vpc(obs, sim, lloq, tuple(int(q) for q in qs))
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
    pk = meta.get("report", {}).get("pk_trial")
    if pk:
        from .io import load_trial
        from .trial import simulate_arms

        figs["pk_efficacy"] = plots.plot_pk_efficacy(simulate_arms(load_trial(pk), points_per_day=24))
    return figs


def figures_from_folder(folder, formats=("pdf", "svg", "png")) -> list[Path]:
    """Redraw the figures of a fit or report results folder into FOLDER/figures (replacing that subfolder only)."""
    from .io import write_results

    folder = Path(folder)
    meta_path = folder / "result.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no result.json; give a folder written by hcvdyn fit or hcvdyn report")
    meta = json.loads(meta_path.read_text())
    if meta.get("command") != "fit":
        raise ValueError(f"{folder}: figures are drawn from fit and report folders; this one is from hcvdyn {meta.get('command')!r}")
    figs = _report_figures(folder)
    try:
        write_results(folder / "figures", {name: _figure_writer(fig, formats) for name, fig in figs.items()}, force=True)
    finally:
        _close(figs)
    return [folder / "figures" / f"{name}.{fmt}" for name in figs for fmt in formats]


def _figure_writer(fig, formats=("pdf", "svg", "png")):
    """A :func:`hcvdyn.io.write_results` writer saving ``fig`` under its destination stem in every format."""
    from .plots import save_figure

    return lambda dest: save_figure(fig, dest, formats)


def _close(figs) -> None:
    import matplotlib.pyplot as plt

    for fig in figs.values():
        plt.close(fig)


# ---- the report ------------------------------------------------------------------------------------

def _md_table(rows: list[dict], columns: Mapping[str, tuple[str, str]]) -> str:
    """Markdown table; columns: key -> (header, format spec)."""
    head = "| " + " | ".join(h for h, _ in columns.values()) + " |"
    rule = "|" + "---|" * len(columns)
    lines = [head, rule]
    for r in rows:
        cells = []
        for k, (_, f) in columns.items():
            v = r[k]
            cells.append(v if isinstance(v, str) else ("–" if isinstance(v, float) and math.isnan(v) else format(v, f)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stage(msg: str, progress: bool) -> None:
    if progress:
        print(f"hcvdyn report: {msg}", file=sys.stderr, flush=True)


def make_report(spec_path, out=None, force: bool = False, n_vpc: int = 200, n_virtual: int = 500, seed: int = 2026,
                progress: bool = True) -> Path:
    """Fit ``spec_path`` (fits/NAME.toml), estimate synergy, predict outcomes, run its scenarios; write the report folder."""
    from .diagnostics import prediction_bands, vpc
    from .fit import fit_trial
    from .io import file_sha256, load_fit_spec, write_results
    from .outcomes import OutcomeDefinitions

    spec = load_fit_spec(spec_path)
    out = Path(out) if out else Path("results") / f"report_{spec.name}"
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; use --force to replace it")
    data = spec.read_data()
    regs, kw = spec.regimens_for(data), spec.fit_options()
    options = kw["options"]
    shared_names = [*spec.shared, *[f"{k}__{a}" for k, arms in spec.per_arm.items() for a in arms]]
    _stage(f"fitting {len(data)} patients with {spec.model.name} and profiling {', '.join(shared_names)}", progress)
    fit = fit_trial(spec.model, data, regs, spec.individual, spec.shared, spec.per_arm, spec.params, profile=shared_names, **kw)
    param_rows, meta = fit_tables(spec, data, fit)
    meta["report"] = {k: v for k, v in spec.report.items()}
    meta["report_options"] = {"n_vpc": n_vpc, "n_virtual": n_virtual, "seed": seed}

    _stage("prediction bands and outcomes", progress)
    grid = np.linspace(0.0, max(p.t_days[-1] for p in data), int(2 * max(p.t_days[-1] for p in data)) + 1)
    bands = prediction_bands(spec.model, fit, data, regs, grid, spec.weight_kg, options)
    lloq = float(np.median([p.lloq_log10[0] for p in data]))
    defs = OutcomeDefinitions(lloq_iu_ml=10**lloq)
    pat_rows, arm_rows = outcome_tables(data, bands, defs)

    _stage(f"visual predictive check ({n_vpc} replicate trials)", progress)
    v = vpc(spec.model, fit, data, regs, n_vpc, seed, weight_kg=spec.weight_kg, options=options)
    vpc_meta = {"n_replicates": v.n_replicates, "seed": v.seed, "percentiles": list(v.percentiles), "lloq_log10": v.lloq_log10,
                "coverage": v.coverage, "redrawn": v.redrawn}

    files = {"parameters.csv": rows_csv(param_rows), "curves.csv": rows_csv(fit_curves_rows(data, bands)),
             "outcomes.csv": rows_csv(pat_rows), "arms.csv": rows_csv(arm_rows), "vpc.csv": rows_csv(v.rows()), "vpc.json": vpc_meta}
    syn = None
    if spec.model.interaction is not None:
        from .synergy import _pair_terms, estimate_synergy, interaction_surface

        _stage("synergy: refit with psi free, profile and likelihood-ratio test", progress)
        try:
            syn = estimate_synergy(spec.model, data, regs, spec.individual, spec.shared, spec.per_arm, spec.params, null=fit, **kw)
        except ValueError as e:  # no arm with both drugs: psi not identifiable
            meta["synergy_skipped"] = str(e)
        if syn is not None:
            x, surf, bliss = interaction_surface(spec.model, syn.full.values, syn.psi)
            try:
                terms = _pair_terms(spec.model, syn.full.values, syn.arm, spec.model.defaults(**spec.params), None)
                point = [c / ec for c, ec, *_ in terms]
            except ValueError:
                point = None
            files["synergy.json"] = {**syn.to_dict(), "pair": list(spec.model.interaction), "notes": dict(syn.notes),
                                     "surface": {"x": x.tolist(), "effect": surf.tolist(), "bliss": bliss.tolist(),
                                                 "names": list(spec.model.interaction), "point": point}}
    comp_rows = None
    if "scenarios" in spec.report:
        from .trial import load_scenarios, run_scenarios

        sc = load_scenarios(spec.report["scenarios"])
        _stage(f"what-if scenarios {sc.name}: {n_virtual} virtual patients per arm", progress)
        vt, comp_rows = run_scenarios(sc, n_virtual, seed, progress=progress)
        comp_rows = [{**r, "reference": sc.reference_arm} for r in comp_rows]
        files["comparison.csv"] = rows_csv(comp_rows)
        files["virtual_arms.csv"] = rows_csv(vt.summary_rows())
        traj = [{"arm": a, "day": float(d), "median_drop": r.quantiles[0, d], "p05_drop": r.quantiles[1, d], "p95_drop": r.quantiles[2, d]}
                for a, r in vt.arms.items() for d in range(r.quantiles.shape[1])]
        files["virtual_trajectories.csv"] = rows_csv(traj)
        meta["scenarios"] = {"path": sc.path, "sha256": file_sha256(sc.path), "n_per_arm": vt.n_per_arm, "seed": vt.seed}
    files["result.json"] = meta

    # the figures are drawn from the files, exactly as `hcvdyn figures` does
    import tempfile

    _stage("figures", progress)
    with tempfile.TemporaryDirectory() as stage_dir:
        figs = _report_figures(write_results(Path(stage_dir) / "files", files), data)
    for name, fig in figs.items():
        files[f"figures/{name}"] = _figure_writer(fig)
    files["report.md"] = _markdown(spec, data, fit, meta, param_rows, arm_rows, vpc_meta, files.get("synergy.json"), comp_rows, figs)
    try:
        write_results(out, files, force=force)
    finally:
        _close(figs)
    return out


def _markdown(spec, data, fit, meta, param_rows, arm_rows, vpc_meta, syn, comp_rows, figs) -> str:
    from . import __version__

    shared = [r for r in param_rows if r["kind"] != "individual"]
    truth = meta.get("truth", {})
    for r in shared:
        r["truth_text"] = f"{truth[r['name']]:.4g}" if r["name"] in truth else "–"
    individual = [r for r in param_rows if r["kind"] == "individual"]
    by_group: list[dict] = []
    group_of = {p.id: p.group or "all" for p in data}
    for base in spec.individual:
        for g in dict.fromkeys(group_of.values()):
            vals = np.array([r["value"] for r in individual if r["parameter"] == base and group_of[r["patient_or_arm"]] == g])
            by_group.append({"parameter": base, "group": g, "n": len(vals), "median": float(np.median(vals)),
                             "q1": float(np.percentile(vals, 25)), "q3": float(np.percentile(vals, 75)),
                             "unit": spec.model.params[base].unit})
    fig = lambda name: f"![{name}](figures/{name}.png)" if name in figs else f"(figure {name}: not drawn)"  # noqa: E731
    lines = [
        f"# Report: {spec.name}",
        "",
        f"hcvdyn {__version__}, {datetime.date.today().isoformat()}. Fit specification `{spec.path}` "
        f"(sha256 `{meta['spec']['sha256'][:16]}…`), data `{spec.data_path}` (sha256 `{meta['data']['sha256'][:16]}…`), "
        f"model `{spec.model.name}`. Every number below is read from the file named with its table.",
        "",
        "## Data",
        "",
        "From `arms.csv`.",
        "",
        _md_table(arm_rows, {"arm": ("arm", ""), "patients": ("patients", "d"), "samples": ("samples", "d"),
                             "censored": ("below LLOQ", "d"), "with_week12": ("with a week-12 sample", "d")}),
        "",
        "## Fit",
        "",
        f"From `result.json`: M3 likelihood (Beal 2001), residual SD {fit.sigma:.4g} log10 IU/mL "
        f"({f'estimated, SE {fit.sigma_se:.2g}' if fit.sigma_estimated else 'fixed'}), "
        f"converged: **{'yes' if fit.success else 'NO'}** ({fit.message}); −2 log L + const = {fit.objective:.2f}, "
        f"AIC {fit.aic:.2f}, BIC {fit.bic:.2f}, {fit.nfev} evaluations.",
        "",
        "Shared and per-arm estimates, from `parameters.csv` (true values from the synthetic data's truth file where given):",
        "",
        _md_table(shared, {"name": ("parameter", ""), "value": ("estimate", ".4g"), "wald95_low": ("Wald 95% low", ".4g"),
                           "wald95_high": ("Wald 95% high", ".4g"), "profile95_low": ("profile 95% low", ".4g"),
                           "profile95_high": ("profile 95% high", ".4g"), "unit": ("unit", ""), "truth_text": ("true", "")}),
        "",
        "Individual estimates by group, from `parameters.csv` (median and interquartile range):",
        "",
        _md_table(by_group, {"parameter": ("parameter", ""), "group": ("group", ""), "n": ("n", "d"), "median": ("median", ".4g"),
                             "q1": ("25%", ".4g"), "q3": ("75%", ".4g"), "unit": ("unit", "")}),
        "",
        fig("forest"), "", fig("profiles"), "", fig("patient_fits"), "",
        f"Visual predictive check (`vpc.csv`, `vpc.json`): {vpc_meta['n_replicates']} replicate trials, seed {vpc_meta['seed']}; "
        f"{100 * vpc_meta['coverage']:.1f}% of the observed {'/'.join(f'{q:g}' for q in vpc_meta['percentiles'])}th percentiles "
        f"lie inside the simulated 95% ranges.",
        "",
        fig("vpc"),
        "",
        "## Twelve-week outcomes",
        "",
        "From `arms.csv` (per patient: `outcomes.csv`). Observed: the week-12 sample (censored at its limit; dropouts "
        "without one left out). Predicted: the fitted curve of every patient.",
        "",
        _md_table(arm_rows, {"arm": ("arm", ""), "observed_mean_drop_w12": ("observed mean decline (log10)", ".3f"),
                             "predicted_mean_drop_w12": ("predicted mean decline (log10)", ".3f"),
                             "observed_pct_evr": ("observed EVR %", ".1f"), "predicted_pct_evr": ("predicted EVR %", ".1f"),
                             "observed_pct_cevr": ("observed cEVR %", ".1f"), "predicted_pct_cevr": ("predicted cEVR %", ".1f")}),
        "",
        fig("arm_trajectories"), "", fig("waterfall"), "",
        "## Synergy",
        "",
    ]
    if syn:
        lo, hi = syn["psi_interval"]
        clo, chi = syn["ci_interval"]
        lines += [
            f"From `synergy.json` ({syn['pair'][0]} × {syn['pair'][1]}, interaction psi on a Bliss null, docs/trials.md): "
            f"psi = {syn['psi']:.3f}, profile {100 * syn['level']:.0f}% interval [{lo:.3f}, {hi:.3f}]; likelihood-ratio "
            f"statistic {syn['lrt']:.3f} (p = {syn['p_value']:.3g}); Loewe combination index in the {syn['arm']} arm "
            f"{syn['combination_index']:.3f} [{clo:.3f}, {chi:.3f}], against {syn.get('combination_index_bliss', float('nan')):.3f} "
            f"for the same exposures under pure Bliss independence (psi = 0). Verdict: **{syn['verdict']}**.",
            "",
            "Read the combination index against its Bliss value, not against 1: for drugs with Emax-type curves, "
            "Bliss independence itself gives an index below 1, so 'CI < 1' alone is not evidence of synergy. The "
            "test of synergy is psi (its interval and the likelihood-ratio test); the index only restates psi's "
            "effect on the Loewe scale.",
            "", fig("synergy"), "",
        ]
    else:
        lines += [f"Not estimated: {meta.get('synergy_skipped', 'the model has no interaction pair')}.", ""]
    if comp_rows:
        lines += [
            "## What-if scenarios",
            "",
            f"From `comparison.csv` (per-arm table: `virtual_arms.csv`): `{meta['scenarios']['path']}` on the calibrated "
            f"virtual population, {meta['scenarios']['n_per_arm']} common virtual patients per arm, seed {meta['scenarios']['seed']}, "
            f"against the reference arm `{comp_rows[0]['reference']}`; paired-bootstrap 95% intervals.",
            "",
            _md_table(comp_rows, {"scenario": ("scenario", ""), "diff_mean_drop": ("Δ mean decline (log10)", "+.3f"),
                                  "diff_mean_drop_lo": ("low", "+.3f"), "diff_mean_drop_hi": ("high", "+.3f"),
                                  "diff_pct_evr": ("Δ EVR (points)", "+.1f"), "diff_pct_evr_lo": ("low", "+.1f"),
                                  "diff_pct_evr_hi": ("high", "+.1f")}),
            "", fig("scenarios"), "", fig("virtual_trajectories"), "",
        ]
    if "pk_efficacy" in figs:
        lines += ["## Pharmacokinetics and efficacy", "", f"Regimens of `{meta['report']['pk_trial']}`, typical patient.", "",
                  fig("pk_efficacy"), ""]
    return "\n".join(lines) + "\n"
