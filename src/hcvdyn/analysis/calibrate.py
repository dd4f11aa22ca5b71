"""Calibration of the virtual non-responder population to the Phase II top line, by likelihood (docs/calibration.md).

The top line is summary data, so the likelihood is that of the summaries, computed from a virtual arm of the
same design (week-12 sample with assay error, censoring at the limit, completers only):

* mean week-12 log10 drop of an arm with n completers:  ybar ~ N(m, s^2 / n), with m and s the virtual arm's
  mean and SD of the observed drops;
* EVR count: k ~ Binomial(n, p), with p the virtual arm's EVR fraction among completers.

-2 log L sums these terms over the arms used. Knobs are typical values of the parameter set, varied on their
declared scale (:attr:`hcvdyn.model.parameters.Param.scale`: log for rates and potencies, logit for
fractions). Every evaluation uses common random numbers (the same virtual patients), and the EVR step is
smoothed by a logistic ramp of 0.05 log10 while optimising, so the objective is smooth in the knobs.

    hcvdyn calibrate                  # fit the bundled mechanism, profiles, Laplace covariance
    hcvdyn calibrate --compare        # the mechanism comparison table (docs/calibration.md)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from hcvdyn.model.parameters import from_scale, to_scale
from hcvdyn.model.trial_design import ArmTarget
from hcvdyn.solve.grid import DEFAULT_STEPS_PER_DAY
from hcvdyn.solve.options import NumericalError

__all__ = [
    "FIRST_PHASE", "DOUBLE_NO_CHANGE", "targets_of", "Mechanism", "MECHANISMS", "ArmStats", "arm_statistics",
    "neg2_log_likelihood", "Calibration", "calibrate", "profile", "laplace_covariance", "with_values", "at_bound", "bound_profile",
    "interior_profile", "profile_limits",
    "compare_mechanisms", "MechanismRow", "to_scale", "from_scale",
]


FIRST_PHASE = ArmTarget(
    "control", 14, None, None,
    "Scott et al. 2011, J Infect Dis 204:419-425 (PMC3132139) as a literature anchor of interferon's first phase: "
    "mean 0-48 h decline 0.7 log10 under pegIFN + ribavirin in the 14 patients with the unfavourable IL28B "
    "genotypes (C/T, T/T), who make up most prior non-responders; standard error 0.15 log10 assumed (SD 0.55)",
    day2_mean=0.7, day2_se=0.15,
)
DOUBLE_NO_CHANGE = ArmTarget(
    "double", 8, 0.4, None,
    "the release says only 'no meaningful change versus control' (8 completers): read as a mean drop equal to "
    "the control arm's 0.4 log10; its EVR count is not released and is left out",
)


@dataclass(frozen=True)
class Mechanism:
    """A celgosivir mechanism to calibrate: parameter values it fixes and the knobs it frees."""

    name: str
    description: str
    knobs: tuple[str, ...]
    fixed: Mapping[str, float] = field(default_factory=dict)


IFN_RBV_KNOBS = ("delta",)
MECHANISMS = {
    m.name: m
    for m in (
        Mechanism("infectivity", "non-infectious fraction phi only (phi_max 1; Bliss)", IFN_RBV_KNOBS + ("cel_ec50",),
                  {"cel_phi_max": 1.0, "cel_sigma_max": 0.0, "psi": 0.0}),
        Mechanism("secretion", "secretion block sigma only (sigma_max 1; Bliss)", IFN_RBV_KNOBS + ("cel_ec50",),
                  {"cel_phi_max": 0.0, "cel_sigma_max": 1.0, "psi": 0.0}),
        Mechanism("both", "phi (phi_max 1) and a partial secretion block sigma_max (Bliss)", IFN_RBV_KNOBS + ("cel_ec50", "cel_sigma_max"),
                  {"cel_phi_max": 1.0, "psi": 0.0}),
        Mechanism("infectivity_interaction", "phi only, with a ribavirin-celgosivir interaction psi (GPDI)",
                  IFN_RBV_KNOBS + ("cel_ec50", "psi"), {"cel_phi_max": 1.0, "cel_sigma_max": 0.0}),
    )
}


def with_values(pop, values: Mapping[str, float]):
    """The population with typical values replaced (and between-patient SDs for keys ``omega_NAME``)."""
    values = dict(values)
    omega = dict(pop.omega)
    for k in [k for k in values if k.startswith("omega_")]:
        name = k[len("omega_"):]
        if name not in omega:
            raise ValueError(f"{k}: the population has no variability on {name!r}")
        omega[name] = float(values.pop(k))
    ps = pop.parameter_set
    ps = dataclasses.replace(ps, values={**ps.values, **{k: float(v) for k, v in values.items()}})
    return dataclasses.replace(pop, parameter_set=ps, omega=omega)


@dataclass(frozen=True)
class ArmStats:
    """Week-12 summaries of a virtual arm among completers: mean and SD of the observed drop, EVR fraction."""

    mean: float
    sd: float
    p_evr: float
    n: int
    day2: float = math.nan  # mean noise-free decline at day 2


def arm_statistics(pop, spec, values, arms: Sequence[str], n: int, seed: int, smooth: float = 0.0, steps_per_day: int = DEFAULT_STEPS_PER_DAY) -> dict[str, ArmStats]:
    """ArmStats per arm of a virtual trial with typical values ``values`` (common random numbers via ``seed``).

    smooth > 0 counts EVR with a logistic ramp of that width (log10) around the threshold instead of a step.
    """
    from hcvdyn.analysis.virtual_trial import run_virtual_trial

    vt = run_virtual_trial(with_values(pop, values), spec, n, seed, arms={a: spec.arms[a] for a in arms},
                           n_boot=0, steps_per_day=steps_per_day, days=int(round(7 * 12)), n_draws=0)
    out = {}
    for a, r in vt.arms.items():
        seen = np.isfinite(r.drop)
        d = r.drop[seen]
        if smooth > 0:
            ramp = 1.0 / (1.0 + np.exp(-(d - vt.definitions.evr_drop_log10) / smooth))
            p = float(np.mean(np.maximum(ramp, r.cevr[seen])))
        else:
            p = float(np.mean(r.evr[seen]))
        out[a] = ArmStats(float(d.mean()), float(d.std(ddof=1)), p, int(d.size), float(r.mean_drop_daily[2]))
    return out


def neg2_log_likelihood(stats: Mapping[str, ArmStats], targets: Sequence[ArmTarget]) -> dict[str, float]:
    """-2 log L of the reported summaries per arm (keys ``ARM.mean``, ``ARM.evr``) and their ``total``."""
    from scipy.stats import binom

    terms = {}
    for t in targets:
        s = stats[t.arm]
        if t.mean_drop is not None:
            se = s.sd / math.sqrt(t.n)
            terms[f"{t.arm}.mean"] = ((t.mean_drop - s.mean) / se) ** 2 + 2 * math.log(se) + math.log(2 * math.pi)
        if t.day2_mean is not None:
            terms[f"{t.arm}.day2"] = ((t.day2_mean - s.day2) / t.day2_se) ** 2 + 2 * math.log(t.day2_se) + math.log(2 * math.pi)
        if t.evr_count is not None:
            p = min(max(s.p_evr, 1e-6), 1 - 1e-6)
            terms[f"{t.arm}.evr"] = -2 * float(binom.logpmf(t.evr_count, t.n, p))
    terms["total"] = float(sum(terms.values()))
    return terms


def _scales(model, names):
    return [model.params[k].scale for k in names]


@dataclass(frozen=True)
class Calibration:
    """A calibrated mechanism: knob values, -2 log L terms at the optimum (EVR counted as a step), statistics."""

    mechanism: Mechanism
    values: Mapping[str, float]
    terms: Mapping[str, float]
    stats: Mapping[str, ArmStats]
    n_per_arm: int
    seed: int
    nfev: int
    converged: bool

    @property
    def neg2ll(self) -> float:
        return self.terms["total"]


def _objective(pop, spec, mech: Mechanism, names, scales, targets, n, seed, smooth, fixed_extra=None):
    arms = [t.arm for t in targets]

    def f(x):
        vals = {**mech.fixed, **(fixed_extra or {}), **dict(zip(names, from_scale(x, scales)))}
        try:
            st = arm_statistics(pop, spec, vals, arms, n, seed, smooth=smooth)
        except ValueError:  # a knob left the admissible region of the steady state
            return 1e6
        return neg2_log_likelihood(st, targets)["total"]

    return f


def targets_of(spec, first_phase: bool = False) -> tuple[ArmTarget, ...]:
    """The calibration targets: the trial's reported arms with a mean or an EVR count.

    first_phase=True adds :data:`FIRST_PHASE`, a literature anchor from treatment-naive patients; by default
    it is a check of the result (hcvdyn.analysis.plausibility), not a term of the likelihood, since prior
    non-responders are selected for a weak interferon response (docs/calibration.md).
    """
    reported = tuple(t for t in spec.reported.values() if t.mean_drop is not None or t.evr_count is not None)
    if not reported:
        raise ValueError(f"trial {spec.name}: no [reported] arm with mean_drop or evr_count to calibrate against")
    return reported + ((FIRST_PHASE,) if first_phase else ())


def calibrate(pop, spec, mech: Mechanism, start: Mapping[str, float] | None = None, targets=None,
              n: int = 600, seed: int = 7, smooth: float = 0.05, maxfev: int = 200, fixed_extra=None) -> Calibration:
    """Maximum likelihood on the mechanism's knobs (Nelder-Mead on their declared scales, common random numbers)."""
    from scipy.optimize import minimize

    targets = targets_of(spec) if targets is None else tuple(targets)
    typical = with_values(pop, {**mech.fixed, **(fixed_extra or {})}).parameter_set.params()
    names = [k for k in mech.knobs if k not in (fixed_extra or {})]
    start = {k: typical[k] for k in names} | dict(start or {})
    scales = _scales(pop.model, names)
    f = _objective(pop, spec, mech, names, scales, targets, n, seed, smooth, fixed_extra)
    x0 = np.asarray(to_scale([start[k] for k in names], scales))
    res = minimize(f, x0, method="Nelder-Mead", options={"maxfev": maxfev, "xatol": 0.01, "fatol": 0.02, "initial_simplex": x0 + np.vstack([np.zeros(len(x0)), 0.4 * np.eye(len(x0))])})
    values = {**mech.fixed, **(fixed_extra or {}), **dict(zip(names, from_scale(res.x, scales)))}
    st = arm_statistics(pop, spec, values, [t.arm for t in targets], n, seed)
    return Calibration(mech, values, neg2_log_likelihood(st, targets), st, n, seed, int(res.nfev), bool(res.success))


