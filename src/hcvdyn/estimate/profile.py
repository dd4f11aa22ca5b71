"""Intervals: Wald intervals on the parameter's declared scale, Satterthwaite intervals of standard deviations,
and profile-likelihood intervals and curves.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from hcvdyn.estimate.optimize import minimize_least_squares
from hcvdyn.model.parameters import Param

__all__ = ["wald_interval", "satterthwaite_interval", "profile_interval", "bracketed_profile_interval", "profile_curve", "profile_grid",
           "extrapolated_start"]


def wald_interval(value: float, se: float, level: float = 0.95, param: Param | None = None) -> tuple[float, float]:
    """Wald interval at ``level``: value -/+ z se, with z the normal quantile; on the parameter's scale when ``param`` is given.

    With ``param`` (its declared row) the interval is computed on :attr:`Param.scale` and transformed
    back: log-scale parameters exp(ln x -/+ z se / x), fractions in [0, 1] expit(logit x -/+ z se / (x (1 - x)))
    (the delta-method SE on that scale), so neither leaves (0, inf) or (0, 1); others x -/+ z se. The limits are
    then held to the declared bounds (a limit at a bound: the interval is open there, as for
    :func:`profile_interval`). A fraction estimated at 0 or 1 gets the linear interval, held to the bounds.
    Without ``param``: x -/+ z se. Returns Python floats.
    """
    from scipy.special import expit, logit
    from scipy.stats import norm

    q, value, se = float(norm.ppf(0.5 + level / 2)), float(value), float(se)
    scale = param.scale if param is not None else "linear"
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



@lru_cache(maxsize=8)
def _least_df(level: float) -> float:
    """The nu below which sqrt(nu / chi2_{(1+level)/2, nu}) rises again as nu falls (0.082 at level 0.95)."""
    from scipy.optimize import minimize_scalar
    from scipy.stats import chi2

    q = 0.5 + level / 2
    return float(minimize_scalar(lambda nu: nu / chi2.ppf(q, nu), bounds=(1e-6, 20.0), method="bounded", options={"xatol": 1e-7}).x)


def satterthwaite_interval(sd: float, se: float, level: float = 0.95) -> tuple[float, float]:
    """Interval at ``level`` of a standard deviation ``sd`` > 0 with standard error ``se``, from the variance.

    sd^2 is read as the true variance times chi2_nu / nu (Satterthwaite 1946, Biometrics Bulletin 2:110; the form
    of SAS PROC MIXED's CL option), nu = 2 (sd^2 / SE(sd^2))^2 = sd^2 / (2 se^2) by SE(sd^2) = 2 sd se:
    sd sqrt(nu / chi2_{(1+level)/2, nu}) .. sd sqrt(nu / chi2_{(1-level)/2, nu}). Above 0, longer above the
    estimate than below, Wald's x -/+ z se as nu grows; for the SD of n draws about a known mean (se = sd /
    sqrt(2n), nu = n) the exact chi2_n interval. Below the nu where the lower limit stops falling with nu (0.082 at
    95%: the SE over 2.5 times the SD) that nu is used, so neither limit moves inwards as the SE grows.
    se = 0: (sd, sd); se = inf: (0, inf); se NaN: (NaN, NaN); sd / se over 1e6: Wald's.
    """
    from scipy.stats import chi2

    sd, se = float(sd), float(se)
    if not (sd > 0 and 0 < level < 1):
        raise ValueError(f"satterthwaite_interval: need sd > 0 and 0 < level < 1, got sd = {sd}, level = {level}")
    if math.isnan(se) or se < 0:
        return math.nan, math.nan
    if se == 0 or math.isinf(se):
        return (sd, sd) if se == 0 else (0.0, math.inf)
    if sd / se > 1e6:  # nu > 5e11: Wald's interval to within 1e-6 of its half-width
        return wald_interval(sd, se, level)
    nu = max(0.5 * (sd / se) ** 2, _least_df(level))
    high_q = chi2.ppf(0.5 - level / 2, nu)
    return float(sd * math.sqrt(nu / chi2.ppf(0.5 + level / 2, nu))), float(sd * math.sqrt(nu / high_q)) if high_q > 0 else math.inf


def profile_interval(residual, jacobian, best, name: str, level: float = 0.95, max_nfev: int = 200, max_iter: int = 10,
                     trace: list | None = None):
    """Profile-likelihood interval of one parameter of a least-squares M3 problem.

    The parameter is fixed at trial values and the others refitted (started by :func:`extrapolated_start`); the
    signed root s = sign(theta - theta_hat) sqrt(chi2(theta) - chi2_min) is driven to +/- z (z = 1.96 for 95%) by
    the secant method, starting from the Wald limits. A limit that reaches the parameter's bound before
    s reaches z is reported as that bound (the interval is open there).
    """
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    p_hat = best.params[name]
    theta_hat, chi_min = p_hat.value, best.chisqr
    se = p_hat.stderr if p_hat.stderr and np.isfinite(p_hat.stderr) else 0.1 * max(abs(theta_hat), 1e-3)
    lo_b, hi_b = p_hat.min, p_hat.max

    def signed_root(theta, path):
        out = _profile_point(residual, jacobian, path, name, theta, max_nfev, chi_min)
        if trace is not None:
            trace.append((float(theta), float(max(out.chisqr - chi_min, 0.0))))
        return math.copysign(math.sqrt(max(out.chisqr - chi_min, 0.0)), theta - theta_hat), out.params

    limits = []
    for sign in (-1.0, 1.0):
        bound = lo_b if sign < 0 else hi_b
        prev_t, prev_s, path = theta_hat, 0.0, [(theta_hat, best.params)]
        t = float(np.clip(theta_hat + sign * z * se, lo_b, hi_b))
        limit = bound
        for _ in range(max_iter):
            s, fitted = signed_root(t, path)
            path = [path[-1], (t, fitted)]
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



def bracketed_profile_interval(delta_at, theta_hat: float, se: float, bounds: tuple[float, float], level: float = 0.95,
                               known=(), xtol: float = 1e-4, max_steps: int = 12) -> tuple[float, float]:
    """Profile-likelihood interval {theta: delta(theta) < z^2} from ``delta_at(theta)`` = -2 log L at theta (the
    others refitted) minus its minimum at ``theta_hat`` (z^2 the chi-square(1) quantile, 3.84 for 95%).

    Each side steps outward from theta_hat (z se, then doubling) until delta reaches z^2, then Brent's method
    finds the crossing inside that bracket to ``xtol``. ``known``: (theta, delta) pairs already fitted, such as
    the null fit of a likelihood-ratio test, used as points of the bracket and never refitted: a limit is never on
    the wrong side of a known point, so the interval covers a known theta exactly when its delta is below z^2 (the
    test and the interval decide alike). A side that reaches its bound below z^2 ends there (the interval is open).
    """
    from scipy.optimize import brentq
    from scipy.stats import chi2

    crit = float(chi2.ppf(level, 1))
    se = se if math.isfinite(se) and se > 0 else 0.1 * max(abs(theta_hat), 1.0)
    memo = {float(theta_hat): 0.0, **{float(t): float(d) for t, d in known}}

    def delta(t):
        if t not in memo:
            memo[t] = float(delta_at(t))
        return memo[t]

    limits = []
    for sign, bound in ((-1.0, bounds[0]), (1.0, bounds[1])):
        ahead = sorted((t for t in memo if sign * (t - theta_hat) > 0), key=lambda t: sign * (t - theta_hat))
        inside, limit = float(theta_hat), None
        for k in range(max_steps):
            t = float(np.clip(theta_hat + sign * math.sqrt(crit) * se * 2.0**k, *bounds))
            if ahead and sign * (ahead[0] - t) <= 0:  # a point already fitted comes first
                t = ahead.pop(0)
            if delta(t) >= crit:
                limit = brentq(lambda u: delta(u) - crit, inside, t, xtol=xtol)
                if limit in (inside, t):  # the crossing lies strictly between a point below z^2 and one above
                    limit = float(np.nextafter(limit, t if limit == inside else inside))
                break
            inside = t
            if t == bound:
                break
        limits.append(limit if limit is not None else inside)
    return float(limits[0]), float(limits[1])


PROFILE_TOL = 1e-4  # a profile refit stops once an iteration lowers -2 log L by less than about this (absolute)


def _profile_point(residual, jacobian, path, name: str, theta: float, max_nfev: int, chi_min: float):
    """The fit with ``name`` fixed at ``theta`` and the others refitted from :func:`extrapolated_start` of ``path``.

    It stops once an iteration lowers -2 log L by less than PROFILE_TOL (relative to ``chi_min``, the optimum's,
    held to [1e-8, 1e-6]): a profile needs Delta(-2 log L) to a few thousandths (the interval's limits are sought to
    0.01 in the signed root, 0.04 in Delta at z = 1.96), and below that each refit of the bundled trial spent half
    its evaluations (about 10 of 20) on the last 1e-3. The optimum itself is fitted to scipy's default."""
    ftol = float(np.clip(PROFILE_TOL / max(chi_min, 1e-300), 1e-8, 1e-6))

    def refit(start):
        start[name].set(value=float(theta), vary=False)
        return minimize_least_squares(residual, jacobian, start, max_nfev, ftol=ftol)

    try:
        return refit(extrapolated_start(path, theta))
    except ValueError:  # a solve failed from the extrapolated start: once more from the last fitted point
        if len(path) < 2:
            raise
        return refit(extrapolated_start(path[-1:], theta))



