"""Stochastic simulation and estimation (SSE): how well a design and a fit specification recover the truth.

Replicate trials are simulated from a synthetic-data truth file (:func:`hcvdyn.estimate.synthetic.generate_synthetic_trial`,
seeds ``seed, seed + 1, ...``) and each is fitted with a fit specification (:func:`hcvdyn.estimate.fit.fit_trial`),
the procedure of PsN's ``sse`` (Lindbom, Pihlgren & Jonsson 2005, Comput Methods Programs Biomed 79:241).
For every shared or per-arm estimate with a known true value the summary gives the bias, the empirical SD
of the estimates against the mean reported standard error (a ratio near 1 means honest standard errors),
and the coverage of the Wald (and, if asked, profile-likelihood) intervals with its Wilson 95% interval
(Wilson 1927, J Am Stat Assoc 22:209). One replicate's interval missing its truth is expected 1 time in 20;
coverage over replicates is the property that can be checked.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["RecoveryStudy", "recovery_study", "combine_studies", "merged_replicates", "replicate_trials", "same_keys", "wilson_interval",
           "summarize"]


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n."""
    from scipy.stats import norm

    if n <= 0:
        return math.nan, math.nan
    z = norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def summarize(rows: Sequence[dict], truth: dict[str, float], level: float = 0.95, method: str = "", prefix: str = "") -> list[dict]:
    """Per-parameter summary of replicate rows (keys ``replicate``, ``converged``, ``NAME``, ``NAME_se``,
    ``NAME_wald_covers`` and optionally ``NAME_wald_R_covers`` (population fits: the Wald interval from the R-matrix
    covariance 2 R^-1 beside the default sandwich), ``NAME_profile_covers``, and for Omega SDs ``NAME_known_eta`` and
    ``NAME_known_eta_covers`` (the realized SD of the drawn random effects and its exact interval,
    :meth:`~hcvdyn.estimate.synthetic.SyntheticTruth.known_eta_sds`: how often an exact interval from the true random
    effects covered on these draws), each NAME with ``prefix``; only converged replicates count (``PREFIXconverged``
    where a prefix is given). ``method`` labels the rows. ``wald`` is the fit's reported interval: Wald on the
    parameter's scale, Satterthwaite's for a population fit's omegas and sigma."""
    ok = [r for r in rows if isinstance(c := r.get(f"{prefix}converged"), (bool, np.bool_)) and c]
    out = []
    for name, true in truth.items():
        key = f"{prefix}{name}"
        est = np.array([r[key] for r in ok], float)
        se = np.array([r[f"{key}_se"] for r in ok], float)
        n = est.size
        row = {**({"method": method} if method else {}), "name": name, "true": true, "n_converged": n, "n_replicates": len(rows)}
        if n:
            sd = float(np.std(est, ddof=1)) if n > 1 else math.nan
            row.update(mean=float(est.mean()), bias=float(est.mean() - true),
                       relative_bias=float((est.mean() - true) / true) if true else math.nan,
                       empirical_sd=sd, mean_se=float(np.nanmean(se)), se_ratio=float(np.nanmean(se) / sd) if sd > 0 else math.nan)
            se_r = np.array([r.get(f"{key}_se_R", math.nan) for r in ok], float)
            if np.any(np.isfinite(se_r)):
                row["mean_se_R"] = float(np.nanmean(se_r))
            known = np.array([r.get(f"{key}_known_eta", math.nan) for r in ok], float)
            if np.any(np.isfinite(known)):
                row["known_eta_mean"] = float(np.nanmean(known))
        for kind in ("wald", "wald_R", "profile", "known_eta"):
            covers = f"{key}_{kind}_covers"
            seen = [r[covers] for r in ok if isinstance(r.get(covers), (bool, np.bool_))]  # NaN: not computed there
            if seen:
                k = int(sum(seen))
                lo, hi = wilson_interval(k, len(seen), level)
                row.update({f"{kind}_coverage": k / len(seen), f"{kind}_coverage_low": lo, f"{kind}_coverage_high": hi})
        out.append(row)
    return out


