"""Fitting one patient or a whole trial with lmfit: exact JAX Jacobians, censored samples by the M3 likelihood.

Objective. With residual SD ``sigma`` (log10 IU/mL) fixed, minus twice the log-likelihood is, up to a
constant, the sum of squares of the residual vector

    r_i = (y_i - f_i) / sigma                                       observed sample
    r_i = sqrt(-2 ln Phi((LLOQ_i - f_i) / sigma))                  censored sample (M3, Beal 2001)

where f_i is the model's log10 load and Phi the standard normal CDF. A censored sample predicted far
below its limit costs nothing; one predicted above it costs as an observation would. The residuals
are standardized, so lmfit's covariance is used unscaled (``scale_covar=False``): standard errors
are the inverse Fisher information of the Gauss-Newton approximation.

The residuals and their Jacobian (``jax.jacfwd`` through the solver) are compiled once per
(model, free parameters, options) and array shapes, and reused across patients and starts.
"""


from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from hcvdyn.estimate.data import PatientData
from hcvdyn.estimate.design import Estimate, FitDesign, design_of
from hcvdyn.estimate.likelihood import jacobian_and_residuals_fn, once_per_point, raw_errors, residual_sd_mle
from hcvdyn.estimate.optimize import best_of, check_bounds, draw_start, draw_starts, minimize_least_squares, pad_patients
from hcvdyn.estimate.problem import TrialProblem, build_trial_problem, treatment_ends
from hcvdyn.estimate.profile import profile_curve, profile_grid, profile_interval, wald_interval
from hcvdyn.model.dosing import Regimen, dose_arrays
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import Param, check_values
from hcvdyn.solve.options import SolverOptions

__all__ = [
    "wald_interval",
    "residual_sd_mle",
    "PatientFit",
    "fit_patient",
    "TrialFit",
    "fit_trial",
    "build_trial_problem",
    "TrialProblem",
    "FitDesign",
    "Estimate",
    "profile_interval",
    "profile_curve",
    "profile_grid",
]


@dataclass(frozen=True)
class PatientFit:
    """Result of one patient's fit. ``params`` holds every parameter (fitted and fixed)."""

    patient_id: str
    model: str
    free: tuple[str, ...]
    params: Mapping[str, float]
    stderr: Mapping[str, float]
    correlation: np.ndarray
    objective: float  # -2 log L + const (sum of squared residuals)
    aic: float
    bic: float
    success: bool
    message: str
    n_obs: int
    n_censored: int
    sigma: float
    starts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    start_objectives: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    declared: Mapping[str, Param] = field(default_factory=dict)  # declared row (bounds, scale) of each free parameter

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Wald interval from the standard error, on the parameter's declared scale (:func:`wald_interval`)."""
        return wald_interval(self.params[name], self.stderr[name], level, self.declared.get(name))


