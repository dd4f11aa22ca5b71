"""Result tables of a population fit: the parameter table (estimates with units, SE, RSE% and 95% intervals: Wald,
Satterthwaite's for the omegas and sigma), per-patient empirical Bayes estimates and individual parameters, and the
provenance record."""

from __future__ import annotations

import math

import numpy as np

from hcvdyn.estimate.synthetic import load_truth
from hcvdyn.results.provenance import provenance

__all__ = ["population_parameter_rows", "individual_rows", "population_meta"]


def population_parameter_rows(fit, level: float = 0.95, profiles=None) -> list[dict]:
    """parameters.csv of a population fit: one row per estimated value, then derived rows (variances and, for a
    block Omega, correlations of the random effects). profiles: label -> PopulationProfile, whose interval fills
    the columns profile95_low/high (NaN for values not profiled); with none given, the columns are left out."""
    rows = [{k: (v if not isinstance(v, float) else float(v)) for k, v in r.items()} for r in fit.rows(level)]
    for j, k in enumerate(fit.random):
        rows.append({"name": f"omega2_{k}", "kind": "variance", "parameter": k, "estimate": float(fit.omega[j, j]),
                     "unit": "variance of eta (parameter's scale)", "scale": "linear", "se": math.nan, "rse_percent": math.nan,
                     "lower": math.nan, "upper": math.nan})
        for i in range(j):
            r = fit.omega[j, i] / math.sqrt(fit.omega[i, i] * fit.omega[j, j])
            if fit.omega[j, i] != 0:
                rows.append({"name": f"corr_{k}_{fit.random[i]}", "kind": "correlation", "parameter": k, "estimate": float(r),
                             "unit": "1", "scale": "linear", "se": math.nan, "rse_percent": math.nan, "lower": math.nan, "upper": math.nan})
    if profiles:
        for r in rows:
            lo, hi = profiles[r["name"]].interval if r["name"] in profiles else (math.nan, math.nan)
            r.update(profile95_low=float(lo), profile95_high=float(hi))
    return rows


def individual_rows(fit, dataset) -> list[dict]:
    """individual.csv: per patient its arm, group, random effects (eta) and individual parameters."""
    out = []
    for i, p in enumerate(dataset):
        row = {"id": p.id, "arm": p.arm, "group": p.group}
        row.update({f"eta_{k}": float(fit.eta[i, j]) for j, k in enumerate(fit.random)})
        row.update({k: fit.patient_params[p.id][k] for k in fit.declared})
        out.append(row)
    return out


def population_meta(spec, data, fit, folder, design, vpc=None, profiles=None) -> dict:
    """result.json of a population fit of ``spec`` written to ``folder`` (inputs relative to it); with the VPC's
    settings, profile intervals and their points (``profiles``: label -> PopulationProfile), and for synthetic
    data (a ``[report] truth`` file) the true drug effects and residual SD."""
    cov = fit.covariance
    counts = {"patients": len(data), "samples": fit.n_obs, "censored": fit.n_censored}
    fd = design.fit
    options = {"method": design.method, "omega": "block" if design.block else "diagonal", "covariance": design.covariance,
               "likelihood": "M3 (Beal 2001)", "residual_error": "additive, log10 scale", "atol": fd.options.atol,
               "estimate_residual_sd": fd.estimate_sigma, "residual_sd_start": fd.sigma, "n_starts": fd.n_starts, "seed": fd.seed,
               "max_iter": design.max_iter, "bounds": {k: list(v) for k, v in fd.bounds.items()},
               "covariates": [{"parameter": c.parameter, "column": c.column, "form": c.form, "reference": c.reference}
                              for c in design.covariates]}
    meta = provenance(
        "fit", folder, {"spec": (spec.path, {"name": spec.name}), "data": (spec.data_path, counts)}, model=fit.model,
        options=options, population=True,
        random_effects=list(fit.random), fixed_effects=[v.label for v in fit.values if v.kind in ("typical", "shared", "per_arm", "covariate")],
        converged=fit.success, message=fit.message, ofv_minus2loglik=fit.ofv, aic=fit.aic, bic=fit.bic,
        evaluations=fit.evaluations, seconds=fit.seconds,
        start_objectives=[v if math.isfinite(v) else None for v in fit.start_objectives],
        estimates={k: {"value": v, "stderr": se} for (k, v), se in zip(fit.x.items(), cov.stderr)},
        omega={"names": list(fit.random), "matrix": np.asarray(fit.omega).tolist()}, sigma=fit.sigma,
        shrinkage_percent={k: 100 * v for k, v in fit.shrinkage.items()},
        covariance={"kind": cov.kind, "ok": cov.ok, "message": cov.message, "names": list(cov.labels),
                    "condition_number": cov.condition_number,
                    "matrix": None if cov.covariance is None else np.asarray(cov.covariance).tolist()},
        gradient=np.asarray(fit.gradient).tolist(),
    )
    if profiles:
        meta["profiles"] = {k: {"interval": list(p.interval), "level": p.level, "points": [list(q) for q in p.points], "notes": p.notes}
                            for k, p in profiles.items()}
    if vpc is not None:
        meta["vpc"] = {"lloq_log10": vpc.lloq_log10, "n_replicates": vpc.n_replicates, "seed": vpc.seed, "coverage": vpc.coverage,
                       "redrawn": vpc.redrawn}
    if "truth" in spec.report:  # synthetic data: true values of the fixed drug effects and the residual SD (forest plot)
        truth = load_truth(spec.report["truth"])
        meta["truth"] = {v.label: truth.shared_value(v.parameter) for v in fit.values
                         if v.kind == "shared" and truth.shared_value(v.parameter) is not None}
        meta["truth"]["sigma_res"] = truth.sigma
    return meta
