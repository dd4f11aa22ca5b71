"""The report of a whole-trial fit: fit, synergy, outcomes, VPC and scenarios written to result files, the
figures drawn from those files, and the Markdown report formatted from them.

Everything the report states is first written to a result file (CSV or JSON) and then formatted from that
same value; each table of ``report.md`` names its file. ``hcvdyn figures FOLDER`` redraws the figures of a
fit or report folder from its files alone (:func:`figures_from_folder`).

Folder written by :func:`make_report` (all or nothing, see :func:`hcvdyn.results.writers.write_results`)::

    report.md            the report
    result.json          fit: version, inputs with sha256, model, options, estimates, covariance, profiles
    parameters.csv       every estimate with Wald and (shared / per-arm) profile intervals
    curves.csv           fitted curve and 95% prediction band per patient (delta method)
    observations.csv     the fitted data, sample by sample (the figures are drawn from it)
    outcomes.csv         per patient: observed and predicted week-4/12 declines, RVR / EVR / cEVR
    arms.csv             per arm: data, observed and predicted outcomes
    vpc.csv              observed and simulated percentiles (visual predictive check)
    synergy.json         psi, its profile interval, LRT, Loewe index, verdict (models with an interaction pair)
    comparison.csv       what-if scenarios against their reference arm ([report] scenarios)
    virtual_arms.csv     the scenarios' per-arm table
    pk_efficacy.csv      concentrations and effects of the [report] pk_trial's fullest arm, typical patient, 14 days
    figures/NAME.pdf|svg|png
"""


from __future__ import annotations

import datetime
import math
import sys
from pathlib import Path
from typing import Mapping

import numpy as np

from hcvdyn.results.figures import close_figures, figure_writer, report_figures
from hcvdyn.results.tables import fit_curves_rows, fit_tables, outcome_tables
from hcvdyn.results.writers import rows_csv

