"""Fitting one patient with lmfit: exact JAX Jacobians, censored samples by the M3 likelihood.

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
from functools import lru_cache
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

from .data import PatientData
from .dosing import Regimen, dose_arrays
from .models import HCVModel
from .parameters import Param, check_values
from .solve import SolverOptions, log10_load

__all__ = ["wald_interval", "m3_residuals", "residual_sd_mle", "PatientFit", "fit_patient", "residual_fn", "TrialFit", "fit_trial", "build_trial_problem", "profile_interval",
           "profile_curve", "profile_grid"]

_TINY = 1e-300


def m3_residuals(pred, y, censored, lloq, sigma):
    """Residual vector whose sum of squares is -2 log L (+ const) of the M3 likelihood (module docstring)."""
    z = (y - pred) / sigma
    zc = (lloq - pred) / sigma
    nll2 = -2.0 * log_ndtr(zc)
    r_cens = jnp.sqrt(jnp.maximum(nll2, _TINY))
    return jnp.where(censored, r_cens, z)


def _raw_errors(resid, censored, sigma):
    """Invert :func:`m3_residuals` at ``sigma``: (y - f of observed samples, LLOQ - f of censored ones)."""
    from scipy.special import ndtri

    resid, censored = np.asarray(resid, float), np.asarray(censored, bool)
    half = 0.5 * resid[censored] ** 2  # -ln Phi(zc)
    # zc = Phi^-1(exp(-half)), from whichever tail keeps its digits
    zc = np.where(half > math.log(2), ndtri(np.exp(-half)), -ndtri(-np.expm1(-np.minimum(half, math.log(2)))))
    return resid[~censored] * sigma, zc * sigma


def residual_sd_mle(errors, margins=(), n_par: int = 0, lower: float = 1e-3, upper: float = 10.0) -> tuple[float, float, float]:
    """Residual SD (log10 IU/mL) maximizing the M3 likelihood with the predictions held: (estimate, standard
    error, -2 log L at the maximum-likelihood SD up to a constant).

    errors: y - f of observed samples; margins: LLOQ - f of censored samples. Minimizes over sigma

        -2 log L(sigma) = sum(errors**2) / sigma**2 + 2 n ln(sigma) - 2 sum(ln Phi(margins / sigma))

    (n observed samples); without censored samples the minimum is sqrt(mean(errors**2)). With ``n_par`` > 0
    estimated structural parameters the estimate and its SE are multiplied by sqrt(n / (n - n_par)), the
    degrees-of-freedom correction of nonlinear least squares (s**2 = RSS / (n - p), Bates & Watts 1988, ch. 2):
    per-patient parameters make the plain ML estimate shrink towards zero (Neyman & Scott 1948). The SE is
    sqrt(2 / d2), d2 the second derivative of -2 log L at the optimum. The -2 log L returned is that of the
    plain ML estimate (the profile likelihood, for likelihood-ratio tests and AIC).
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_ndtr as log_phi

    e, m = np.asarray(errors, float), np.asarray(margins, float)
    n = e.size
    if n <= n_par:
        raise ValueError(f"residual SD: {n} observed samples cannot inform it beside {n_par} estimated parameters")
    ss = float(np.sum(e**2))

    def m2ll(s):
        return ss / s**2 + 2 * n * math.log(s) - 2 * float(np.sum(log_phi(m / s)))

    opt = minimize_scalar(lambda u: m2ll(math.exp(u)), bounds=(math.log(lower), math.log(upper)), method="bounded",
                          options={"xatol": 1e-10})
    s = math.exp(opt.x)
    h = 1e-4 * s
    d2 = (m2ll(s + h) - 2 * m2ll(s) + m2ll(s - h)) / h**2
    factor = math.sqrt(n / (n - n_par))
    return s * factor, (math.sqrt(2 / d2) if d2 > 0 else math.nan) * factor, m2ll(s)


def _patient_residuals(model: HCVModel, names: tuple[str, ...], options: SolverOptions):
    """One patient's M3 residuals (masked samples 0) as a function of theta (values of ``names``), returned
    twice: as the value to differentiate and as the auxiliary output of ``jax.jacfwd(..., has_aux=True)``."""

    def res(theta, fixed, doses, t, y, censored, lloq, mask, sigma):
        params = {**fixed, **dict(zip(names, theta))}
        pred = log10_load(model, params, doses, t, options)
        r = jnp.where(mask, m3_residuals(pred, y, censored, lloq, sigma), 0.0)
        return r, r

    return res