def profile(pop, spec, cal: Calibration, knob: str, grid: Sequence[float], targets=None, maxfev: int = 80) -> list[tuple[float, float]]:
    """(value, -2 log L with the other knobs re-optimised) along ``grid`` (smoothed EVR, as in the fit)."""
    targets = targets_of(spec) if targets is None else tuple(targets)
    out = []
    start = {k: cal.values[k] for k in cal.mechanism.knobs if k != knob}
    for v in grid:
        c = calibrate(pop, spec, cal.mechanism, start, targets, cal.n_per_arm, cal.seed, maxfev=maxfev, fixed_extra={knob: float(v)})
        start = {k: c.values[k] for k in start}
        out.append((float(v), c.neg2ll))
    return out


def at_bound(model, knob: str, value: float, rel: float = 2e-3) -> str | None:
    """"lower" or "upper" when ``value`` sits at that bound of the knob's admissible range (within ``rel`` of the
    range on the knob's declared scale), else None."""
    p = model.params[knob]
    lo, hi, x = to_scale([p.lower, p.upper, value], [p.scale] * 3)
    if x - lo <= rel * (hi - lo):
        return "lower"
    if hi - x <= rel * (hi - lo):
        return "upper"
    return None


def laplace_covariance(pop, spec, cal: Calibration, targets=None, h: float = 0.15, smooth: float = 0.05) -> tuple[list[str], np.ndarray]:
    """(knob names, covariance of the knobs on their declared scales) = 2 H^-1, H the central-difference Hessian of -2 log L.

    Knobs at a bound of their range are left out (a central difference would leave the range, where the objective
    is a penalty, and report a spurious curvature): profile them with :func:`bound_profile`.
    """
    targets = targets_of(spec) if targets is None else tuple(targets)
    fixed = {k: cal.values[k] for k in cal.mechanism.knobs if at_bound(pop.model, k, cal.values[k])}
    names = [k for k in cal.mechanism.knobs if k not in fixed]
    scales = _scales(pop.model, names)
    f = _objective(pop, spec, cal.mechanism, names, scales, targets, cal.n_per_arm, cal.seed, smooth, fixed)
    x0 = np.asarray(to_scale([cal.values[k] for k in names], scales))
    k = len(x0)
    f0 = f(x0)
    hess = np.zeros((k, k))
    e = np.eye(k) * h
    fp = [f(x0 + e[i]) for i in range(k)]
    fm = [f(x0 - e[i]) for i in range(k)]
    for i in range(k):
        hess[i, i] = (fp[i] - 2 * f0 + fm[i]) / h**2
        for j in range(i):
            fpp, fmm = f(x0 + e[i] + e[j]), f(x0 - e[i] - e[j])
            hess[i, j] = hess[j, i] = (fpp - fp[i] - fp[j] + 2 * f0 - fm[i] - fm[j] + fmm) / (2 * h**2)
    w, v = np.linalg.eigh(hess)
    if k and np.min(w) <= 0:
        raise NumericalError(f"laplace_covariance: the Hessian of -2 log L is not positive definite (eigenvalues {np.round(w, 3)}); the knobs {names} are not all identified; fix one, or use --no-uncertainty")
    return names, 2.0 * (v / w) @ v.T if k else np.zeros((0, 0))