def fit_patient(
    model: HCVModel,
    patient: PatientData,
    free: Sequence[str],
    params: Mapping[str, float] | None = None,
    regimens: Sequence[Regimen] = (),
    weight_kg: float = 70.0,
    sigma: float = 0.2,
    n_starts: int = 1,
    seed: int = 0,
    options: SolverOptions = SolverOptions(atol=1e-7),
    bounds: Mapping[str, tuple[float, float]] | None = None,
    max_nfev: int = 400,
) -> PatientFit:
    """Fit the ``free`` parameters of ``model`` to one patient by M3 maximum likelihood (lmfit least_squares).

    params: values of fixed parameters and starting values of free ones (defaults otherwise); the patient's own
    treatment end (``treatment_end_days``), where its data give one, sets t_end.
    regimens: the patient's dosing; default: its dose records (``patient.doses``), if its data file has them.
    sigma: residual SD in log10 IU/mL (default 0.2, Nyberg et al. 2014). n_starts > 1 adds starts drawn
    within the bounds (seeded) and keeps the best; the spread of optima is in ``start_objectives``.
    bounds: per-parameter (lower, upper) narrowing the declared admissible range.
    """
    import lmfit

    where = f"fit of patient {patient.id}"
    free = tuple(free)
    if not free:
        raise ValueError(f"{where}: no free parameters")
    for k in free:
        if k not in model.params:
            check_values(model.params, {k: 0.0}, where=where)
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"{where}: sigma = {sigma} must be a positive number (log10 IU/mL)")
    values = model.defaults(**(params or {}))
    ends = treatment_ends(model, [patient], values.get("t_end", math.inf), free, where)
    if ends is not None:
        values["t_end"] = float(ends[0])  # the patient's data say when its treatment stopped
    bounds = check_bounds(model, free, bounds, values, where)
    model.check_steady_state(values, where=where)
    if patient.n_obs < len(free) or patient.t_days[-1] <= 0:
        raise ValueError(f"{where}: {patient.n_obs} samples (last at day {patient.t_days[-1]:g}) cannot inform {len(free)} free parameters")

    if patient.doses and regimens:
        raise ValueError(f"{where}: the patient has dose records from its data file and regimens were given; use one")
    regimens = tuple(regimens) or tuple(patient.doses)
    jac_and_res = jacobian_and_residuals_fn(model, free, options, False)
    fixed = {k: jnp.float64(v) for k, v in values.items() if k not in free}
    doses = {k: (jnp.asarray(a), jnp.asarray(b)) for k, (a, b) in dose_arrays(regimens, model.pk_drugs, weight_kg).items()}
    n = patient.n_obs
    t, y, cens, lloq, mask = (a[0] for a in pad_patients([patient]))
    data = (jnp.asarray(t), jnp.asarray(y), jnp.asarray(cens), jnp.asarray(lloq), jnp.asarray(mask), jnp.float64(sigma))
    evaluate = once_per_point(lambda pars: [pars[k].value for k in free], lambda theta: jac_and_res(theta, fixed, doses, *data))

    def residual(pars):
        return evaluate(pars)[0][:n].copy()

    def jacobian(pars):
        return evaluate(pars)[1][:n].copy()  # writable copy for lmfit

    starts = draw_starts(model, free, values, max(1, n_starts), seed, bounds)

    def start_pars(row):
        pars = lmfit.Parameters()
        for k, v in zip(free, row):
            lo, hi = bounds.get(k, (model.params[k].lower, model.params[k].upper))
            pars.add(k, value=float(v), min=lo, max=hi)
        return pars

    best, objectives = best_of(residual, jacobian, map(start_pars, starts), max_nfev, where)

    fitted = {**values, **{k: float(best.params[k].value) for k in free}}
    stderr = {k: (float(best.params[k].stderr) if best.params[k].stderr is not None else math.nan) for k in free}
    corr = np.full((len(free), len(free)), np.nan)
    if best.covar is not None:
        d = np.sqrt(np.diag(best.covar))
        corr = best.covar / np.outer(d, d)
    # lmfit reports success when scipy's least_squares met a convergence criterion
    success = bool(best.success) and all(np.isfinite(v) for v in stderr.values())
    message = best.message if success else f"not converged or singular: {best.message}; stderr {stderr}"
    return PatientFit(
        patient_id=patient.id, model=model.name, free=free, params=fitted, stderr=stderr, correlation=corr,
        objective=float(best.chisqr), aic=float(best.chisqr + 2 * len(free)),
        bic=float(best.chisqr + len(free) * math.log(n)), success=success, message=message, n_obs=n,
        n_censored=int(np.sum(patient.censored)), sigma=sigma, starts=starts,
        start_objectives=np.array(objectives), residuals=np.asarray(best.residual), declared={k: model.params[k] for k in free},
    )


@dataclass(frozen=True)
class TrialFit:
    """Result of a whole-trial fit. ``values`` and ``stderr`` are keyed by the lmfit name (:attr:`Estimate.label`:
    ``k`` shared by all, ``k__ARM`` per arm, ``k__ID`` per patient); ``estimates`` says whose each one is."""

    model: str
    values: Mapping[str, float]
    stderr: Mapping[str, float]
    objective: float
    aic: float
    bic: float
    success: bool
    message: str
    n_obs: int
    n_patients: int
    sigma: float
    nfev: int
    patient_params: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    profile: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    covariance: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # of ``values``, in their order
    local_names: tuple[str, ...] = ()  # model parameters that vary between patients or arms
    patient_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # id -> label of each local one
    profile_trace: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)  # (theta, delta -2logL)
    start_objectives: tuple[float, ...] = ()  # -2 log L (+const) reached from each start (inf: that start failed)
    refined: tuple[str, ...] = ()  # patients refitted alone after the joint fit stalled far from their optimum
    sigma_se: float = math.nan  # standard error of ``sigma`` when it was estimated (``estimate_sigma``)
    sigma_estimated: bool = False
    declared: Mapping[str, Param] = field(default_factory=dict)  # declared row (bounds, scale) of each estimated value
    estimates: Mapping[str, Estimate] = field(default_factory=dict)  # label -> whose value it is, for each of ``values``

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Wald interval from the standard error, on the parameter's declared scale (:func:`wald_interval`)."""
        return wald_interval(self.values[name], self.stderr[name], level, self.declared.get(name))