@lru_cache(maxsize=32)
def residual_fn(model: HCVModel, free: tuple[str, ...], options: SolverOptions):
    """Jitted (residuals, jacobian) of theta (free values in ``free`` order) for one patient's arrays."""
    res = _patient_residuals(model, free, options)

    def one(*args):
        return res(*args)[0]

    return jax.jit(one), jax.jit(jax.jacfwd(one))


@lru_cache(maxsize=32)
def _jacobian_and_residuals(model: HCVModel, names: tuple[str, ...], options: SolverOptions, batched: bool):
    """Jitted (Jacobian w.r.t. theta, residuals) of one patient's arrays, or of patients' stacked arrays
    (``batched``: vmapped, sigma shared). Forward mode computes the residuals on its way to the Jacobian."""
    f = jax.jacfwd(_patient_residuals(model, names, options), has_aux=True)
    return jax.jit(jax.vmap(f, in_axes=(0, 0, 0, 0, 0, 0, 0, 0, None)) if batched else f)


def _once_per_point(theta_of, jacobian_and_residuals):
    """evaluate(pars) -> (residuals, Jacobian) as numpy arrays from ``jacobian_and_residuals(theta)``, solved
    once per point: lmfit asks for the Jacobian where it last asked for residuals, and forward mode gives both
    in one pass. ``theta_of(pars)``: the numeric input at lmfit's ``pars``."""
    latest = {}

    def evaluate(pars):
        theta = np.asarray(theta_of(pars), dtype=float)
        if "theta" not in latest or not np.array_equal(latest["theta"], theta):
            jac, res = jacobian_and_residuals(jnp.asarray(theta))
            latest.update(theta=theta, value=(np.asarray(res), np.asarray(jac)))
        return latest["value"]

    return evaluate


PAD_TO = 8  # series are padded to a multiple of this many samples, so few shapes are ever compiled


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


def _check_bounds(model: HCVModel, free, bounds, starts, where: str) -> dict[str, tuple[float, float]]:
    """Validated narrowed bounds: only for free parameters, inside the declared range, containing the start."""
    bounds = dict(bounds or {})
    for k, (lo, hi) in bounds.items():
        if k not in free:
            raise ValueError(f"{where}: bounds given for {k!r}, which is not free")
        p = model.params[k]
        if not (p.lower <= lo < hi <= p.upper):
            raise ValueError(f"{where}: bounds [{lo}, {hi}] of {k!r} must satisfy {p.lower} <= lower < upper <= {p.upper}")
        if not (lo <= starts[k] <= hi):
            raise ValueError(f"{where}: start {starts[k]} of {k!r} outside its bounds [{lo}, {hi}]")
    return bounds


def wald_interval(value: float, se: float, level: float = 0.95, param: Param | None = None) -> tuple[float, float]:
    """Wald interval at ``level``: value -/+ z se, with z the normal quantile; on the parameter's scale when ``param`` is given.

    With ``param`` (its declared row) the interval is computed on :attr:`Param.interval_scale` and transformed
    back: log-scale parameters exp(ln x -/+ z se / x), fractions in [0, 1] expit(logit x -/+ z se / (x (1 - x)))
    (the delta-method SE on that scale), so neither leaves (0, inf) or (0, 1); others x -/+ z se. The limits are
    then held to the declared bounds (a limit at a bound: the interval is open there, as for
    :func:`profile_interval`). A fraction estimated at 0 or 1 gets the linear interval, held to the bounds.
    Without ``param``: x -/+ z se. Returns Python floats.
    """
    from scipy.special import expit, logit
    from scipy.stats import norm

    q, value, se = float(norm.ppf(0.5 + level / 2)), float(value), float(se)
    scale = param.interval_scale if param is not None else "linear"
    with np.errstate(over="ignore"):
        if scale == "log" and value > 0:
            lims = value * np.exp(np.array([-q, q]) * se / value)
        elif scale == "logit" and 0 < value < 1:
            lims = expit(logit(value) + np.array([-q, q]) * se / (value * (1 - value)))
        else:
            lims = value + np.array([-q, q]) * se
    if param is not None:
        lims = np.clip(lims, param.lower, param.upper)
    return float(lims[0]), float(lims[1])


