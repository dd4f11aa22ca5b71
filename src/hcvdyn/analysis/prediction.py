"""Predictions for one patient (fit, then the 12-week outcomes with intervals) and early prediction of EVR
from the first weeks' data, scored on a virtual trial (``python -m hcvdyn.analysis.prediction``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from hcvdyn.analysis.outcomes import OutcomeDefinitions, patient_outcomes, roc_auc
from hcvdyn.solve.grid import DEFAULT_STEPS_PER_DAY

__all__ = ["PatientPrediction", "predict_patient", "EarlyPrediction", "early_prediction", "main"]


@dataclass(frozen=True)
class PatientPrediction:
    """Predicted outcomes of one fitted patient: the estimate and a prediction interval per outcome.

    summary[name] = (at the estimate, lower, upper) for drops and cure day (interval over parameter
    draws); for rvr/evr/cevr: (at the estimate as 0/1, probability over draws, NaN).
    """

    patient_id: str
    level: float
    n_draws: int
    seed: int
    summary: Mapping[str, tuple[float, float, float]]
    t_days: np.ndarray
    band: np.ndarray  # (3, n): median, lower, upper log10 load over draws
    best: np.ndarray  # (n,) log10 load at the estimate



def predict_patient(
    fit, regimens, days: int = 336, n_draws: int = 400, seed: int = 0, level: float = 0.95,
    defs: OutcomeDefinitions = OutcomeDefinitions(), weight_kg: float = 70.0, steps_per_day: int = DEFAULT_STEPS_PER_DAY,
) -> PatientPrediction:
    """Outcomes of a :class:`hcvdyn.estimate.fit.PatientFit` with intervals that carry its parameter uncertainty.

    Free parameters are drawn (seeded) from the normal approximation at the estimate (its standard errors
    and correlations), kept inside their declared bounds by rejection, and simulated under ``regimens`` on the
    fixed grid with at least ``steps_per_day`` base steps a day (:func:`hcvdyn.solve.grid.base_steps_per_day`).
    """
    from hcvdyn.model.catalog import get_model
    from hcvdyn.solve.grid import base_steps_per_day, day_mesh, grid_doses, population_solver

    model = get_model(fit.model)
    free = list(fit.free)
    se = np.array([fit.stderr[k] for k in free])
    if not np.all(np.isfinite(se)):
        raise ValueError(f"patient {fit.patient_id}: standard errors are not finite; no prediction interval")
    corr = np.nan_to_num(np.asarray(fit.correlation, dtype=float), nan=0.0)
    np.fill_diagonal(corr, 1.0)
    cov = corr * np.outer(se, se)
    mean = np.array([fit.params[k] for k in free])
    lo = np.array([model.params[k].lower for k in free])
    hi = np.array([model.params[k].upper for k in free])
    rng = np.random.default_rng(seed)
    draws = np.empty((0, len(free)))
    for _ in range(50):
        cand = rng.multivariate_normal(mean, cov, size=2 * n_draws, method="eigh")
        draws = np.vstack([draws, cand[np.all((cand >= lo) & (cand <= hi), axis=1)]])
        if len(draws) >= n_draws:
            break
    draws = np.vstack([mean, draws[:n_draws]])
    n = len(draws)
    params = {k: np.full(n, float(v)) for k, v in fit.params.items()}
    for j, k in enumerate(free):
        params[k] = draws[:, j]
    mesh = day_mesh(model, regimens, base_steps_per_day(params["c"], steps_per_day))
    index, amounts = grid_doses(regimens, model.pk_drugs, days, mesh, np.full(n, weight_kg))
    log10_states = np.asarray(population_solver(model, days, mesh)(params, index, amounts)).T / math.log(10)
    ln_v = log10_states[:, 3]
    t = np.arange(days + 1.0)
    out = patient_outcomes(t, ln_v, defs, log10_infected=log10_states[:, 1], log10_vi=log10_states[:, 2])
    a = (1 - level) / 2
    summary = {}
    for k, v in out.items():
        if k in ("rvr", "evr", "cevr"):
            summary[k] = (float(v[0]), float(np.mean(v[1:])), math.nan)
        else:
            tail = v[1:]
            lo_q, hi_q = (np.nanquantile(tail, [a, 1 - a]) if np.isfinite(tail).any() else (math.nan, math.nan))
            summary[k] = (float(v[0]), float(lo_q), float(hi_q))
    band = np.vstack([np.median(ln_v[1:], 0), np.quantile(ln_v[1:], a, 0), np.quantile(ln_v[1:], 1 - a, 0)])
    return PatientPrediction(fit.patient_id, level, n - 1, seed, summary, t, band, ln_v[0])



@dataclass(frozen=True)
class EarlyPrediction:
    """Week-12 EVR predicted from the first weeks of data, against the known truth of a virtual trial."""

    n: int
    weeks: float
    threshold: float
    sensitivity: float
    specificity: float
    auc: float
    accuracy: float
    n_true_evr: int
    n_failed: int
    probability: np.ndarray  # predicted P(EVR) per patient (NaN: fit failed)
    truth: np.ndarray  # true EVR (noise-free model) per patient



def early_prediction(
    population, spec, arm: str, n_patients: int = 60, seed: int = 11, weeks: float = 4.0,
    free: tuple[str, ...] = ("log10_V0", "delta", "ifn_ec50"), threshold: float = 0.5, n_draws: int = 200,
    defs: OutcomeDefinitions | None = None, progress: bool = False,
) -> EarlyPrediction:
    """Fit each virtual patient of ``arm`` on samples up to ``weeks`` and predict week-12 EVR; score against the truth.

    Patients come from ``population`` (seeded); their data are the trial's sample days up to ``weeks``, with
    assay error and censoring. Each fit frees ``free`` (other parameters at the population's typical values:
    the fitter does not know the patient's other deviations, adherence or dropout). A patient is predicted
    EVR when P(EVR) over the parameter draws of :func:`predict_patient` is >= ``threshold``; the truth is
    the noise-free model's EVR at week 12.
    """
    import sys

    from hcvdyn.analysis.virtual_trial import simulate_arm_patients
    from hcvdyn.estimate.data import PatientData
    from hcvdyn.estimate.fit import fit_patient
    from hcvdyn.solve.grid import scheduled_doses

    defs = defs or OutcomeDefinitions(lloq_iu_ml=10 ** spec.lloq_log10)
    model = population.model
    regimens = spec.arms[arm]
    rng = np.random.default_rng([seed, 7])
    params, _, weights, _ = population.sample(n_patients, rng)
    days = int(round(7 * defs.evr_week))
    taken = {d: np.ones((n_patients, scheduled_doses(regimens, d, days).size), bool) for d in model.pk_drugs}
    v = simulate_arm_patients(model, params, weights, taken, regimens, days, DEFAULT_STEPS_PER_DAY, n_patients)
    t_all = np.arange(days + 1.0)
    truth = patient_outcomes(t_all, v, defs)["evr"]
    sample_days = np.array([d for d in spec.sample_days if d <= 7 * weeks + 1e-9])
    typical = population.typical()
    prob = np.full(n_patients, np.nan)
    for i in range(n_patients):
        y = v[i, sample_days.astype(int)] + population.sigma_log10 * rng.standard_normal(sample_days.size)
        cens = y < defs.lloq_log10
        patient = PatientData(f"V{i + 1}", arm, sample_days, np.where(cens, defs.lloq_log10, y), cens, np.full(sample_days.size, defs.lloq_log10))
        try:
            fit = fit_patient(model, patient, free, typical, regimens, float(weights[i]), sigma=population.sigma_log10)
            if fit.success:
                pred = predict_patient(fit, regimens, days=days, n_draws=n_draws, seed=seed + i, defs=defs, weight_kg=float(weights[i]))
                prob[i] = pred.summary["evr"][1]
        except (RuntimeError, ValueError):
            pass
        if progress:
            sys.stderr.write(f"\rearly prediction: {i + 1}/{n_patients} patients fitted")
    if progress:
        sys.stderr.write("\n")
    ok = np.isfinite(prob)
    pred_evr = prob[ok] >= threshold
    tru = truth[ok]
    tp, tn = int(np.sum(pred_evr & tru)), int(np.sum(~pred_evr & ~tru))
    sens = tp / max(1, int(tru.sum())) if tru.any() else math.nan
    spec_ = tn / max(1, int((~tru).sum())) if (~tru).any() else math.nan
    return EarlyPrediction(
        n=int(ok.sum()), weeks=weeks, threshold=threshold, sensitivity=sens, specificity=spec_,
        auc=roc_auc(prob[ok], tru), accuracy=float(np.mean(pred_evr == tru)) if ok.any() else math.nan,
        n_true_evr=int(tru.sum()), n_failed=int((~ok).sum()), probability=prob, truth=truth,
    )



def main(argv=None) -> int:
    """python -m hcvdyn.analysis.prediction [--n 40] [--arm triple]: early-prediction accuracy on a virtual trial."""
    import argparse

    import jax

    jax.config.update("jax_enable_x64", True)
    from hcvdyn.analysis.population import load_population
    from hcvdyn.model.trial_design import load_trial

    ap = argparse.ArgumentParser(prog="python -m hcvdyn.analysis.prediction", description="Week-12 EVR predicted from 4 weeks of data")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--arm", default="triple")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    pop, spec = load_population("g1_nonresponder_population"), load_trial("celgosivir_phase2")
    r = early_prediction(pop, spec, args.arm, args.n, args.seed, progress=True)
    print(f"arm {args.arm}: {r.n} patients fitted on days <= {7 * r.weeks:g} ({r.n_failed} fits failed), {r.n_true_evr} true EVR")
    print(f"sensitivity {r.sensitivity:.2f}  specificity {r.specificity:.2f}  accuracy {r.accuracy:.2f}  AUC {r.auc:.2f}"
          f"  (predicted EVR when P >= {r.threshold})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