def bound_profile(pop, spec, cal: Calibration, knob: str, steps: Sequence[float] = (0.5, 1, 2, 3, 4, 6, 8, 9, 10, 11), targets=None,
                  maxfev: int = 80, level_chi2: float = 3.841) -> list[tuple[float, float]]:
    """Profile of a knob at a bound of its range: (value, -2 log L) at ``steps`` into the range on its declared scale
    (for a log-scale knob, factors e^0.5 ... e^11 from the bound), the optimum first; stops at the first point above
    the optimum by ``level_chi2``. The one-sided interval runs from the bound to where the profile crosses it."""
    side = at_bound(pop.model, knob, cal.values[knob])
    if side is None:
        raise ValueError(f"bound_profile: {knob} = {cal.values[knob]:.4g} is not at a bound of its range")
    p = pop.model.params[knob]
    x0 = to_scale([cal.values[knob]], [p.scale])[0]
    limit = to_scale([p.upper if side == "lower" else p.lower], [p.scale])[0]
    sign = 1.0 if side == "lower" else -1.0
    grid = [from_scale([x0 + sign * d], [p.scale])[0] for d in steps if sign * (limit - (x0 + sign * d)) > 0]
    trace = [(float(cal.values[knob]), cal.neg2ll)]
    for v in grid:
        trace += profile(pop, spec, cal, knob, [v], targets, maxfev)
        if trace[-1][1] - cal.neg2ll >= level_chi2:
            break
    return trace


