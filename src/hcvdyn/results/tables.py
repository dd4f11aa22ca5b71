"""Result tables of a fit: parameter estimates with intervals, fitted curves with bands, observed outcomes per
patient and arm.
"""

from __future__ import annotations

import math

import numpy as np

from hcvdyn.estimate.synthetic import load_truth

__all__ = ["fit_tables", "fit_curves_rows", "observed_at", "outcome_tables", "mean_ci"]


def fit_tables(spec, data, fit, folder) -> tuple[list[dict], dict]:
    """(parameter rows, result.json content) of a whole-trial fit of ``spec`` (a :class:`hcvdyn.estimate.fitspec.FitSpec`)
    written to the results ``folder`` (inputs are recorded relative to it, :mod:`hcvdyn.results.provenance`)."""
    from hcvdyn.results.provenance import provenance

    rows = []
    for name, value in fit.values.items():
        e = fit.estimates[name]
        lo, hi = fit.interval(name)
        plo, phi_ = fit.profile.get(name, (math.nan, math.nan))
        rows.append({"name": name, "parameter": e.name, "kind": e.kind, "patient_or_arm": e.owner or "", "value": value,
                     "stderr": fit.stderr[name], "wald95_low": lo, "wald95_high": hi, "profile95_low": plo,
                     "profile95_high": phi_, "unit": spec.model.params[e.name].unit})
    design = spec.design
    counts = {"patients": len(data), "samples": fit.n_obs, "censored": int(sum(p.censored.sum() for p in data))}
    options = {"residual_sd": design.sigma, "atol": design.options.atol, "max_nfev": design.max_nfev, "likelihood": "M3 (Beal 2001)",
               "bounds": {k: list(v) for k, v in design.bounds.items()}, "weight_kg": design.weight_kg,
               "estimate_residual_sd": design.estimate_sigma, "n_starts": design.n_starts, "seed": design.seed}
    meta = provenance(
        "fit", folder, {"spec": (spec.path, {"name": spec.name}), "data": (spec.data_path, counts)}, model=spec.model.name,
        options=options,
        free={"individual": list(design.individual), "shared": {k: list(v) for k, v in design.shared.items()},
              "per_arm": {k: list(v) for k, v in design.per_arm.items()}},
        residual_sd={"value": fit.sigma, "stderr": fit.sigma_se, "estimated": fit.sigma_estimated, "unit": "log10 IU/mL"},
        start_objectives=[v if math.isfinite(v) else None for v in fit.start_objectives],
        converged=fit.success, message=fit.message, objective_minus2loglik_plus_const=fit.objective, aic=fit.aic, bic=fit.bic,
        nfev=fit.nfev,
        estimates={k: {"value": v, "stderr": fit.stderr[k], **({"profile95": list(fit.profile[k])} if k in fit.profile else {})}
                   for k, v in fit.values.items()},
        profile_trace={k: {"theta": list(t), "delta_m2loglik": list(d)} for k, (t, d) in fit.profile_trace.items()},
        covariance={"names": list(fit.values), "matrix": np.asarray(fit.covariance).tolist()},
    )
    if "truth" in spec.report:  # synthetic data: the true values, drawn in the forest plot of any fit folder
        meta["truth"] = load_truth(spec.report["truth"]).true_values(e for e in fit.estimates.values() if e.kind != "individual")
    return rows, meta



def fit_curves_rows(data, bands) -> list[dict]:
    """curves.csv rows: fitted log10 load and prediction band per patient on the band's grid."""
    arm = {p.id: p.arm for p in data}
    return [{"id": pid, "arm": arm[pid], "day": t, "log10_vl_fitted": bands.fitted[i, j], "pred95_low": bands.lower[i, j],
             "pred95_high": bands.upper[i, j]}
            for i, pid in enumerate(bands.ids) for j, t in enumerate(bands.t_days)]



def observed_at(p, day: float):
    """(decline from the first sample, censored) at ``day``, or (NaN, False) without a sample that day."""
    hit = np.flatnonzero(np.isclose(p.t_days, day))
    if hit.size == 0:
        return math.nan, False
    j = hit[0]
    return float(p.log10_vl[0] - p.log10_vl[j]), bool(p.censored[j])



def outcome_tables(data, bands, defs) -> tuple[list[dict], list[dict]]:
    """Per-patient and per-arm outcomes: observed (data at weeks 4 and 12) and predicted (fitted curves).

    Observed: decline from the day-0 sample; a censored sample counts at its limit (a lower bound of the
    decline) and is undetectable for RVR / cEVR. Predicted: :func:`hcvdyn.analysis.outcomes.patient_outcomes` of the
    fitted curve. Per arm, observed rates are over patients with a sample that week (dropouts left out).
    """
    from hcvdyn.analysis.outcomes import classify, patient_outcomes

    pred = patient_outcomes(bands.t_days, bands.fitted, defs)
    by_id = {p.id: p for p in data}
    rows = []
    for i, pid in enumerate(bands.ids):
        p = by_id[pid]
        d4, c4 = observed_at(p, 7.0 * defs.rvr_week)
        d12, c12 = observed_at(p, 7.0 * defs.evr_week)
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




def mean_ci(x):
    """(mean, low, high): mean of the finite values of ``x`` with its Student-t 95% interval (all equal to the mean when
    fewer than two)."""
    from scipy.stats import t as student

    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return (float(x.mean()) if x.size else math.nan,) * 3
    m, h = float(x.mean()), float(student.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - h, m + h