def fit_trial(
    model: HCVModel,
    dataset,
    regimens_by_arm: Mapping[str, Sequence[Regimen]],
    design: FitDesign | None = None,
    *,
    profile: Sequence[str] = (),
    level: float = 0.95,
    profile_points: int = 15,
    start: Mapping[str, float] | None = None,
    **design_fields,
) -> TrialFit:
    """One M3 maximum-likelihood problem for a whole trial.

    regimens_by_arm: each arm's regimens; a patient with dose records in its data (``PatientData.doses``,
        NONMEM dose rows) is dosed by those instead.
    design: the free parameters (individual, shared, per_arm) and options (:class:`FitDesign`); without it,
        the keyword arguments are its fields (``fit_trial(model, data, regs, individual=..., sigma=...)``).
    profile: estimated parameters (labels, e.g. "eps" or "delta__p3") that also get a
    profile-likelihood interval at ``level`` (``TrialFit.profile``), see :func:`profile_interval`; the
    profile is also evaluated at ``profile_points`` values over and around that interval (:func:`profile_grid`,
    :func:`profile_curve`; 0: none), and ``TrialFit.profile_trace`` holds every value evaluated, for figures.
    ``n_starts`` > 1 refits from further starts in which the shared and per-arm values are drawn within their
    bounds (seeded by ``seed``, see :func:`draw_start`; per-patient starts stay at ``params``, where every
    patient has a chronic steady state) and keeps the best; ``TrialFit.start_objectives`` holds each
    start's -2 log L, so a spread shows local optima.
    After each joint fit, patients whose -2 log L exceeds the 99% chi-square quantile of their sample count
    are refitted alone (others fixed) and, if that improves them, the joint fit is repeated from there
    (``TrialFit.refined`` names them; see :meth:`TrialProblem.refine`).
    ``sigma``: the residual SD (log10 IU/mL); with ``estimate_sigma`` its starting value, and the fit alternates
    between the structural parameters at fixed sigma and sigma at fixed predictions (:func:`residual_sd_mle`,
    degrees-of-freedom corrected) until sigma changes by less than 1e-4 relative. ``sigma`` is then that
    estimate (``sigma_se`` its SE), and the SEs and profiles are those at it; ``objective`` is -2 log L with
    sigma at its plain ML value, including the 2 n ln(sigma) term of the n observed samples (-2 log L up to
    terms that depend on nothing estimated, as with sigma fixed), and AIC/BIC count sigma.
    Others are fixed at ``params`` or defaults, which also give the starting values; ``start`` (estimate label ->
    value, e.g. another fit's ``values``) overrides the first start's values of the labels it names. Residuals and
    Jacobian blocks of all patients come from one jitted, vmapped call; the full Jacobian is assembled
    from the per-patient blocks.
    """
    problem = build_trial_problem(model, dataset, regimens_by_arm, design_of(design, design_fields, "fit_trial"))
    design = problem.design
    sigma, max_nfev = design.sigma, design.max_nfev
    pars = problem.parameters()
    for n, v in (start or {}).items():
        if n in pars and pars[n].vary:
            pars[n].set(value=float(np.clip(v, pars[n].min, pars[n].max)))
    rng = np.random.default_rng(design.seed)
    refined: set[str] = set()

    def starts():
        yield pars.copy()
        for _ in range(design.n_starts - 1):
            start = pars.copy()
            for e, n in zip(problem.estimates, problem.labels):
                if e.kind != "individual" and start[n].vary:
                    start[n].set(value=draw_start(model.params[e.name], pars[n].value, start[n].min, start[n].max, rng))
            yield start

    def polish(cand):
        for _ in range(3):  # patients stalled far from their own optimum: refit them alone, then the trial again
            polished, improved = problem.refine(cand.params, cand.residual)
            if not improved:
                break
            refined.update(improved)
            again = minimize_least_squares(problem.residual, problem.jacobian, polished, max_nfev)
            if again.chisqr >= cand.chisqr:
                break
            cand = again
        return cand

    out, objectives = best_of(problem.residual, problem.jacobian, starts(), max_nfev, "fit_trial", polish)
    sigma_se, sigma_note, m2ll = math.nan, "", float(out.chisqr)
    if design.estimate_sigma:
        n_par, sigma_note = len(out.var_names), "; residual SD not converged in 20 rounds"
        for _ in range(20):
            new_sigma, sigma_se, m2ll = residual_sd_mle(*raw_errors(out.residual, problem.censored, sigma), n_par=n_par)
            if abs(new_sigma - sigma) <= 1e-4 * sigma:
                sigma_note = ""
                break
            sigma = new_sigma
            problem = problem.with_sigma(sigma)  # same shapes: nothing is compiled again
            pars = problem.parameters()
            for n in out.var_names:
                pars[n].set(value=out.params[n].value)
            out = polish(minimize_least_squares(problem.residual, problem.jacobian, pars, max_nfev))
    residual, jacobian = problem.residual, problem.jacobian
    vals = {n: float(out.params[n].value) for n in out.params if out.params[n].vary}
    cov = np.full((len(vals), len(vals)), np.nan)
    if out.covar is not None and list(out.var_names) == list(vals):
        cov = np.array(out.covar, dtype=float)
    unknown = [n for n in profile if n not in vals]
    if unknown:
        raise ValueError(f"fit_trial: cannot profile {unknown}: not estimated (estimated: {', '.join(vals)})")
    se = {n: (float(out.params[n].stderr) if out.params[n].stderr is not None else math.nan) for n in vals}
    success = bool(out.success) and all(np.isfinite(v) for v in se.values())
    # an exactly confounded combination can still give a finite (meaningless) covariance in floating point
    j = jacobian(out.params)
    j = j / np.maximum(np.linalg.norm(j, axis=0), 1e-300)
    _, sv, vt = np.linalg.svd(j, full_matrices=False)
    if success and sv[-1] < 1e-7 * sv[0]:
        combo = ", ".join(list(vals)[k] for k in np.argsort(-np.abs(vt[-1]))[:2])
        success, out.message = False, f"singular: {combo} not identifiable (scaled Jacobian condition number {sv[0] / sv[-1]:.1e})"
    if success and sigma_note:
        success = False
    traces: dict[str, list] = {}
    intervals = {n: profile_interval(residual, jacobian, out, n, level, max_nfev, trace=traces.setdefault(n, [])) for n in profile}
    if profile_points:
        for n, lims in intervals.items():
            traces[n].append((vals[n], 0.0))  # the estimate itself
            grid = profile_grid(vals[n], lims, (out.params[n].min, out.params[n].max), profile_points, [t for t, _ in traces[n]])
            traces[n] += profile_curve(residual, jacobian, out, n, grid, max_nfev)
    k = len(vals) + int(design.estimate_sigma)
    estimates = {n: problem.by_label[n] for n in vals}
    return TrialFit(
        model=model.name, values=vals, stderr=se, objective=m2ll,
        aic=m2ll + 2 * k, bic=m2ll + k * math.log(problem.n_obs),
        success=success, message=out.message + sigma_note if success else f"not converged or singular: {out.message}{sigma_note}",
        n_obs=problem.n_obs, n_patients=len(dataset), sigma=sigma, nfev=int(out.nfev),
        patient_params=problem.patient_params(out.params),
        profile=intervals,
        covariance=cov, local_names=problem.names, patient_columns=problem.patient_columns,
        profile_trace={n: (tuple(t for t, _ in sorted(tr)), tuple(d for _, d in sorted(tr))) for n, tr in traces.items()},
        start_objectives=tuple(objectives), refined=tuple(sorted(refined)), sigma_se=sigma_se,
        sigma_estimated=bool(design.estimate_sigma), declared={n: model.params[e.name] for n, e in estimates.items()}, estimates=estimates,
    )
