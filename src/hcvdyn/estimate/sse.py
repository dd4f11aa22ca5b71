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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["RecoveryStudy", "recovery_study", "wilson_interval", "summarize"]


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


def summarize(rows: Sequence[dict], truth: dict[str, float], level: float = 0.95) -> list[dict]:
    """Per-parameter summary of replicate rows (keys ``replicate``, ``converged``, ``NAME``, ``NAME_se``,
    ``NAME_wald_covers`` and optionally ``NAME_profile_covers``); only converged replicates count."""
    ok = [r for r in rows if r["converged"]]
    out = []
    for name, true in truth.items():
        est = np.array([r[name] for r in ok], float)
        se = np.array([r[f"{name}_se"] for r in ok], float)
        n = est.size
        row = {"name": name, "true": true, "n_converged": n, "n_replicates": len(rows)}
        if n:
            sd = float(np.std(est, ddof=1)) if n > 1 else math.nan
            row.update(mean=float(est.mean()), bias=float(est.mean() - true),
                       relative_bias=float((est.mean() - true) / true) if true else math.nan,
                       empirical_sd=sd, mean_se=float(np.nanmean(se)), se_ratio=float(np.nanmean(se) / sd) if sd > 0 else math.nan)
        for kind in ("wald", "profile"):
            key = f"{name}_{kind}_covers"
            if ok and key in ok[0]:
                k = int(sum(bool(r[key]) for r in ok))
                lo, hi = wilson_interval(k, n, level)
                row.update({f"{kind}_coverage": k / n, f"{kind}_coverage_low": lo, f"{kind}_coverage_high": hi})
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


def recovery_study(spec_path, truth_path, n_replicates: int, seed: int = 1, level: float = 0.95,
                   profile: bool = False, progress: bool = False) -> RecoveryStudy:
    """Simulate ``n_replicates`` trials from ``truth_path`` (seeds seed..seed+n-1), fit each with ``spec_path``.

    Every replicate has the design of the truth file, so the compiled residual and Jacobian functions are
    reused across replicates. A replicate whose simulation or fit fails, or whose fit does not converge, is
    kept with ``converged = False`` and its message, and left out of the summary's numbers.
    """
    from hcvdyn.estimate.data import read_viral_loads
    from hcvdyn.estimate.fit import fit_trial
    from hcvdyn.estimate.fitspec import load_fit_spec
    from hcvdyn.estimate.profile import wald_interval
    from hcvdyn.estimate.synthetic import generate_synthetic_trial, load_truth

    if not (isinstance(n_replicates, int) and n_replicates >= 2):
        raise ValueError(f"recovery_study: n_replicates = {n_replicates!r} must be an integer >= 2")
    spec = load_fit_spec(spec_path)
    tr = load_truth(truth_path)
    estimates = spec.design.population_estimates(tuple(tr.arms))
    truth = tr.true_values(estimates)
    if not truth:
        raise ValueError(f"recovery_study: {truth_path} gives no true value for the estimated {[e.label for e in estimates]}")
    profiled = tuple(truth) if profile else ()
    if spec.design.estimate_sigma:
        truth["residual_sd"] = tr.sigma
    seeds = tuple(range(seed, seed + n_replicates))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(seeds):
            csv = Path(tmp) / f"replicate_{s}.csv"
            row = {"replicate": i + 1, "seed": s}
            try:
                generate_synthetic_trial(tr, csv, seed=s)
                data = read_viral_loads(csv)
            except RuntimeError as e:  # a drawn patient's solve failed: the replicate is recorded, not fitted
                row.update(converged=False, message=f"simulating the replicate failed: {e}")
                rows.append(row)
                if progress:
                    print(f"replicate {i + 1}/{n_replicates} (seed {s}): {row['message']}", file=sys.stderr, flush=True)
                continue
            try:
                fit = fit_trial(spec.model, data, spec.regimens_for(data), spec.design, profile=profiled, level=level, profile_points=0)
            except (RuntimeError, ValueError) as e:
                row.update(converged=False, message=str(e))
                rows.append(row)
                if progress:
                    print(f"replicate {i + 1}/{n_replicates} (seed {s}): fit failed: {e}", file=sys.stderr, flush=True)
                continue
            row.update(converged=fit.success, message=fit.message, objective=fit.objective)
            estimates = {**fit.values, "residual_sd": fit.sigma}
            ses = {**fit.stderr, "residual_sd": fit.sigma_se}
            for name, true in truth.items():
                lo, hi = fit.interval(name, level) if name in fit.values else wald_interval(estimates[name], ses[name], level)
                row.update({name: estimates[name], f"{name}_se": ses[name], f"{name}_wald_covers": bool(lo <= true <= hi)})
                if name in profiled:
                    plo, phi = fit.profile[name]
                    row[f"{name}_profile_covers"] = bool(plo <= true <= phi)
            rows.append(row)
            if progress:
                est = ", ".join(f"{n} {row[n]:.3f}" for n in truth)
                print(f"replicate {i + 1}/{n_replicates} (seed {s}): {est}{'' if fit.success else ' (not converged)'}",
                      file=sys.stderr, flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))  # failed replicates lack the estimates: NaN there
    rows = [{k: r.get(k, math.nan) for k in keys} for r in rows]
    return RecoveryStudy(tuple(rows), tuple(summarize(rows, truth, level)), truth, level, seeds)
