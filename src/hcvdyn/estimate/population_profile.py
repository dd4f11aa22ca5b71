"""Profile-likelihood intervals of a population fit's outer values, the between-patient SDs (omega) above all.

The Wald interval of an SD estimated from a few dozen patients is too short: the likelihood is flat above the
estimate and steep below it (docs/population.md, "Recovery over replicate trials"). The profile interval is
{theta: OFV(theta) - OFV_min < z^2}, with OFV(theta) the fit with that value held at theta and every other
outer value refitted (:func:`~hcvdyn.estimate.population_fit.fit_population`, ``hold``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from hcvdyn.estimate.population_fit import PopulationFit, fit_population
from hcvdyn.estimate.profile import bracketed_profile_interval

__all__ = ["PopulationProfile", "population_profile_interval"]

POSITIVE = ("omega", "sigma")  # kinds profiled on the log scale
LOGIT_SPAN = 12.0  # a logit-scale value is profiled within +-12 (a fraction within 6e-6 of 0 or 1): beyond, the
# likelihood is flat and the conditional modes can fail (celgosivir's phi at 1 - 1e-11 did)


@dataclass(frozen=True)
class PopulationProfile:
    """A profile interval of the outer value ``label``: ``estimate`` and ``interval`` in the value's unit (a drug
    effect as a fraction, not its logit), the level, and the profile's points (value, OFV - OFV_min) in the order
    they were fitted."""

    label: str
    estimate: float
    interval: tuple[float, float]
    level: float
    points: tuple[tuple[float, float], ...]
    notes: str = ""


def population_profile_interval(model, dataset, regimens_by_arm: Mapping[str, Sequence], design, fit: PopulationFit, label: str,
                                level: float = 0.95, xtol: float = 0.01) -> PopulationProfile:
    """Profile-likelihood interval of ``fit.x[label]``: omega and sigma on the log scale (``xtol`` there, a relative
    tolerance), any other outer value on its own scale (``xtol`` times its SE there; a logit-scale one within
    +-``LOGIT_SPAN``, where a side that has not crossed ends, open). Each point is a fit from the nearest point fitted so far
    (its values and conditional modes) with one start. A point whose OFV falls below the fit's is noted: the fit
    was not the global optimum."""
    value = next((v for v in fit.values if v.label == label), None)
    if value is None:
        raise ValueError(f"population_profile_interval: {label!r} is not an outer value of the fit; known: {', '.join(fit.x)}")
    log = value.kind in POSITIVE
    to_t, from_t = (math.log, math.exp) if log else (float, float)
    t_hat = to_t(fit.x[label])
    se = fit.stderr.get(label, math.nan) / (fit.x[label] if log else 1.0)
    bounds = (to_t(max(value.lower, 1e-12)) if log else value.lower, to_t(value.upper))
    if value.scale == "logit":
        bounds = (max(bounds[0], -LOGIT_SPAN), min(bounds[1], LOGIT_SPAN))
        t_hat = min(max(t_hat, bounds[0]), bounds[1])  # an estimate beyond lies on the flat part: its OFV stands there
    one_start = replace(design, fit=replace(design.fit, n_starts=1))
    fitted = {t_hat: fit}
    below = []

    def delta_at(t: float) -> float:
        nearest = fitted[min(fitted, key=lambda s: abs(s - t))]
        f = fit_population(model, dataset, regimens_by_arm, one_start, start=nearest.x, start_eta=nearest.eta, hold={label: from_t(t)})
        fitted[t] = f
        if f.ofv < fit.ofv - 1e-6:
            below.append(t)
        return max(0.0, f.ofv - fit.ofv)

    tol = xtol if log or not (math.isfinite(se) and se > 0) else xtol * se  # a fraction of the SE on its own scale
    lo, hi = bracketed_profile_interval(delta_at, t_hat, se, bounds, level, xtol=tol)
    unit = lambda t: fit.natural(label, from_t(t))  # noqa: E731
    points = tuple((unit(t), max(0.0, f.ofv - fit.ofv)) for t, f in fitted.items() if t != t_hat)
    below = [unit(t) for t in below]
    notes = f"the profile at {label} = {below} lies below the fit's OFV: the fit was not the global optimum" if below else ""
    return PopulationProfile(label, fit.natural(label), (unit(lo), unit(hi)), level, points, notes)
