"""Do the drugs act more than independently? The interaction parameter psi against the Bliss null.

A model with an interaction pair (models.py, equation 5) is fitted to a whole trial twice: with psi fixed at
0 (Bliss independence) and with psi estimated. Reported: psi with its profile-likelihood interval, the
likelihood-ratio test of psi = 0 (chi-square, 1 degree of freedom), and the Loewe combination index (Chou &
Talalay 1984) at the fitted exposures with the interval obtained by mapping psi's interval through it.

Verdict: "synergy" when psi's interval lies above 0, "antagonism" when below 0, "additive" only when an
equivalence ``margin`` is given and the interval lies inside [-margin, margin]; otherwise "not
distinguishable from additive".

Loewe combination index. Each drug of the pair is an Emax model on its own concentration (constant mode:
concentration in EC50 units x = E / (1 - E), Emax 1, n 1). The pair's combined effect is the fraction of
new virions that the pair removes, E_AB = 1 - (1 - E_A')(1 - E_B') with the interaction-shifted effects;
CI = C_A / A_E + C_B / B_E, with A_E the concentration of A alone giving E_AB (infinite when E_AB exceeds
A's maximal effect: that term is then 0; CI is NaN when neither drug alone can reach E_AB). CI < 1 reads as
Loewe synergy. Bliss independence itself gives CI < 1 for Hill coefficients of 1, so CI and psi answer
different questions; psi is the test, CI the familiar summary. The result therefore carries ``ci_bliss``,
the index of the same exposures at psi = 0: a CI below 1 means synergy beyond Bliss only where it is below
``ci_bliss`` too, and psi's interval says whether that difference is more than chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from hcvdyn.estimate.design import Estimate, FitDesign, design_of
from hcvdyn.estimate.fit import TrialFit, fit_trial
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.kinetics import shift_odds

__all__ = ["SynergyResult", "estimate_synergy", "loewe_index", "pair_terms", "verdict", "interaction_surface", "both_drugs_arm", "nested_fit"]

NESTING_TOL = 1e-6  # -2 log L units: the psi-free fit may not end above the psi = 0 fit it nests


@dataclass(frozen=True)
class SynergyResult:
    psi: float
    psi_interval: tuple[float, float]
    level: float
    lrt: float  # -2 log L(null) - (-2 log L(full))
    p_value: float
    combination_index: float
    ci_interval: tuple[float, float]
    verdict: str
    arm: str
    full: TrialFit  # or PopulationFit (hcvdyn.analysis.population_synergy): both give objective, success, message
    null: TrialFit
    notes: Mapping[str, str] = field(default_factory=dict)
    ci_bliss: float = math.nan  # the Loewe index of the same exposures with psi = 0 (pure Bliss independence)

    def to_dict(self) -> dict:
        return {
            "psi": self.psi, "psi_interval": list(self.psi_interval), "level": self.level, "lrt": self.lrt,
            "p_value": self.p_value, "combination_index": self.combination_index, "ci_interval": list(self.ci_interval),
            "combination_index_bliss": self.ci_bliss,
            "verdict": self.verdict, "arm": self.arm, "objective_full": self.full.objective,
            "objective_null": self.null.objective, "converged": bool(self.full.success and self.null.success),
        }


def verdict(lo: float, hi: float, margin: float | None = None) -> str:
    """Verdict from psi's interval (see module docstring)."""
    if lo > 0:
        return "synergy"
    if hi < 0:
        return "antagonism"
    if margin is not None and -margin <= lo and hi <= margin:
        return "additive"
    return "not distinguishable from additive"


def _value(values: Mapping[str, float], name: str, arm: str, fallback: Mapping[str, float]) -> float:
    for key in (Estimate(name, "per_arm", arm).label, Estimate(name, "shared").label):
        if key in values:
            return float(values[key])
    return float(fallback[name])


