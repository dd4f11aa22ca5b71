"""The censored (M3) likelihood on the log10 scale and its residual form for lmfit, the residual SD's closed-form
MLE, and the compiled per-patient residual and Jacobian functions (forward-mode JAX, padded shapes).
"""

from __future__ import annotations

import math
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

from hcvdyn.model.hcv import HCVModel
from hcvdyn.solve.adaptive import log10_load
from hcvdyn.solve.options import SolverOptions

__all__ = ["m3_residuals", "raw_errors", "residual_sd_mle", "residual_fn", "jacobian_and_residuals_fn", "once_per_point"]


_TINY = 1e-300



def m3_residuals(pred, y, censored, lloq, sigma):
    """Residual vector whose sum of squares is -2 log L (+ const) of the M3 likelihood (module docstring)."""
    z = (y - pred) / sigma
    zc = (lloq - pred) / sigma
    nll2 = -2.0 * log_ndtr(zc)
    r_cens = jnp.sqrt(jnp.maximum(nll2, _TINY))
    return jnp.where(censored, r_cens, z)



def raw_errors(resid, censored, sigma):
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
def jacobian_and_residuals_fn(model: HCVModel, names: tuple[str, ...], options: SolverOptions, batched: bool):
    """Jitted (Jacobian w.r.t. theta, residuals) of one patient's arrays, or of patients' stacked arrays
    (``batched``: vmapped, sigma shared). Forward mode computes the residuals on its way to the Jacobian."""
    f = jax.jacfwd(_patient_residuals(model, names, options), has_aux=True)
    return jax.jit(jax.vmap(f, in_axes=(0, 0, 0, 0, 0, 0, 0, 0, None)) if batched else f)



def once_per_point(theta_of, jacobian_and_residuals):
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