__all__ = [
    "fit_tables",
    "fit_curves_rows",
    "outcome_tables",
    "make_report",
]


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
                profile_points: int = 15, progress: bool = True) -> Path:
    """Fit ``spec_path`` (fits/NAME.toml), estimate synergy, predict outcomes, run its scenarios; write the report folder.
    ``profile_points``: points of each drug effect's profile curve (figure), beside its interval's limits."""
    from hcvdyn.analysis.outcomes import OutcomeDefinitions
    from hcvdyn.estimate.diagnostics import prediction_bands, vpc
    from hcvdyn.estimate.fit import fit_trial
    from hcvdyn.estimate.fitspec import load_fit_spec
    from hcvdyn.results.provenance import input_record
    from hcvdyn.results.writers import write_results

    spec = load_fit_spec(spec_path)
    if spec.population is not None:
        raise ValueError(f"{spec.path}: a population fit specification; the report covers whole-trial fits "
                         f"(e.g. fits/tcl_recovery.toml). Fit it with: hcvdyn fit {spec.path}; figures: hcvdyn figures FOLDER")
    out = Path(out) if out else Path("results") / f"report_{spec.name}"
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; use --force to replace it")
    data = spec.read_data()
    regs, design = spec.regimens_for(data), spec.design
    options = design.options
    shared_names = [e.label for e in design.population_estimates(data.arms)]
    _stage(f"fitting {len(data)} patients with {spec.model.name} and profiling {', '.join(shared_names)}", progress)
    fit = fit_trial(spec.model, data, regs, design, profile=shared_names, profile_points=profile_points)
    param_rows, meta = fit_tables(spec, data, fit, out)
    meta["inputs"].update({k: input_record(v, out) for k, v in spec.report.items()})  # pk_trial, scenarios, truth
    meta["report_options"] = {"n_vpc": n_vpc, "n_virtual": n_virtual, "seed": seed, "profile_points": profile_points}

    _stage("prediction bands and outcomes", progress)
    grid = np.linspace(0.0, max(p.t_days[-1] for p in data), int(2 * max(p.t_days[-1] for p in data)) + 1)
    bands = prediction_bands(spec.model, fit, data, regs, grid, design.weight_kg, options)
    lloq = float(np.median([p.lloq_log10[0] for p in data]))
    defs = OutcomeDefinitions(lloq_iu_ml=10**lloq)
    pat_rows, arm_rows = outcome_tables(data, bands, defs)

    _stage(f"visual predictive check ({n_vpc} replicate trials)", progress)
    v = vpc(spec.model, fit, data, regs, n_vpc, seed, weight_kg=design.weight_kg, options=options)
    vpc_meta = {"n_replicates": v.n_replicates, "seed": v.seed, "percentiles": list(v.percentiles), "lloq_log10": v.lloq_log10,
                "coverage": v.coverage, "redrawn": v.redrawn}

    files = {"parameters.csv": rows_csv(param_rows), "curves.csv": rows_csv(fit_curves_rows(data, bands)),
             "observations.csv": rows_csv(data.rows()),
             "outcomes.csv": rows_csv(pat_rows), "arms.csv": rows_csv(arm_rows), "vpc.csv": rows_csv(v.rows()), "vpc.json": vpc_meta}
    syn = None
    if spec.model.interaction is not None:
        from hcvdyn.analysis.synergy import estimate_synergy, interaction_surface, pair_terms

        _stage("synergy: refit with psi free, profile and likelihood-ratio test", progress)
        try:
            syn = estimate_synergy(spec.model, data, regs, design, null=fit)
        except ValueError as e:  # no arm with both drugs: psi not identifiable
            meta["synergy_skipped"] = str(e)
        if syn is not None:
            x, surf, bliss = interaction_surface(spec.model, syn.full.values, syn.psi)
            try:
                terms = pair_terms(spec.model, syn.full.values, syn.arm, design.arm_values(spec.model, syn.arm), None)
                point = [c / ec for c, ec, *_ in terms]
            except ValueError:
                point = None
            files["synergy.json"] = {**syn.to_dict(), "pair": list(spec.model.interaction), "notes": dict(syn.notes),
                                     "surface": {"x": x.tolist(), "effect": surf.tolist(), "bliss": bliss.tolist(),
                                                 "names": list(spec.model.interaction), "point": point}}
    comp_rows = None
    if "scenarios" in spec.report:
        from hcvdyn.analysis.scenarios import load_scenarios, run_scenarios

        sc = load_scenarios(spec.report["scenarios"])
        _stage(f"what-if scenarios {sc.name}: {n_virtual} virtual patients per arm", progress)
        vt, comp_rows = run_scenarios(sc, n_virtual, seed, progress=progress)
        comp_rows = [{**r, "reference": sc.reference_arm} for r in comp_rows]
        files["comparison.csv"] = rows_csv(comp_rows)
        files["virtual_arms.csv"] = rows_csv(vt.summary_rows())
        traj = [{"arm": a, "day": float(d), "median_drop": r.quantiles[0, d], "p05_drop": r.quantiles[1, d], "p95_drop": r.quantiles[2, d]}
                for a, r in vt.arms.items() for d in range(r.quantiles.shape[1])]
        files["virtual_trajectories.csv"] = rows_csv(traj)
        meta["scenarios"] = {"n_per_arm": vt.n_per_arm, "seed": vt.seed}
    if "pk_trial" in spec.report:
        from hcvdyn.analysis.arms import simulate_arms
        from hcvdyn.model.trial_design import load_trial

        _stage("PK and efficacy of the trial's regimens", progress)
        files["pk_efficacy.csv"] = rows_csv(simulate_arms(load_trial(spec.report["pk_trial"]), points_per_day=24).exposure_rows())
    files["result.json"] = meta

    # the figures are drawn from the files, exactly as `hcvdyn figures` does
    import tempfile

    _stage("figures", progress)
    with tempfile.TemporaryDirectory() as stage_dir:
        figs = report_figures(write_results(Path(stage_dir) / "files", files))
    for name, fig in figs.items():
        files[f"figures/{name}"] = figure_writer(fig)
    files["report.md"] = _markdown(spec, data, fit, meta, param_rows, arm_rows, vpc_meta, files.get("synergy.json"), comp_rows, figs)
    try:
        write_results(out, files, force=force)
    finally:
        close_figures(figs)
    return out


def _markdown(spec, data, fit, meta, param_rows, arm_rows, vpc_meta, syn, comp_rows, figs) -> str:
    from hcvdyn.version import __version__

    shared = [r for r in param_rows if r["kind"] != "individual"]
    truth = meta.get("truth", {})
    for r in shared:
        r["truth_text"] = f"{truth[r['name']]:.4g}" if r["name"] in truth else "–"
    individual = [r for r in param_rows if r["kind"] == "individual"]
    by_group: list[dict] = []
    group_of = {p.id: p.group or "all" for p in data}
    for base in spec.design.individual:
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
        f"(sha256 `{meta['inputs']['spec']['sha256'][:16]}…`), data `{spec.data_path}` (sha256 `{meta['inputs']['data']['sha256'][:16]}…`), "
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
            f"From `comparison.csv` (per-arm table: `virtual_arms.csv`): `{meta['inputs']['scenarios']['path']}` on the calibrated "
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
        lines += ["## Pharmacokinetics and efficacy", "", f"Regimens of `{meta['inputs']['pk_trial']['path']}`, typical patient.", "",
                  fig("pk_efficacy"), ""]
    return "\n".join(lines) + "\n"