def _draw_start(p, first: float, lo: float, hi: float, rng) -> float:
    """One start within [lo, hi]: log-uniform over first/10..first*10 (log-scale), else first +/- a quarter of the range."""
    if p.scale == "log":
        lo, hi = max(lo, first / 10), min(hi, first * 10)
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    width = 0.25 * (hi - lo)
    return float(np.clip(first + rng.uniform(-width, width), lo, hi))


def _starts(model: HCVModel, free: Sequence[str], first: Mapping[str, float], n: int, seed: int,
            bounds: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """First row = ``first``; the rest drawn within each parameter's bounds (see :func:`_draw_start`)."""
    rng = np.random.default_rng(seed)
    bounds = bounds or {}
    rows = [[first[k] for k in free]]
    for _ in range(n - 1):
        rows.append([_draw_start(model.params[k], first[k], *bounds.get(k, (model.params[k].lower, model.params[k].upper)), rng)
                     for k in free])
    return np.array(rows)


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

    params: values of fixed parameters and starting values of free ones (defaults otherwise).
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
    bounds = _check_bounds(model, free, bounds, values, where)
    model.check_steady_state(values, where=where)
    if patient.n_obs < len(free) or patient.t_days[-1] <= 0:
        raise ValueError(f"{where}: {patient.n_obs} samples (last at day {patient.t_days[-1]:g}) cannot inform {len(free)} free parameters")

    if patient.doses and regimens:
        raise ValueError(f"{where}: the patient has dose records from its data file and regimens were given; use one")
    regimens = tuple(regimens) or tuple(patient.doses)
    jac_and_res = _jacobian_and_residuals(model, free, options, False)
    fixed = {k: jnp.float64(v) for k, v in values.items() if k not in free}
    doses = {k: (jnp.asarray(a), jnp.asarray(b)) for k, (a, b) in dose_arrays(regimens, model.pk_drugs, weight_kg).items()}
    n = patient.n_obs
    t, y, cens, lloq, mask = (a[0] for a in _pad_patients([patient], multiple=PAD_TO))
    data = (jnp.asarray(t), jnp.asarray(y), jnp.asarray(cens), jnp.asarray(lloq), jnp.asarray(mask), jnp.float64(sigma))
    evaluate = _once_per_point(lambda pars: [pars[k].value for k in free], lambda theta: jac_and_res(theta, fixed, doses, *data))

    def residual(pars):
        return evaluate(pars)[0][:n].copy()

    def jacobian(pars):
        return evaluate(pars)[1][:n].copy()  # writable copy for lmfit

    starts = _starts(model, free, values, max(1, n_starts), seed, bounds)

    def start_pars(row):
        pars = lmfit.Parameters()
        for k, v in zip(free, row):
            lo, hi = bounds.get(k, (model.params[k].lower, model.params[k].upper))
            pars.add(k, value=float(v), min=lo, max=hi)
        return pars

    best, objectives = _best_of(residual, jacobian, map(start_pars, starts), max_nfev, where)

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


# ---- whole-trial fits ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrialFit:
    """Result of a whole-trial fit. Names: ``k`` (shared by all), ``k__ARM`` (per arm), ``k__ID`` (per patient)."""

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
    patient_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # id -> global name of each local one
    profile_trace: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)  # (theta, delta -2logL)
    start_objectives: tuple[float, ...] = ()  # -2 log L (+const) reached from each start (inf: that start failed)
    refined: tuple[str, ...] = ()  # patients refitted alone after the joint fit stalled far from their optimum
    sigma_se: float = math.nan  # standard error of ``sigma`` when it was estimated (``estimate_sigma``)
    sigma_estimated: bool = False
    declared: Mapping[str, Param] = field(default_factory=dict)  # declared row (bounds, scale) of each estimated value

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Wald interval from the standard error, on the parameter's declared scale (:func:`wald_interval`)."""
        return wald_interval(self.values[name], self.stderr[name], level, self.declared.get(name))