def interior_profile(pop, spec, cal: Calibration, knob: str, se: float, steps: Sequence[float] = (1.1, 2.2, 3.3, 4.4, 5.5, 6.6),
                     targets=None, maxfev: int = 80, level_chi2: float = 3.841) -> list[tuple[float, float]]:
    """Profile of a knob inside its range, (value, -2 log L) sorted by value: on each side of the optimum it steps
    ``steps`` x ``se`` on the knob's declared scale (se: its Laplace SE there), warm-started from the previous point,
    until -2 log L has risen by ``level_chi2``, the steps run out, or the range ends (a step beyond it is taken at
    the bound itself, so a side that never crosses ends at the bound). A profile that is flatter than its Laplace
    curvature is followed out to where it does cross, so its interval is not cut at a fixed grid's end."""
    targets = targets_of(spec) if targets is None else tuple(targets)
    p = pop.model.params[knob]
    x0 = to_scale([cal.values[knob]], [p.scale])[0]
    lo, hi = to_scale([p.lower, p.upper], [p.scale] * 2)
    trace = [(float(cal.values[knob]), cal.neg2ll)]
    for sign in (-1.0, 1.0):
        start = {k: cal.values[k] for k in cal.mechanism.knobs if k != knob}
        for d in steps:
            x = x0 + sign * d * se
            edge = not lo < x < hi
            if edge:
                if sign * (x0 - (lo if sign < 0 else hi)) >= 0:  # already at this side's bound
                    break
                x = lo if sign < 0 else hi
            v = float(np.clip(from_scale([x], [p.scale])[0], p.lower, p.upper))
            c = calibrate(pop, spec, cal.mechanism, start, targets, cal.n_per_arm, cal.seed, maxfev=maxfev, fixed_extra={knob: v})
            start = {k: c.values[k] for k in start}
            trace.append((float(v), c.neg2ll))
            if edge or c.neg2ll - cal.neg2ll >= level_chi2:
                break
    return sorted(trace)