def profile_curve(residual, jacobian, best, name: str, thetas, max_nfev: int = 200) -> list[tuple[float, float]]:
    """(theta, Delta(-2 log L)) of the profile likelihood of ``name`` at each of ``thetas``, sorted by theta.

    At each value the parameter is fixed and the others refitted; values are visited outward from the estimate
    on each side, each started where the path of the others' optima through the two values nearer the estimate
    points (:func:`extrapolated_start`). ``best``: the unconstrained fit.
    A value whose refit fails (non-finite residuals: a solve failed) ends that side: the curve stops there.
    """
    theta_hat, chi_min = best.params[name].value, best.chisqr
    thetas = np.sort(np.asarray(thetas, float))
    points = []
    for side in (thetas[thetas < theta_hat][::-1], thetas[thetas >= theta_hat]):
        path = [(theta_hat, best.params)]
        for t in side:
            try:
                out = _profile_point(residual, jacobian, path, name, t, max_nfev, chi_min)
            except ValueError:
                break
            points.append((float(t), float(max(out.chisqr - chi_min, 0.0))))
            path = [path[-1], (float(t), out.params)]
    return sorted(points)


def extrapolated_start(path, theta: float):
    """Start of a profile refit at ``theta`` from ``path``, the last one or two (theta, lmfit Parameters) fitted:
    each varying value extended linearly through the last two to ``theta`` (a secant predictor of the path of the
    others' optima, so the refit starts near its optimum rather than its neighbour's), held inside its bounds;
    the last fitted values when there is only one. The extension reaches at most two of the last gaps beyond the
    last point (and back no further than the point before it): a secant step far past a flat stretch of the profile
    is not followed blindly. Returns a new Parameters (one copy: a copy of a trial's Parameters takes tens of
    milliseconds)."""
    (t1, p1) = path[-1]
    start = p1.copy()
    if len(path) < 2 or path[-2][0] == t1:
        return start
    t0, p0 = path[-2]
    w = min(max((theta - t1) / (t1 - t0), -1.0), 2.0)
    for k, par in start.items():
        if par.vary:
            par.set(value=float(np.clip(p1[k].value + w * (p1[k].value - p0[k].value), par.min, par.max)))
    return start



def profile_grid(estimate: float, interval: tuple[float, float], bounds: tuple[float, float], n: int = 15,
                 fitted=()) -> np.ndarray:
    """``n`` values evenly spaced over ``interval`` widened by a quarter of its width on each side, within ``bounds``.

    fitted: values whose profile is already known (the interval search's steps, the estimate); a grid value
    within a third of the spacing of one is left out, since that value already stands on the curve there."""
    lo, hi = interval
    width = hi - lo if math.isfinite(hi - lo) and hi > lo else 0.2 * max(abs(estimate), 1e-3)
    grid = np.linspace(max(min(lo, estimate) - width / 4, bounds[0]), min(max(hi, estimate) + width / 4, bounds[1]), n)
    known = np.asarray(list(fitted), float)
    if known.size == 0 or n < 2:
        return grid
    near = np.min(np.abs(grid[:, None] - known[None, :]), axis=1) < (grid[1] - grid[0]) / 3
    return grid[~near]