def _pad_patients(dataset, multiple: int = 1):
    """(t, y, censored, lloq, mask) arrays, shape (n_patients, n): padded samples are masked out."""
    n = max(p.n_obs for p in dataset)
    n = -(-n // multiple) * multiple
    t, y, c, lq, mask = (np.zeros((len(dataset), n)) for _ in range(5))
    for i, p in enumerate(dataset):
        k = p.n_obs
        t[i, :k], y[i, :k], c[i, :k], lq[i, :k], mask[i, :k] = p.t_days, p.log10_vl, p.censored, p.lloq_log10, 1
        t[i, k:] = p.t_days[-1] + np.arange(1, n - k + 1)  # strictly increasing, masked out
    return t, y, c.astype(bool), lq, mask.astype(bool)


def fit_trial(
    model: HCVModel,
    dataset,
    regimens_by_arm: Mapping[str, Sequence[Regimen]],
    individual: Sequence[str],
    shared: Sequence[str] | Mapping[str, Sequence[str]] = (),
    per_arm: Sequence[str] | Mapping[str, Sequence[str]] = (),
    params: Mapping[str, float] | None = None,
    sigma: float = 0.2,
    weight_kg: float = 70.0,
    options: SolverOptions = SolverOptions(atol=1e-7),
    outside: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    max_nfev: int = 200,
    profile: Sequence[str] = (),
    level: float = 0.95,
    profile_points: int = 15,
    n_starts: int = 1,
    seed: int = 0,
    estimate_sigma: bool = False,
) -> TrialFit:
    """One M3 maximum-likelihood problem for a whole trial.

    regimens_by_arm: each arm's regimens; a patient with dose records in its data (``PatientData.doses``,
        NONMEM dose rows) is dosed by those instead.
    individual: parameters estimated per patient (e.g. log10_V0, delta).
    shared: one value for all patients (e.g. a drug's EC50), or a mapping name -> arms in which that one
        value applies (fixed in the other arms, e.g. ribavirin's rho where ribavirin is not given).
    per_arm: one value per arm (e.g. eps), or a mapping name -> arms in which it is estimated (fixed in
        the other arms, e.g. celgosivir's phi = 0 under placebo).
    bounds: per-parameter (lower, upper) narrowing the declared admissible range.
    outside: value of such a parameter in the arms where it is not estimated; default 0 for the
    constant-mode drug effects (eps, eta, rho, phi, sigma: a drug not given has no effect), else the start.
    profile: estimated parameters (global names, e.g. "eps" or "delta__p3") that also get a
    profile-likelihood interval at ``level`` (``TrialFit.profile``), see :func:`profile_interval`; the
    profile is also evaluated at ``profile_points`` values over and around that interval (:func:`profile_grid`,
    :func:`profile_curve`; 0: none), and ``TrialFit.profile_trace`` holds every value evaluated, for figures.
    n_starts > 1 refits from further starts in which the shared and per-arm values are drawn within their
    bounds (seeded by ``seed``, see :func:`_draw_start`; per-patient starts stay at ``params``, where every
    patient has a chronic steady state) and keeps the best; ``TrialFit.start_objectives`` holds each
    start's -2 log L, so a spread shows local optima.
    After each joint fit, patients whose -2 log L exceeds the 99% chi-square quantile of their sample count
    are refitted alone (others fixed) and, if that improves them, the joint fit is repeated from there
    (``TrialFit.refined`` names them; see ``local.refine`` of :func:`build_trial_problem`).
    sigma: the residual SD (log10 IU/mL); with ``estimate_sigma`` its starting value, and the fit alternates
    between the structural parameters at fixed sigma and sigma at fixed predictions (:func:`residual_sd_mle`,
    degrees-of-freedom corrected) until sigma changes by less than 1e-4 relative. ``sigma`` is then that
    estimate (``sigma_se`` its SE), and the SEs and profiles are those at it; ``objective`` is -2 log L with
    sigma at its plain ML value, including the 2 n ln(sigma) term of the n observed samples (-2 log L up to
    terms that depend on nothing estimated, as with sigma fixed), and AIC/BIC count sigma.
    Others are fixed at ``params`` or defaults, which also give the starting values. Residuals and
    Jacobian blocks of all patients come from one jitted, vmapped call; the full Jacobian is assembled
    from the per-patient blocks.
    """
    def problem(s):
        return build_trial_problem(model, dataset, regimens_by_arm, individual, shared, per_arm, params, s, weight_kg, options,
                                   outside, bounds)

    pars, residual, jacobian, n_obs, local = problem(sigma)
    if n_starts < 1:
        raise ValueError(f"fit_trial: n_starts = {n_starts} must be >= 1")
    rng = np.random.default_rng(seed)
    refined: set[str] = set()

    def starts():
        yield pars.copy()
        for _ in range(n_starts - 1):
            start = pars.copy()
            for n in local.shared_names:
                if start[n].vary:
                    start[n].set(value=_draw_start(model.params[n.split("__")[0]], pars[n].value, start[n].min, start[n].max, rng))
            yield start

    def polish(cand):
        for _ in range(3):  # patients stalled far from their own optimum: refit them alone, then the trial again
            polished, improved = local.refine(cand.params, cand.residual)
            if not improved:
                break
            refined.update(improved)
            again = _least_squares(residual, jacobian, polished, max_nfev)
            if again.chisqr >= cand.chisqr:
                break
            cand = again
        return cand

    out, objectives = _best_of(residual, jacobian, starts(), max_nfev, "fit_trial", polish)
    sigma_se, sigma_note, m2ll = math.nan, "", float(out.chisqr)
    if estimate_sigma:
        n_par, sigma_note = len(out.var_names), "; residual SD not converged in 20 rounds"
        for _ in range(20):
            new_sigma, sigma_se, m2ll = residual_sd_mle(*_raw_errors(out.residual, local.censored, sigma), n_par=n_par)
            if abs(new_sigma - sigma) <= 1e-4 * sigma:
                sigma_note = ""
                break
            sigma = new_sigma
            pars, residual, jacobian, _, local = problem(sigma)  # same shapes: nothing is compiled again
            for n in out.var_names:
                pars[n].set(value=out.params[n].value)
            out = polish(_least_squares(residual, jacobian, pars, max_nfev))
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
            grid = profile_grid(vals[n], lims, (out.params[n].min, out.params[n].max), profile_points)
            traces[n] += profile_curve(residual, jacobian, out, n, grid, max_nfev)
    k = len(vals) + int(estimate_sigma)
    return TrialFit(
        model=model.name, values=vals, stderr=se, objective=m2ll,
        aic=m2ll + 2 * k, bic=m2ll + k * math.log(n_obs),
        success=success, message=out.message + sigma_note if success else f"not converged or singular: {out.message}{sigma_note}",
        n_obs=n_obs, n_patients=len(dataset), sigma=sigma, nfev=int(out.nfev),
        patient_params=local(out.params),
        profile=intervals,
        covariance=cov, local_names=local.names, patient_columns=local.columns,
        profile_trace={n: (tuple(t for t, _ in sorted(tr)), tuple(d for _, d in sorted(tr))) for n, tr in traces.items()},
        start_objectives=tuple(objectives), refined=tuple(sorted(refined)), sigma_se=sigma_se, sigma_estimated=bool(estimate_sigma),
        declared={n: model.params[n.split("__")[0]] for n in vals},
    )


def _best_of(residual, jacobian, starts, max_nfev: int, where: str, polish=None):
    """Fit from each start (lmfit Parameters), then ``polish`` it if given; (best result, -2 log L per start).

    A start whose residuals turn non-finite (a failed solve) scores inf; RuntimeError when every start fails.
    """
    best, objectives, last_error = None, [], ""
    for start in starts:
        try:
            out = _least_squares(residual, jacobian, start, max_nfev)
        except ValueError as e:
            objectives.append(math.inf)
            last_error = str(e)
            continue
        if polish is not None:
            out = polish(out)
        objectives.append(float(out.chisqr))
        if best is None or out.chisqr < best.chisqr:
            best = out
    if best is None:
        raise RuntimeError(f"{where}: every start failed ({last_error})")
    return best, objectives


def _least_squares(residual, jacobian, pars, max_nfev):
    import lmfit

    mini = lmfit.Minimizer(residual, pars, scale_covar=False, nan_policy="raise")
    return mini.minimize(method="least_squares", jac=jacobian, x_scale="jac", max_nfev=max_nfev)


def profile_interval(residual, jacobian, best, name: str, level: float = 0.95, max_nfev: int = 200, max_iter: int = 10,
                     trace: list | None = None):
    """Profile-likelihood interval of one parameter of a least-squares M3 problem.

    The parameter is fixed at trial values and the others refitted (warm-started); the signed root
    s = sign(theta - theta_hat) sqrt(chi2(theta) - chi2_min) is driven to +/- z (z = 1.96 for 95%) by the
    secant method, starting from the Wald limits. A limit that reaches the parameter's bound before
    s reaches z is reported as that bound (the interval is open there).
    """
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    p_hat = best.params[name]
    theta_hat, chi_min = p_hat.value, best.chisqr
    se = p_hat.stderr if p_hat.stderr and np.isfinite(p_hat.stderr) else 0.1 * max(abs(theta_hat), 1e-3)
    lo_b, hi_b = p_hat.min, p_hat.max

    def signed_root(theta, start):
        out = _profile_point(residual, jacobian, start, name, theta, max_nfev)
        if trace is not None:
            trace.append((float(theta), float(max(out.chisqr - chi_min, 0.0))))
        return math.copysign(math.sqrt(max(out.chisqr - chi_min, 0.0)), theta - theta_hat), out.params

    limits = []
    for sign in (-1.0, 1.0):
        bound = lo_b if sign < 0 else hi_b
        prev_t, prev_s, start = theta_hat, 0.0, best.params
        t = float(np.clip(theta_hat + sign * z * se, lo_b, hi_b))
        limit = bound
        for _ in range(max_iter):
            s, start = signed_root(t, start)
            if abs(s - sign * z) < 0.01:
                limit = t
                break
            if (t == bound) and sign * s < z:
                break  # the likelihood never drops by z^2 before the bound: open interval
            step = (sign * z - s) * (t - prev_t) / (s - prev_s) if s != prev_s else sign * se
            prev_t, prev_s = t, s
            t = float(np.clip(t + step, lo_b, hi_b))
        else:
            limit = t
        limits.append(limit)
    return tuple(limits)


def _profile_point(residual, jacobian, start, name: str, theta: float, max_nfev: int):
    """The fit with ``name`` fixed at ``theta`` and the others refitted from ``start`` (lmfit Parameters)."""
    pars = start.copy()
    pars[name].set(value=float(theta), vary=False)
    return _least_squares(residual, jacobian, pars, max_nfev)


def profile_curve(residual, jacobian, best, name: str, thetas, max_nfev: int = 200) -> list[tuple[float, float]]:
    """(theta, Delta(-2 log L)) of the profile likelihood of ``name`` at each of ``thetas``, sorted by theta.

    At each value the parameter is fixed and the others refitted; values are visited outward from the estimate
    on each side, each warm-started from its neighbour nearer the estimate. ``best``: the unconstrained fit.
    A value whose refit fails (non-finite residuals: a solve failed) ends that side: the curve stops there.
    """
    theta_hat, chi_min = best.params[name].value, best.chisqr
    thetas = np.sort(np.asarray(thetas, float))
    points = []
    for side in (thetas[thetas < theta_hat][::-1], thetas[thetas >= theta_hat]):
        start = best.params
        for t in side:
            try:
                out = _profile_point(residual, jacobian, start, name, t, max_nfev)
            except ValueError:
                break
            points.append((float(t), float(max(out.chisqr - chi_min, 0.0))))
            start = out.params
    return sorted(points)


def profile_grid(estimate: float, interval: tuple[float, float], bounds: tuple[float, float], n: int = 15) -> np.ndarray:
    """``n`` values evenly spaced over ``interval`` widened by a quarter of its width on each side, within ``bounds``."""
    lo, hi = interval
    width = hi - lo if math.isfinite(hi - lo) and hi > lo else 0.2 * max(abs(estimate), 1e-3)
    return np.linspace(max(min(lo, estimate) - width / 4, bounds[0]), min(max(hi, estimate) + width / 4, bounds[1]), n)


def build_trial_problem(
    model: HCVModel,
    dataset,
    regimens_by_arm: Mapping[str, Sequence[Regimen]],
    individual: Sequence[str],
    shared: Sequence[str] | Mapping[str, Sequence[str]] = (),
    per_arm: Sequence[str] | Mapping[str, Sequence[str]] = (),
    params: Mapping[str, float] | None = None,
    sigma: float = 0.2,
    weight_kg: float = 70.0,
    options: SolverOptions = SolverOptions(atol=1e-7),
    outside: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
):
    """(Parameters, residual(pars), jacobian(pars), n_obs, local(pars)) of a whole-trial M3 problem (see :func:`fit_trial`).

    local(pars) gives every parameter of every patient (patient id -> name -> value).

    jacobian returns the derivatives for the varying parameters only, in lmfit's ``var_names`` order.
    """
    import lmfit

    arms = tuple(dict.fromkeys(p.arm for p in dataset))
    if isinstance(per_arm, Mapping):
        estimated_in = {k: tuple(v) for k, v in per_arm.items()}
    else:
        estimated_in = {k: arms for k in per_arm}
    for k, in_arms in estimated_in.items():
        unknown_arms = [a for a in in_arms if a not in arms]
        if unknown_arms:
            raise ValueError(f"fit_trial: per_arm {k!r} names arm(s) {unknown_arms} not in the data (arms: {list(arms)})")
    shared_in = {k: tuple(v) for k, v in shared.items()} if isinstance(shared, Mapping) else {k: arms for k in shared}
    for k, in_arms in shared_in.items():
        unknown_arms = [a for a in in_arms if a not in arms]
        if unknown_arms:
            raise ValueError(f"fit_trial: shared {k!r} names arm(s) {unknown_arms} not in the data (arms: {list(arms)})")
    individual, shared, per_arm = tuple(individual), tuple(shared_in), tuple(estimated_in)
    free = individual + shared + per_arm
    dup = {k for k in free if free.count(k) > 1}
    if dup:
        raise ValueError(f"fit_trial: parameter(s) {sorted(dup)} listed in more than one of individual/shared/per_arm")
    for k in free:
        if k not in model.params:
            check_values(model.params, {k: 0.0}, where="fit_trial")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"fit_trial: sigma = {sigma} must be a positive number (log10 IU/mL)")
    missing = sorted({p.arm for p in dataset if not p.doses and p.arm not in regimens_by_arm})
    if missing:
        raise ValueError(f"fit_trial: no regimens for arm(s) {missing} (and no dose records in the data); given: {sorted(regimens_by_arm)}")
    values = model.defaults(**(params or {}))
    model.check_steady_state(values, where="fit_trial")
    pats = list(dataset)
    n_pat = len(pats)
    t, y, cens, lloq, mask = _pad_patients(pats)
    from .dosing import batch_dose_arrays, patient_regimens

    doses = batch_dose_arrays([patient_regimens(p, regimens_by_arm, "fit_trial") for p in pats], model.pk_drugs, [weight_kg] * n_pat)
    fixed = {k: np.full(n_pat, v) for k, v in values.items() if k not in free}
    local_shared = shared + per_arm
    blocks_and_residuals = _jacobian_and_residuals(model, individual + local_shared, options, True)

    from .drugs import EFFECTS

    outside = dict(outside or {})
    out_value = lambda k: float(outside.get(k, 0.0 if k in EFFECTS else values[k]))  # noqa: E731
    pars = lmfit.Parameters()
    narrowed = _check_bounds(model, free, bounds, values, "fit_trial")
    bound = lambda k: narrowed.get(k, (model.params[k].lower, model.params[k].upper))  # noqa: E731
    for p in pats:
        for k in individual:
            pars.add(f"{k}__{p.id}", value=values[k], min=bound(k)[0], max=bound(k)[1])
    for k in shared:
        pars.add(k, value=values[k], min=bound(k)[0], max=bound(k)[1])
        if set(shared_in[k]) != set(arms):
            pars.add(f"{k}__fixed", value=out_value(k), vary=False)
    for k in per_arm:
        for a in arms:
            on = a in estimated_in[k]
            pars.add(f"{k}__{a}", value=values[k] if on else out_value(k), min=bound(k)[0], max=bound(k)[1], vary=on)
    names = list(pars)
    index = {n: i for i, n in enumerate(names)}
    # column of each patient's local parameter in the global vector
    cols = np.array(
        [[index[f"{k}__{p.id}"] for k in individual] + [index[k] if p.arm in shared_in[k] else index[f"{k}__fixed"] for k in shared] + [index[f"{k}__{p.arm}"] for k in per_arm] for p in pats],
        dtype=int,
    ).reshape(n_pat, len(individual) + len(local_shared))
    data = (jnp.asarray(t), jnp.asarray(y), jnp.asarray(cens), jnp.asarray(lloq), jnp.asarray(mask), jnp.float64(sigma))
    flat_mask = mask.ravel()

    def theta_of(pv):
        g = np.array([pv[n].value for n in names])
        return g[cols]

    evaluate = _once_per_point(theta_of, lambda theta: blocks_and_residuals(theta, fixed, doses, *data))

    def residual(pv):
        return evaluate(pv)[0].ravel()[flat_mask]

    def jacobian(pv):
        blocks = evaluate(pv)[1]  # (n_pat, n_obs, n_local)
        full = np.zeros((n_pat, t.shape[1], len(names)))
        for i in range(n_pat):
            np.add.at(full[i], (slice(None), cols[i]), blocks[i])
        varying = [index[n] for n in names if pv[n].vary]  # read per call: profiling fixes parameters
        return full.reshape(-1, len(names))[flat_mask][:, varying]

    local_names = individual + shared + per_arm

    def local(pv):
        """Every parameter of every patient at the values ``pv``."""
        theta = np.asarray(theta_of(pv))
        return {
            p.id: {**{k: float(v[i]) for k, v in fixed.items()}, **dict(zip(local_names, map(float, theta[i])))}
            for i, p in enumerate(pats)
        }

    def refine(pv, resid, level: float = 0.99, max_nfev: int = 100):
        """Refit, patient by patient, the per-patient values of patients that fit badly, others fixed at ``pv``
        (``resid``: the residual vector at ``pv``).

        A patient fits badly when its -2 log L exceeds the ``level`` quantile of chi-square with its number of
        samples. A trust-region step shared by a hundred parameters can stall with one patient far from its own
        optimum (the step radius is set by the others); the patient's own two-or-three-parameter problem, started
        from ``pv`` and from the trial's starts, does not. Returns (Parameters, ids of patients improved).
        """
        from scipy.stats import chi2

        if not individual:
            return pv, ()
        r = np.zeros(mask.shape)
        r[mask] = resid
        per = np.sum(r**2, axis=1)
        bad = np.flatnonzero(per > chi2.ppf(level, mask.sum(axis=1)))
        if bad.size == 0:
            return pv, ()
        jac_and_res = _jacobian_and_residuals(model, individual, options, False)
        theta = np.asarray(theta_of(pv))
        out, improved = pv.copy(), []
        for i in bad:
            others = {**{k: jnp.float64(v[i]) for k, v in fixed.items()},
                      **{k: jnp.float64(x) for k, x in zip(local_shared, theta[i, len(individual):])}}
            dose_i = {k: (jnp.asarray(a[i]), jnp.asarray(b[i])) for k, (a, b) in doses.items()}
            data_i = tuple(jnp.asarray(x[i]) for x in (t, y, cens, lloq, mask)) + (jnp.float64(sigma),)
            keys = [f"{k}__{pats[i].id}" for k in individual]
            best = per[i]
            for first in (theta[i, : len(individual)], [values[k] for k in individual]):
                sub = lmfit.Parameters()
                for key, k, v in zip(keys, individual, first):
                    sub.add(k, value=float(np.clip(v, pv[key].min, pv[key].max)), min=pv[key].min, max=pv[key].max)
                evaluate = _once_per_point(lambda q: [q[k].value for k in individual],
                                           lambda theta: jac_and_res(theta, others, dose_i, *data_i))
                try:
                    fit_i = _least_squares(lambda q: evaluate(q)[0].copy(), lambda q: evaluate(q)[1].copy(), sub, max_nfev)
                except ValueError:
                    continue
                if fit_i.chisqr < best - 1e-6:
                    best = fit_i.chisqr
                    for key, k in zip(keys, individual):
                        out[key].set(value=fit_i.params[k].value)
            if best < per[i] - 1e-6:
                improved.append(pats[i].id)
        return out, tuple(improved)

    local.names = local_names
    local.censored = cens.ravel()[flat_mask]
    local.refine = refine
    local.shared_names = tuple(n for n in names if n not in {f"{k}__{p.id}" for k in individual for p in pats})
    local.columns = {p.id: tuple(names[j] for j in cols[i]) for i, p in enumerate(pats)}
    return pars, residual, jacobian, int(mask.sum()), local