def pair_terms(model: HCVModel, values: Mapping[str, float], arm: str, fixed: Mapping[str, float], conc: Mapping[str, float] | None):
    """Per drug of the pair: (concentration, EC50, n, Emax, primary effect name) for the Loewe index."""
    out = []
    for name in model.interaction:
        drug = next(d for d, _ in model.drug_objs if d.name == name)
        mode = dict(model.drugs)[name]
        if mode == "constant":
            e = _value(values, drug.effects[0], arm, fixed)
            out.append((e / (1.0 - e) if e < 1 else math.inf, 1.0, 1.0, 1.0))
        else:
            if conc is None or name not in conc:
                raise ValueError(f"Loewe index: the average concentration of {name} is needed (PK-mode drug)")
            out.append((
                float(conc[name]), _value(values, f"{drug.prefix}_ec50", arm, fixed),
                _value(values, f"{drug.prefix}_n", arm, fixed), _value(values, drug.effect_max[0][1], arm, fixed),
            ))
    return out


def loewe_index(model: HCVModel, values: Mapping[str, float], arm: str, fixed: Mapping[str, float], psi: float, conc=None) -> float:
    """Combination index of the interaction pair at the fitted exposures of ``arm`` (module docstring)."""
    terms = pair_terms(model, values, arm, fixed, conc)
    occ = [(c / ec) ** n / (1.0 + (c / ec) ** n) if c > 0 else 0.0 for c, ec, n, _ in terms]
    eff = []
    for k, (c, ec, n, emax) in enumerate(terms):
        e_shift = math.exp(n * psi * occ[1 - k])
        eff.append(emax * float(shift_odds(occ[k], e_shift)))
    e_ab = 1.0 - (1.0 - eff[0]) * (1.0 - eff[1])
    total, reachable = 0.0, False
    for (c, ec, n, emax) in terms:
        if e_ab < emax:
            reachable = True
            total += c / (ec * (e_ab / (emax - e_ab)) ** (1.0 / n))
    return total if reachable and e_ab > 0 else math.nan


def estimate_synergy(
    model: HCVModel,
    dataset,
    regimens_by_arm: Mapping[str, Sequence],
    design: FitDesign | None = None,
    *,
    arm: str | None = None,
    level: float = 0.95,
    margin: float | None = None,
    concentrations: Mapping[str, float] | None = None,
    null: TrialFit | None = None,
    **design_fields,
) -> SynergyResult:
    """Fit the trial with psi = 0 and with psi free; test, interval, Loewe index and verdict.

    design: the fit's free parameters and options (:class:`FitDesign`, or its fields as keyword arguments, as
    :func:`hcvdyn.estimate.fit.fit_trial`); psi must not be among the free ones, nor non-zero in ``params``.
    arm: the arm whose fitted exposures the Loewe index uses (default: the first arm of the data that
    receives both drugs of the pair, judged by its regimens or, in constant mode, by the effects estimated
    in it). concentrations: average concentrations of PK-mode pair drugs in that arm (drug -> conc_unit).
    null: the same fit with psi = 0 when it is already done (its objective is reused).
    """
    if model.interaction is None:
        raise ValueError(f"model {model.name} has no interaction pair; use one of the models with psi (docs/models.md)")
    design = design_of(design, design_fields, "estimate_synergy")
    if "psi" in design.free:
        raise ValueError("estimate_synergy: leave psi out of individual/shared/per_arm; it is estimated here")
    params = dict(design.params)
    if params.get("psi", 0.0) != 0.0:
        raise ValueError(f"estimate_synergy: psi = {params['psi']} in params; the null fit needs psi = 0")
    if null is None:
        null = fit_trial(model, dataset, regimens_by_arm, replace(design, params={**params, "psi": 0.0}))
    full_design = replace(design, shared={**design.shared, "psi": None}, params={**params, "psi": 0.0},  # psi: one value in every arm
                          sigma=null.sigma if design.estimate_sigma else design.sigma)
    # nested fits: the full fit starts at the null optimum (every patient's values too), where its objective is the
    # null's, so it can only go down; should it end above (sigma re-estimated, a failed step), it is refitted from
    # psi moved off 0 and the best kept, and a remaining violation is reported
    full, notes = nested_fit(lambda psi0: fit_trial(model, dataset, regimens_by_arm, full_design, profile=["psi"], level=level,
                                                    profile_points=0, start={**null.values, "psi": psi0}), null.objective)
    lrt = max(0.0, null.objective - full.objective)
    from scipy.stats import chi2

    p_value = float(chi2.sf(lrt, 1))
    psi = full.values["psi"]
    lo, hi = full.profile["psi"]
    fixed = model.defaults(**params)
    if arm is None:
        arm = both_drugs_arm(model, dataset, regimens_by_arm, design)
    ci = loewe_index(model, full.values, arm, fixed, psi, concentrations)
    ends = [loewe_index(model, full.values, arm, fixed, x, concentrations) if math.isfinite(x) else math.nan for x in (lo, hi)]
    ci_lo, ci_hi = (min(ends), max(ends)) if all(math.isfinite(e) for e in ends) else (math.nan, math.nan)
    if not (full.success and null.success):
        notes["convergence"] = f"full: {full.message}; null: {null.message}"
    ci_bliss = loewe_index(model, full.values, arm, fixed, 0.0, concentrations)
    return SynergyResult(psi, (lo, hi), level, lrt, p_value, ci, (ci_lo, ci_hi), verdict(lo, hi, margin), arm, full, null, notes, ci_bliss)