def profile_limits(trace: Sequence[tuple[float, float]], best: float, scale: str, level_chi2: float = 3.841) -> tuple[float, float, bool, bool]:
    """(lower, upper, lower crossed, upper crossed): where a profile of -2 log L crosses best + level_chi2 on each side
    of its minimum, interpolated linearly on the knob's declared ``scale``; a side that never crosses gives the
    trace's end there and False."""
    xs = list(to_scale([x for x, _ in trace], [scale] * len(trace)))
    ys = [y - best for _, y in trace]
    i0 = min(range(len(ys)), key=lambda i: ys[i])
    cross = lambda i, j: xs[i] + (level_chi2 - ys[i]) * (xs[j] - xs[i]) / (ys[j] - ys[i])  # noqa: E731
    lo = next((cross(i, i - 1) for i in range(i0, 0, -1) if ys[i - 1] >= level_chi2 > ys[i]), None)
    hi = next((cross(i, i + 1) for i in range(i0, len(ys) - 1) if ys[i + 1] >= level_chi2 > ys[i]), None)
    lo_x, hi_x = from_scale([xs[0] if lo is None else lo, xs[-1] if hi is None else hi], [scale] * 2)
    return float(lo_x), float(hi_x), lo is not None, hi is not None


START = {"delta": 0.045, "ifn_emax_late": 0.2, "cel_ec50": 0.2, "cel_sigma_max": 0.3, "psi": 1.0}


@dataclass(frozen=True)
class MechanismRow:
    """One line of the mechanism comparison: fit on the calibration targets, then the double arm as a test."""

    calibration: Calibration
    double: ArmStats
    neg2ll_double: float

    @property
    def n_knobs(self) -> int:
        return len(self.calibration.mechanism.knobs)

    @property
    def aic(self) -> float:
        return self.calibration.neg2ll + 2 * self.n_knobs

    def row(self) -> dict:
        c = self.calibration
        r = {"mechanism": c.mechanism.name, "knobs": self.n_knobs, "neg2ll_calibration": round(c.neg2ll, 2), "aic": round(self.aic, 2),
             "neg2ll_double": round(self.neg2ll_double, 2), "neg2ll_all": round(c.neg2ll + self.neg2ll_double, 2),
             "double_mean_drop": round(self.double.mean, 3)}
        for a, s in c.stats.items():
            r[f"{a}_mean_drop"] = round(s.mean, 3)
            r[f"{a}_pct_evr"] = round(100 * s.p_evr, 1)
        r.update({k: round(v, 4) for k, v in c.values.items()})
        return r


def compare_mechanisms(pop, spec, names=tuple(MECHANISMS), n: int = 400, seed: int = 7, maxfev: int = 150, double=DOUBLE_NO_CHANGE, progress=None) -> list[MechanismRow]:
    """Calibrate each mechanism on the trial's reported arms, then score its prediction of the double arm."""
    rows = []
    for name in names:
        mech = MECHANISMS[name]
        cal = calibrate(pop, spec, mech, {k: v for k, v in START.items() if k in mech.knobs}, n=n, seed=seed, maxfev=maxfev)
        st = arm_statistics(pop, spec, cal.values, [double.arm], n, seed)[double.arm]
        rows.append(MechanismRow(cal, st, neg2_log_likelihood({double.arm: st}, [double])["total"]))
        if progress:
            progress(rows[-1])
    return rows
