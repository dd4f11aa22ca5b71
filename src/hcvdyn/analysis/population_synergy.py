"""The synergy test of :mod:`hcvdyn.analysis.synergy` on a population (nonlinear mixed-effects) fit.

The population model is fitted with psi = 0 (Bliss independence) and with psi as one more fixed effect, the
second started at the first's optimum so that its objective can only go down. Every fit has psi among its outer
values, held where it is not estimated (``fit_population``'s ``hold``), so that the null, the psi-free fit and the
profile points share one compiled objective. Reported as for the whole-trial
fit (:class:`~hcvdyn.analysis.synergy.SynergyResult`): the likelihood-ratio test of psi = 0 on the OFVs, psi's
profile-likelihood interval, the Loewe index at the typical patient's drug effects and the verdict. The
profile refits the population with psi fixed at each trial value (warm-started from the nearest point already
fitted; no covariance step) and treats the null fit as its point at psi = 0, so the interval covers 0 exactly
when the test does not reject (:func:`~hcvdyn.estimate.profile.bracketed_profile_interval`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Mapping, Sequence

from hcvdyn.analysis.synergy import NESTING_TOL, SynergyResult, both_drugs_arm, loewe_index, nested_fit, verdict
from hcvdyn.estimate.population_design import PopulationDesign
from hcvdyn.estimate.population_fit import PopulationFit, fit_population
from hcvdyn.estimate.profile import bracketed_profile_interval
from hcvdyn.model.hcv import HCVModel

__all__ = ["estimate_population_synergy"]


def estimate_population_synergy(model: HCVModel, dataset, regimens_by_arm: Mapping[str, Sequence], design: PopulationDesign, *,
                                arm: str | None = None, level: float = 0.95, margin: float | None = None,
                                concentrations: Mapping[str, float] | None = None, null: PopulationFit | None = None) -> SynergyResult:
    """Population fits with psi = 0 and with psi free; test, profile interval, Loewe index and verdict.

    design: the population model (psi must not be free in ``design.fit``, nor non-zero in its params; its bounds,
    if ``design.fit.bounds`` gives them, bound the psi-free fit and the profile). null: the psi = 0 fit when it is
    already done. Other arguments as :func:`~hcvdyn.analysis.synergy.estimate_synergy`.
    """
    if model.interaction is None:
        raise ValueError(f"model {model.name} has no interaction pair; use one of the models with psi (docs/models.md)")
    fd = design.fit
    if "psi" in fd.free:
        raise ValueError("estimate_population_synergy: leave psi out of individual/shared/per_arm; it is estimated here")
    params = dict(fd.params)
    if params.get("psi", 0.0) != 0.0:
        raise ValueError(f"estimate_population_synergy: psi = {params['psi']} in params; the null fit needs psi = 0")
    p = model.params["psi"]
    psi_bounds = fd.bounds.get("psi", (p.lower, p.upper))  # psi's [bounds] apply where it is free
    fixed_psi = replace(fd, bounds={k: v for k, v in fd.bounds.items() if k != "psi"})
    free_psi = replace(fd, shared={**fd.shared, "psi": None}, params={**params, "psi": 0.0})
    if not psi_bounds[0] <= 0.0 <= psi_bounds[1]:
        raise ValueError(f"estimate_population_synergy: psi's bounds {psi_bounds} exclude 0, the null hypothesis")
    if null is None:  # only its OFV and optimum are used
        null = fit_population(model, dataset, regimens_by_arm, replace(design, fit=free_psi), covariance=False, hold={"psi": 0.0})
    full_design = replace(design, fit=replace(free_psi, n_starts=1))
    full, notes = nested_fit(lambda psi0: fit_population(model, dataset, regimens_by_arm, full_design, start={**null.x, "psi": psi0},
                                                        start_eta=null.eta),
                             null.ofv)
    lrt = max(0.0, null.ofv - full.ofv)
    from scipy.stats import chi2

    psi = full.x["psi"]
    fitted = {0.0: null, psi: full}
    below = []

    def delta_at(t: float) -> float:
        nearest = fitted[min(fitted, key=lambda s: abs(s - t))]
        fit = fit_population(model, dataset, regimens_by_arm, full_design, start=nearest.x, start_eta=nearest.eta,
                             covariance=False, hold={"psi": t})
        fitted[t] = fit
        if fit.ofv < full.ofv - NESTING_TOL:
            below.append(t)
        return max(0.0, fit.ofv - full.ofv)

    lo, hi = bracketed_profile_interval(delta_at, psi, full.stderr["psi"], psi_bounds, level,
                                        known=[(0.0, max(0.0, null.ofv - full.ofv))] if psi != 0.0 else [])
    if below:
        notes["profile"] = f"the profile at psi = {below} ends below the psi-free fit's OFV: the psi-free fit is not the global optimum"
    if not (full.success and null.success):
        notes["convergence"] = f"full: {full.message}; null: {null.message}"
    values = {v.label: full.natural(v.label) for v in full.values if v.kind in ("shared", "per_arm")}
    fixed = model.defaults(**params)
    arm = arm or both_drugs_arm(model, dataset, regimens_by_arm, fixed_psi)
    ci = loewe_index(model, values, arm, fixed, psi, concentrations)
    ends = [loewe_index(model, values, arm, fixed, x, concentrations) if math.isfinite(x) else math.nan for x in (lo, hi)]
    ci_lo, ci_hi = (min(ends), max(ends)) if all(math.isfinite(e) for e in ends) else (math.nan, math.nan)
    return SynergyResult(psi, (lo, hi), level, lrt, float(chi2.sf(lrt, 1)), ci, (ci_lo, ci_hi), verdict(lo, hi, margin), arm,
                         full, null, notes, loewe_index(model, values, arm, fixed, 0.0, concentrations))
