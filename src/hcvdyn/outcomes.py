"""Treatment outcomes from viral-load series: log10 drops, RVR / EVR / cEVR and the cure boundary.

Definitions (Ghany et al. 2009, Hepatology 49:1335-1374; every threshold is a field of :class:`OutcomeDefinitions`):

* log10 drop at week w: baseline log10 load minus the log10 load at day 7 w (positive = decline).
* undetectable: below the assay limit (``lloq_iu_ml``); a value exactly at the limit is quantifiable,
  so it is detectable. A censored sample ("<LLOQ") is undetectable.
* RVR: undetectable at week 4.  EVR: drop >= 2 log10 at week 12 (exactly 2 counts) or undetectable.
  cEVR: undetectable at week 12.
* cure boundary (Snoeck et al. 2010, Clin Pharmacol Ther 87:706-713): fewer than one infected cell in the
  whole extracellular fluid, I < 1 / volume cells/mL (-4.13 log10 for 13.5 L), and fewer than one infectious
  virion there, V_I < 1 / (volume x copies per IU) IU/mL (-4.56 log10 IU/mL at 2.7 copies/IU). Total RNA,
  mostly non-infectious under ribavirin or celgosivir, is not the criterion.

The functions are pure numpy and vectorised over patients.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

__all__ = ["OutcomeDefinitions", "classify", "cure_day", "patient_outcomes", "PatientPrediction", "predict_patient"]


@dataclass(frozen=True)
class OutcomeDefinitions:
    """Thresholds of the response definitions (defaults: Ghany et al. 2009, Hepatology 49:1335-1374; assay limit of COBAS TaqMan)."""

    lloq_iu_ml: float = 15.0  # COBAS TaqMan detection limit 10-15 IU/mL
    evr_drop_log10: float = 2.0  # EVR: >= 2 log10 drop at week 12
    rvr_week: float = 4.0
    evr_week: float = 12.0
    drop_weeks: tuple[float, ...] = (4.0, 12.0, 24.0, 48.0)
    ecf_volume_ml: float = 13_500.0  # extracellular fluid, ~13.5 L
    copies_per_iu: float = 2.7  # Cobas Amplicor v2.0

    def __post_init__(self):
        for name in ("lloq_iu_ml", "ecf_volume_ml", "copies_per_iu", "rvr_week", "evr_week"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"OutcomeDefinitions.{name} = {v!r} must be a positive number")
        if not (math.isfinite(self.evr_drop_log10) and self.evr_drop_log10 > 0):
            raise ValueError(f"OutcomeDefinitions.evr_drop_log10 = {self.evr_drop_log10!r} must be positive")

    @property
    def lloq_log10(self) -> float:
        return math.log10(self.lloq_iu_ml)

    @property
    def cure_log10(self) -> float:
        """The infectious-virion cure boundary in log10 IU/mL (one virion in the extracellular fluid)."""
        return -math.log10(self.ecf_volume_ml * self.copies_per_iu)

    @property
    def cure_cells_log10(self) -> float:
        """The infected-cell cure boundary in log10 cells/mL (one infected cell in the extracellular fluid volume)."""
        return -math.log10(self.ecf_volume_ml)

    def to_dict(self) -> dict:
        return asdict(self)


def classify(baseline, at_rvr, at_evr, censored_rvr=False, censored_evr=False, defs: OutcomeDefinitions = OutcomeDefinitions()):
    """RVR, EVR, cEVR flags and the week-12 drop from log10 loads (arrays over patients).

    baseline, at_rvr, at_evr: log10 IU/mL at day 0, week 4 and week 12 (NaN = missing, e.g. dropped out:
    every flag is then False, i.e. a non-response, as in an intention-to-treat analysis).
    censored_*: True where the sample was reported below the limit (its value is the limit or ignored).
    """
    baseline, at_rvr, at_evr = (np.asarray(x, dtype=float) for x in (baseline, at_rvr, at_evr))
    und_rvr = np.asarray(censored_rvr, dtype=bool) | (at_rvr < defs.lloq_log10)
    und_evr = np.asarray(censored_evr, dtype=bool) | (at_evr < defs.lloq_log10)
    seen_rvr, seen_evr = np.isfinite(at_rvr) | np.asarray(censored_rvr, bool), np.isfinite(at_evr) | np.asarray(censored_evr, bool)
    value_evr = np.where(np.asarray(censored_evr, bool), defs.lloq_log10, at_evr)
    drop = baseline - value_evr  # a censored week-12 value counts at the limit: a lower bound of the drop
    return {
        "drop_evr": np.where(seen_evr, drop, np.nan),
        "rvr": seen_rvr & und_rvr,
        "evr": seen_evr & ((drop >= defs.evr_drop_log10) | und_evr),
        "cevr": seen_evr & und_evr,
    }


def cure_day(t_days, log10_infected, defs: OutcomeDefinitions = OutcomeDefinitions(), log10_vi=None):
    """First day both infected cells and infectious virions are below the cure boundary, NaN if never.

    t_days: (n,) increasing; log10_infected: (..., n) infected cells (log10 cells/mL); log10_vi: (..., n)
    infectious virions (log10 IU/mL), optional. The crossing is interpolated linearly in log10 and the later
    of the two crossings counts.
    """
    day = _first_crossing(t_days, log10_infected, defs.cure_cells_log10)
    if log10_vi is not None:
        day = np.maximum(day, _first_crossing(t_days, log10_vi, defs.cure_log10))  # NaN (never) wins
    return day


def _first_crossing(t_days, log10_x, boundary: float):
    t = np.asarray(t_days, dtype=float)
    v = np.asarray(log10_x, dtype=float)
    below = v < boundary
    first = np.argmax(below, axis=-1)
    hit = below.any(axis=-1)
    prev = np.maximum(first - 1, 0)
    v1 = np.take_along_axis(v, prev[..., None], -1)[..., 0]
    v2 = np.take_along_axis(v, first[..., None], -1)[..., 0]
    frac = np.where(v1 > v2, (v1 - boundary) / np.where(v1 > v2, v1 - v2, 1.0), 0.0)
    day = t[prev] + frac * (t[first] - t[prev])
    return np.where(hit & (first > 0), day, np.where(hit, t[0], np.nan))


def patient_outcomes(t_days, log10_vl, defs: OutcomeDefinitions = OutcomeDefinitions(), log10_infected=None, log10_vi=None) -> dict[str, np.ndarray]:
    """Outcomes of noise-free model trajectories (..., n) on a grid that contains every needed week.

    Returns drop_wW for each week in ``defs.drop_weeks`` within the grid, rvr, evr, cevr and, when infected
    cells (and optionally infectious virions) are given, cure_day (:func:`cure_day`).
    """
    t = np.asarray(t_days, dtype=float)
    v = np.asarray(log10_vl, dtype=float)

    def at(week):
        day = 7.0 * week
        if day > t[-1] + 1e-9:
            return np.full(v.shape[:-1], np.nan)
        return np.apply_along_axis(lambda row: np.interp(day, t, row), -1, v) if v.ndim > 1 else np.interp(day, t, v)

    out = {f"drop_w{w:g}": v[..., 0] - at(w) for w in defs.drop_weeks if 7.0 * w <= t[-1] + 1e-9}
    out.update(classify(v[..., 0], at(defs.rvr_week), at(defs.evr_week), defs=defs))
    out.pop("drop_evr")
    if log10_infected is not None:
        out["cure_day"] = cure_day(t, log10_infected, defs, log10_vi)
    return out


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
    defs: OutcomeDefinitions = OutcomeDefinitions(), weight_kg: float = 70.0, steps_per_day: int = 24,
) -> PatientPrediction:
    """Outcomes of a :class:`hcvdyn.fit.PatientFit` with intervals that carry its parameter uncertainty.

    Free parameters are drawn (seeded) from the normal approximation at the estimate (its standard errors
    and correlations), kept inside their declared bounds by rejection, and simulated under ``regimens``.
    """
    from .models import get_model
    from .solve import grid_doses, population_solver

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
    index, amounts = grid_doses(regimens, model.pk_drugs, days, steps_per_day, np.full(n, weight_kg))
    log10_states = np.asarray(population_solver(model, days, steps_per_day)(params, index, amounts)).T / math.log(10)
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


def roc_auc(score, label) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n1 n0)), ties counted one half; NaN without both classes."""
    score, label = np.asarray(score, float), np.asarray(label, bool)
    pos, neg = score[label], score[~label]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


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

    from .data import PatientData
    from .fit import fit_patient
    from .solve import scheduled_doses
    from .trial import simulate_arm_patients

    defs = defs or OutcomeDefinitions(lloq_iu_ml=10 ** spec.lloq_log10)
    model = population.model
    regimens = spec.arms[arm]
    rng = np.random.default_rng([seed, 7])
    params, _, weights, _ = population.sample(n_patients, rng)
    days = int(round(7 * defs.evr_week))
    taken = {d: np.ones((n_patients, scheduled_doses(regimens, d, days).size), bool) for d in model.pk_drugs}
    v = simulate_arm_patients(model, params, weights, taken, regimens, days, 24, n_patients)
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
    """python -m hcvdyn.outcomes [--n 40] [--arm triple]: early-prediction accuracy on a virtual trial."""
    import argparse

    import jax

    jax.config.update("jax_enable_x64", True)
    from .io import load_trial
    from .trial import load_population

    ap = argparse.ArgumentParser(prog="python -m hcvdyn.outcomes", description="Week-12 EVR predicted from 4 weeks of data")
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