@dataclass(frozen=True)
class RecoveryStudy:
    """Per-replicate rows and the per-parameter summary of an SSE (module docstring)."""

    rows: tuple[dict, ...]
    summary: tuple[dict, ...]
    truth: dict
    level: float
    seeds: tuple[int, ...]


TRIAL_FIT = "trial fit"  # the fixed-effects whole-trial fit's label in a population study's comparison
COMPARED = "trial_fit."  # prefix of its columns in the replicate rows


def recovery_study(spec_path, truth_path, n_replicates: int, seed: int = 1, level: float = 0.95,
                   profile: bool = False, progress: bool = False, compare: bool = True) -> RecoveryStudy:
    """Simulate ``n_replicates`` trials from ``truth_path`` (seeds seed..seed+n-1), fit each with ``spec_path``.

    A specification with a ``[population]`` table is fitted by its population method
    (:func:`~hcvdyn.estimate.population_fit.fit_population`); every typical value, group shift, Omega SD, drug
    effect and the residual SD with a true value is summarized (:meth:`SyntheticTruth.population_values`), and with
    ``compare`` each replicate is also fitted by the fixed-effects whole-trial fit of the same specification,
    whose drug effects are summarized beside (method "trial fit", columns ``trial_fit.NAME``). There ``profile``
    adds profile-likelihood intervals of the Omega SDs (:func:`~hcvdyn.estimate.population_profile.population_profile_interval`;
    several minutes per replicate); for a whole-trial fit it profiles the drug effects.

    Every replicate has the design of the truth file, so compiled functions are reused across replicates. A
    replicate whose simulation or fit fails, or whose fit does not converge, is kept with ``converged = False``
    and its message, and left out of the summary's numbers.
    """
    from hcvdyn.estimate.fitspec import load_fit_spec
    from hcvdyn.estimate.synthetic import load_truth

    if not (isinstance(n_replicates, int) and n_replicates >= 2):
        raise ValueError(f"recovery_study: n_replicates = {n_replicates!r} must be an integer >= 2")
    spec = load_fit_spec(spec_path)
    tr = load_truth(truth_path)
    population = spec.population is not None
    trial_truth = tr.true_values(spec.design.population_estimates(tuple(tr.arms)))
    if spec.design.estimate_sigma:
        trial_truth["residual_sd"] = tr.sigma
    if not trial_truth:
        raise ValueError(f"recovery_study: {truth_path} gives no true value for the drug effects or residual SD of {spec_path}")
    profiled = tuple(k for k in trial_truth if k != "residual_sd") if profile and not population else ()
    method = spec.population.method if population else TRIAL_FIT
    truth = None if population else trial_truth
    seeds = tuple(range(seed, seed + n_replicates))
    rows = []
    for i, (s, data, error) in enumerate(replicate_trials(tr, seeds)):
        row = {"replicate": i + 1, "seed": s}
        if error:
            row.update(converged=False, message=error)
        elif population:
            fit_truth = _population_replicate(spec, data, tr, truth, level, row, profile)
            truth = truth or fit_truth
            if compare:
                _trial_replicate(spec, data, trial_truth, (), level, row, COMPARED)
        else:
            _trial_replicate(spec, data, trial_truth, profiled, level, row, "")
        rows.append(row)
        if progress:
            shown = ", ".join(f"{n} {row[n]:.3g}" for n in (truth or {}) if n in row)
            print(f"replicate {i + 1}/{n_replicates} (seed {s}): {shown or row['message']}"
                  f"{'' if row['converged'] else ' (not converged: ' + row['message'] + ')'}", file=sys.stderr, flush=True)
    if truth is None:
        raise ValueError(f"recovery_study: no replicate of {truth_path} could be fitted: {rows[0]['message']}")
    rows = same_keys(rows)  # failed replicates lack the estimates: NaN there
    summary = summarize(rows, truth, level, method)
    if population and compare:
        summary += summarize(rows, trial_truth, level, TRIAL_FIT, COMPARED)
    return RecoveryStudy(tuple(rows), tuple(same_keys(summary)), truth, level, seeds)