def nested_fit(fit_from: Callable[[float], object], null_objective: float):
    """(psi-free fit, notes): ``fit_from(psi0)`` fits with psi free from the null fit's optimum and psi at psi0.
    From psi0 = 0 the objective can only go down; should it end above the null's, the fit is repeated from
    psi0 = +-0.5 and the best kept, and a remaining violation is noted (the LRT is then 0)."""
    notes, full = {}, None
    for psi0 in (0.0, 0.5, -0.5):
        cand = fit_from(psi0)
        if full is None or cand.objective < full.objective:
            full = cand
        if full.objective <= null_objective + NESTING_TOL:
            break
    if full.objective > null_objective + NESTING_TOL:
        notes["nesting"] = (f"the psi-free fit's -2 log L {full.objective:.4f} exceeds the psi = 0 fit's {null_objective:.4f} "
                            "from three starts; the LRT is set to 0")
    return full, notes


def both_drugs_arm(model, dataset, regimens_by_arm, design: FitDesign) -> str:
    """The first arm of the data that receives both drugs of the interaction pair (by its regimens, or in constant
    mode by the drug effects estimated in it); ValueError if none does."""
    arms = list(dict.fromkeys(p.arm for p in dataset))
    design = design.check(model, arms)  # every shared and per-arm parameter with its arms named
    a, b = model.interaction
    for arm in arms:
        drugs = {r.drug for r in regimens_by_arm.get(arm, ())}
        if {a, b} <= drugs:
            return arm

    # constant mode: the arm in which both drugs' primary effects are estimated
    def estimated_in(effect):
        return set(design.per_arm.get(effect) or design.shared.get(effect) or ())

    ea = estimated_in(next(d for d, _ in model.drug_objs if d.name == a).effects[0])
    eb = estimated_in(next(d for d, _ in model.drug_objs if d.name == b).effects[0])
    both = [x for x in arms if x in ea and x in eb]
    if not both:
        raise ValueError(f"no arm receives both {a} and {b}; psi is not identifiable from these data")
    return both[0]


def interaction_surface(model: HCVModel, values: Mapping[str, float], psi: float, n: int = 41):
    """Pair effect E_AB on a grid of the two drugs' concentrations in EC50 units (0.01-100), at psi and at 0.

    Returns (x grid, E at psi (n, n), E under Bliss (n, n)); rows: drug A, columns: drug B. For figures.
    """
    x = np.logspace(-2, 2, n)
    xa, xb = np.meshgrid(x, x, indexing="ij")

    def surface(ps):
        ha, hb = xa / (1 + xa), xb / (1 + xb)
        ea = shift_odds(ha, np.exp(ps * hb))
        eb = shift_odds(hb, np.exp(ps * ha))
        return 1 - (1 - ea) * (1 - eb)

    return x, surface(psi), surface(0.0)
