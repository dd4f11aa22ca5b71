"""A trial's virtual population against its reported top line: the main job (``hcvdyn simulate``).

:func:`compare_to_reported` runs the trial's arms on its virtual population (calibrated-parameter draws
included), and sets each arm's mean week-12 drop and EVR, with intervals, beside what the trial reported:

* virtual: the population mean and EVR with 95% intervals over the calibration's parameter draws;
* reported: the mean with mean +/- 1.96 SD / sqrt(n) (SD of the virtual arm, since the release gives none),
  and the EVR count with its Clopper-Pearson 95% interval.

It also returns the daily median and 5-95% band of the change from baseline and the red-flag checks
(:mod:`hcvdyn.analysis.plausibility`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["ArmComparison", "TrialComparison", "compare_to_reported", "binomial_interval"]


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a binomial proportion k / n (quantiles of Beta(k, n - k + 1) and
    Beta(k + 1, n - k))."""
    from scipy.special import betaincinv  # not scipy.stats: half a second of import for the main job

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, a))
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - a))
    return lo, hi


@dataclass(frozen=True)
class ArmComparison:
    """One arm: virtual summaries (value, lo, hi) and the reported ones (None where not reported)."""

    arm: str
    median: np.ndarray  # daily median change from baseline (log10; negative = decline)
    lo: np.ndarray  # 5%
    hi: np.ndarray  # 95%
    mean_drop: tuple[float, float, float]
    pct_evr: tuple[float, float, float]
    reported_n: int | None
    reported_mean_drop: tuple[float, float, float] | None
    reported_pct_evr: tuple[float, float, float] | None
    reported_note: str = ""
    more: Mapping[str, tuple[float, float, float]] | None = None  # virtual mean_drop_w4, pct_rvr, pct_cevr

    def row(self) -> dict:
        """Flat table row (percentages and log10 drops)."""
        r = {"arm": self.arm}
        extra = tuple((f"virtual_{k}", v) for k, v in (self.more or {}).items())
        for k, v in (("virtual_mean_drop", self.mean_drop), ("virtual_pct_evr", self.pct_evr), *extra,
                     ("reported_mean_drop", self.reported_mean_drop), ("reported_pct_evr", self.reported_pct_evr)):
            v = v or (math.nan, math.nan, math.nan)
            r[k], r[f"{k}_lo"], r[f"{k}_hi"] = (round(float(x), 4) for x in v)
        r["reported_n"] = self.reported_n if self.reported_n is not None else ""
        return r


@dataclass(frozen=True)
class TrialComparison:
    """Every arm of a trial on its virtual population, beside the reported top line."""

    trial: str
    population: str
    n_per_arm: int
    seed: int
    n_draws: int
    t_days: np.ndarray
    arms: Mapping[str, ArmComparison]
    flags: tuple
    virtual_trial: object

    def rows(self) -> list[dict]:
        return [a.row() for a in self.arms.values()]


def compare_to_reported(spec, population, n_per_arm: int = 2000, seed: int = 2026, n_draws: int = 20, progress: bool = False) -> TrialComparison:
    """Virtual trial of ``spec`` on ``population`` (its calibration draws included) against ``spec.reported``."""
    from hcvdyn.analysis.plausibility import red_flags
    from hcvdyn.analysis.virtual_trial import run_virtual_trial

    vt = run_virtual_trial(population, spec, n_per_arm, seed, n_boot=200, n_draws=n_draws, progress=progress)
    out = {}
    for name, r in vt.arms.items():
        rep = spec.reported.get(name)
        rep_mean = rep_evr = None
        if rep is not None and rep.mean_drop is not None:
            sd = float(np.nanstd(r.drop, ddof=1))
            half = 1.96 * sd / math.sqrt(rep.n)
            rep_mean = (rep.mean_drop, rep.mean_drop - half, rep.mean_drop + half)
        if rep is not None and rep.evr_count is not None:
            lo, hi = binomial_interval(rep.evr_count, rep.n)
            rep_evr = (100.0 * rep.evr_count / rep.n, 100.0 * lo, 100.0 * hi)
        q = r.quantiles
        out[name] = ArmComparison(
            name, -q[0], -q[2], -q[1], r.table["mean_drop"], r.table["pct_evr"],
            rep.n if rep else None, rep_mean, rep_evr, rep.note if rep else "",
            {k: r.table[k] for k in ("mean_drop_w4", "pct_rvr", "pct_cevr")},
        )
    flags = tuple(red_flags(vt, population, spec.arms))
    return TrialComparison(spec.name, population.name, n_per_arm, seed, n_draws, np.arange(vt.days + 1.0), out, flags, vt)


def average_effects(spec, days: float | None = None, points_per_day: int = 24) -> dict[str, dict[str, float]]:
    """Per arm, each drug effect of the typical patient averaged over the course (constant-efficacy equivalents).

    The synthetic trial (fits/tcl_recovery_truth.toml) takes its constant efficacies from here.
    """
    from hcvdyn.solve.adaptive import exposure

    days = spec.duration_days if days is None else days
    t = np.linspace(0.0, days, int(round(days * points_per_day)) + 1)
    params = spec.parameter_set.params()
    out = {}
    for arm, regs in spec.arms.items():
        ex = exposure(spec.parameter_set.model, params, regs, t, spec.weight_kg)
        out[arm] = {e: float(np.trapezoid(np.asarray(ex[e]), t) / days) for e in ("eps", "rho", "phi", "sigma")}
    return out