def replicate_trials(truth, seeds: Sequence[int]):
    """(seed, dataset, None) for each seed's synthetic trial of ``truth`` (a SyntheticTruth), or (seed, None,
    message) when a drawn patient's solve fails: such a replicate is recorded, not fitted."""
    from hcvdyn.estimate.data import read_viral_loads
    from hcvdyn.estimate.synthetic import generate_synthetic_trial

    with tempfile.TemporaryDirectory() as tmp:
        for s in seeds:
            csv = Path(tmp) / f"replicate_{s}.csv"
            try:
                generate_synthetic_trial(truth, csv, seed=s)
                data = read_viral_loads(csv)
            except RuntimeError as e:
                yield s, None, f"simulating the replicate failed: {e}"
            else:
                yield s, data, None


def combine_studies(parts: Sequence[RecoveryStudy]) -> RecoveryStudy:
    """One study from parts run in chunks (``hcvdyn sse --seed`` with disjoint seeds, e.g. on several machines):
    the rows of all parts, ordered by seed and renumbered, summarized again. The parts must share their truth,
    level and methods; a seed in two parts is refused (the same replicate would count twice)."""
    if len(parts) < 2:
        raise ValueError(f"combine_studies: {len(parts)} part(s); give at least two")
    first = parts[0]
    methods = list(dict.fromkeys(r.get("method", TRIAL_FIT) for r in first.summary))
    truths = {m: {r["name"]: r["true"] for r in first.summary if r.get("method", TRIAL_FIT) == m} for m in methods}
    for k, part in enumerate(parts):
        part_truths = {m: {r["name"]: r["true"] for r in part.summary if r.get("method", TRIAL_FIT) == m}
                       for m in dict.fromkeys(r.get("method", TRIAL_FIT) for r in part.summary)}
        if part_truths != truths or part.level != first.level:
            raise ValueError(f"combine_studies: part {k + 1} has other methods, true values or level than part 1")
    rows, seeds = merged_replicates(parts, "combine_studies")
    summary = []
    for m in methods:
        prefix = COMPARED if m == TRIAL_FIT and len(methods) > 1 else ""
        summary += summarize(rows, truths[m], first.level, m, prefix)
    return RecoveryStudy(rows, tuple(same_keys(summary)), first.truth, first.level, seeds)


def same_keys(rows: Sequence[dict]) -> list[dict]:
    """The rows with every key any of them has, in first-seen order, NaN where a row lacks it (a table's columns:
    summary rows of omegas carry coverage columns that fixed effects lack, failed replicates lack estimates)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k, math.nan) for k in keys} for r in rows]


def merged_replicates(parts, where: str) -> tuple[tuple[dict, ...], tuple[int, ...]]:
    """The rows of studies run in chunks (each with ``rows`` and ``seeds``), ordered by seed and renumbered, and
    their seeds; a seed in two parts is refused (the same replicate would count twice)."""
    seen: dict[int, int] = {}
    for k, part in enumerate(parts):
        for s in part.seeds:
            if s in seen:
                raise ValueError(f"{where}: seed {s} is in parts {seen[s] + 1} and {k + 1}")
            seen[s] = k
    rows = same_keys(sorted((r for part in parts for r in part.rows), key=lambda r: r["seed"]))
    return tuple({**r, "replicate": i + 1} for i, r in enumerate(rows)), tuple(sorted(seen))


def _trial_replicate(spec, data, truth: dict, profiled: tuple, level: float, row: dict, prefix: str) -> None:
    """Fit one replicate by the whole-trial fit; its estimates, SEs and coverage into ``row`` (keys with ``prefix``)."""
    from hcvdyn.estimate.fit import fit_trial
    from hcvdyn.estimate.profile import wald_interval

    design = spec.population.fit if spec.population is not None else spec.design
    try:
        fit = fit_trial(spec.model, data, spec.regimens_for(data), design, profile=profiled, level=level, profile_points=0)
    except (RuntimeError, ValueError) as e:
        row.update({f"{prefix}converged": False, f"{prefix}message": str(e)})
        return
    row.update({f"{prefix}converged": fit.success, f"{prefix}message": fit.message, f"{prefix}objective": fit.objective})
    estimates = {**fit.values, "residual_sd": fit.sigma}
    ses = {**fit.stderr, "residual_sd": fit.sigma_se}
    for name, true in truth.items():
        lo, hi = fit.interval(name, level) if name in fit.values else wald_interval(estimates[name], ses[name], level)
        key = f"{prefix}{name}"
        row.update({key: estimates[name], f"{key}_se": ses[name], f"{key}_wald_covers": bool(lo <= true <= hi)})
        if name in profiled:
            plo, phi = fit.profile[name]
            row[f"{key}_profile_covers"] = bool(plo <= true <= phi)


def _population_replicate(spec, data, tr, truth: dict | None, level: float, row: dict, profile: bool = False) -> dict | None:
    """Fit one replicate by the population method; estimates (in units for typical values and drug effects),
    SEs and coverage into ``row``, and with ``profile`` the profile intervals' coverage of the Omega SDs. Returns
    the true values of the fit's outer values."""
    from hcvdyn.estimate.population_fit import fit_population
    from hcvdyn.estimate.population_profile import population_profile_interval
    from hcvdyn.estimate.synthetic import drawn_patients

    try:
        fit = fit_population(spec.model, data, spec.regimens_for(data), spec.population)
    except (RuntimeError, ValueError) as e:
        row.update(converged=False, message=str(e))
        return truth
    truth = truth or tr.population_values(fit.values)
    if not truth:
        raise ValueError(f"recovery_study: {tr.path} gives no true value for any of {[v.label for v in fit.values]}")
    row.update(converged=fit.success, message=fit.message, objective=fit.ofv, seconds=fit.seconds, evaluations=fit.evaluations)
    readings = {"": fit}  # the fit's own covariance, and the same intervals from 2 R^-1 (no refit) beside it
    if fit.covariance.kind != "R" and fit.covariance.ok:
        readings["_R"] = replace(fit, covariance=fit.covariance.as_kind("R"))
    for suffix, reading in readings.items():
        for r in (r for r in reading.rows(level) if r["name"] in truth):
            row.update({r["name"]: r["estimate"], f"{r['name']}_se{suffix}": r["se"],
                        f"{r['name']}_wald{suffix}_covers": bool(r["lower"] <= truth[r["name"]] <= r["upper"])})
    for label, (realized, lo, hi) in tr.known_eta_sds(drawn_patients(tr, row["seed"]), fit.values, level).items():
        row.update({f"{label}_known_eta": realized, f"{label}_known_eta_covers": bool(lo <= truth[label] <= hi)})
    for v in (v for v in fit.values if profile and fit.success and v.kind == "omega" and v.label in truth):
        try:
            lo, hi = population_profile_interval(spec.model, data, spec.regimens_for(data), spec.population, fit, v.label, level).interval
        except (RuntimeError, ValueError) as e:  # a failed profile fit: noted, the replicate's other results kept
            row["message"] = f"{row['message']}; profile of {v.label} failed: {e}"
            continue
        row.update({f"{v.label}_profile_low": lo, f"{v.label}_profile_high": hi, f"{v.label}_profile_covers": bool(lo <= truth[v.label] <= hi)})
    return truth
