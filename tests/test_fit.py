"""Individual fits: exact Jacobian, M3 censoring, parameter recovery, convergence reporting, bad input."""

import math
from dataclasses import replace

import jax.numpy as jnp
import numpy as np
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

import hcvdyn
from hcvdyn.estimate.data import PatientData
from hcvdyn.estimate.fit import fit_patient
from hcvdyn.estimate.likelihood import m3_residuals, residual_fn
from hcvdyn.estimate.profile import wald_interval
from hcvdyn.solve.options import SolverOptions

MODEL = hcvdyn.get_model("neumann1998_fixedT")
FREE = ("log10_V0", "eps", "delta")
TRUTH = {"log10_V0": 6.3, "eps": 0.97, "delta": 0.35}
DAYS = np.array([0, 0.5, 1, 2, 3, 7, 14, 21, 28, 42, 56, 84.0])
LLOQ = math.log10(15.0)


def synthetic(seed, truth=TRUTH, sigma=0.2, days=DAYS, censor=True):
    """Noisy log10 loads with samples below the limit censored (value = limit)."""
    rng = np.random.default_rng(seed)
    f = hcvdyn.simulate(MODEL, truth, t_obs=days).log10_vl
    y = f + sigma * rng.standard_normal(days.size)
    cens = (y < LLOQ) if censor else np.zeros(days.size, bool)
    return PatientData(f"s{seed}", "", days, np.where(cens, LLOQ, y), cens, np.full(days.size, LLOQ))


def test_m3_residuals_match_the_likelihood():
    from scipy.stats import norm

    pred, y, lloq, s = jnp.array([3.0, 0.5, 2.0]), jnp.array([3.4, 1.2, 1.2]), jnp.full(3, 1.2), 0.2
    r = np.asarray(m3_residuals(pred, y, jnp.array([False, True, True]), lloq, s))
    assert r[0] == pytest.approx(2.0)
    assert r[1] ** 2 == pytest.approx(-2 * norm.logcdf((1.2 - 0.5) / 0.2), rel=1e-12)
    assert r[2] ** 2 == pytest.approx(-2 * norm.logcdf((1.2 - 2.0) / 0.2), rel=1e-12)


def test_residual_sd_mle_against_closed_form_and_direct_likelihood():
    from scipy.optimize import minimize_scalar
    from scipy.stats import norm

    from hcvdyn.estimate.likelihood import raw_errors, residual_sd_mle

    rng = np.random.default_rng(4)
    e = 0.25 * rng.standard_normal(300)
    s, se, m2ll = residual_sd_mle(e)
    assert s == pytest.approx(math.sqrt(np.mean(e**2)), rel=1e-8)
    assert m2ll == pytest.approx(-2 * np.sum(norm.logpdf(e, scale=s)) - e.size * math.log(2 * math.pi), rel=1e-10)
    assert se == pytest.approx(s / math.sqrt(2 * e.size), rel=1e-4)  # inverse Fisher information of sigma
    s_df, se_df, m2ll_df = residual_sd_mle(e, n_par=60)
    assert s_df == pytest.approx(math.sqrt(np.sum(e**2) / (300 - 60)), rel=1e-8) and se_df == pytest.approx(se * math.sqrt(300 / 240))
    assert m2ll_df == m2ll  # the likelihood is that of the ML estimate
    # censored samples: the full M3 log-likelihood written with scipy.stats, constants included
    margins = np.array([-0.3, -0.1, 0.05, 0.2, 0.6, 1.5])
    direct = minimize_scalar(lambda v: -np.sum(norm.logpdf(e, scale=v)) - np.sum(norm.logcdf(margins / v)),
                             bounds=(0.05, 1.0), method="bounded", options={"xatol": 1e-12}).x
    assert residual_sd_mle(e, margins)[0] == pytest.approx(direct, rel=1e-6)
    assert residual_sd_mle(e, margins)[0] > s  # samples predicted above their limit widen it
    # the standardized M3 residuals are inverted exactly, whichever tail the censored ones are in
    pred = jnp.array([1.0, 1.2, 0.5, 3.0, 1.17, -5.0])
    y, cens, lloq = jnp.array([1.1, 1.2, 1.2, 1.2, 1.2, 1.2]), jnp.array([False, True, True, True, True, True]), jnp.full(6, 1.2)
    obs, cen = raw_errors(np.asarray(m3_residuals(pred, y, cens, lloq, 0.2)), np.asarray(cens), 0.2)
    assert obs == pytest.approx([0.1]) and cen == pytest.approx(np.asarray(lloq - pred)[1:], rel=1e-9)
    with pytest.raises(ValueError, match="5 observed samples cannot inform it beside 5"):
        residual_sd_mle(e[:5], n_par=5)


def test_profile_interval_is_wald_for_a_linear_model_and_the_exact_profile_for_a_nonlinear_one():
    """profile_interval against closed forms: a straight line (chi-square quadratic: profile = Wald, SE
    sigma/sqrt(Sxx)) and an exponential decay, whose exact profile (amplitude eliminated in closed form,
    roots by brentq) is asymmetric."""
    import lmfit
    from scipy.optimize import brentq
    from scipy.stats import norm

    from hcvdyn.estimate.optimize import minimize_least_squares
    from hcvdyn.estimate.profile import profile_curve, profile_grid, profile_interval

    rng = np.random.default_rng(7)
    x, sigma = np.linspace(0, 10, 12), 0.3
    z = norm.ppf(0.975)

    def problem(model_f, grad_f, y, start):
        def residual(pv):
            return (y - model_f(pv["a"].value, pv["b"].value)) / sigma

        def jacobian(pv):
            g = -np.array(grad_f(pv["a"].value, pv["b"].value)).T / sigma
            return g[:, [i for i, n in enumerate(("a", "b")) if pv[n].vary]]

        pars = lmfit.Parameters()
        pars.add("a", value=start[0], min=-100, max=100)
        pars.add("b", value=start[1], min=-100, max=100)
        return residual, jacobian, minimize_least_squares(residual, jacobian, pars, 200)

    y = 1.0 + 0.5 * x + sigma * rng.standard_normal(x.size)
    res, jac, best = problem(lambda a, b: a + b * x, lambda a, b: (np.ones_like(x), x), y, (0.0, 0.0))
    b_hat, se = best.params["b"].value, sigma / math.sqrt(np.sum((x - x.mean()) ** 2))
    assert best.params["b"].stderr == pytest.approx(se, rel=1e-6)
    lo, hi = profile_interval(res, jac, best, "b")
    assert lo == pytest.approx(b_hat - z * se, abs=0.01 * se) and hi == pytest.approx(b_hat + z * se, abs=0.01 * se)

    t_days = np.array([0.5, 1, 2, 3, 5, 8.0])
    y = 5.0 * np.exp(-0.6 * t_days) + sigma * rng.standard_normal(t_days.size)
    res, jac, best = problem(lambda a, b: a * np.exp(-b * t_days), lambda a, b: (np.exp(-b * t_days), -a * t_days * np.exp(-b * t_days)),
                             y, (1.0, 0.1))
    k_hat, se = best.params["b"].value, best.params["b"].stderr

    def excess(k):  # chi-square profiled over the amplitude, less its minimum, less z**2
        e = np.exp(-k * t_days)
        return np.sum((y - (y @ e) / (e @ e) * e) ** 2) / sigma**2 - best.chisqr - z**2

    exact = (brentq(excess, k_hat - 5 * se, k_hat), brentq(excess, k_hat, k_hat + 5 * se))
    lo, hi = profile_interval(res, jac, best, "b")
    assert lo == pytest.approx(exact[0], abs=0.02 * se) and hi == pytest.approx(exact[1], abs=0.02 * se)
    assert abs((hi - k_hat) - (k_hat - lo)) > 0.1 * se  # asymmetric: not the Wald interval

    # the curve for a figure: 15 values over and around the interval, each the exact profile
    grid = profile_grid(k_hat, (lo, hi), (best.params["b"].min, best.params["b"].max))
    assert grid.size == 15 and grid[0] < lo and grid[-1] > hi
    curve = profile_curve(res, jac, best, "b", grid)
    assert [t for t, _ in curve] == pytest.approx(list(grid))
    assert [d for _, d in curve] == pytest.approx([excess(k) + z**2 for k in grid], abs=1e-3)

    def failing(pv):  # the solve fails above k_hat + se: that side of the curve stops there, the fit goes on
        if pv["b"].value > k_hat + se:
            raise ValueError("non-finite residuals")
        return res(pv)

    assert [t for t, _ in profile_curve(failing, jac, best, "b", grid)] == pytest.approx([t for t in grid if t <= k_hat + se])
    # values already fitted (the interval's limits, the estimate) stand in for the grid values next to them
    thinned = profile_grid(k_hat, (lo, hi), (best.params["b"].min, best.params["b"].max), fitted=[lo, k_hat, hi])
    spacing = grid[1] - grid[0]
    assert 12 <= thinned.size < 15 and set(thinned) <= set(grid)
    assert all(min(abs(g - f) for f in (lo, k_hat, hi)) >= spacing / 3 for g in thinned)


def test_profile_refits_start_on_the_extrapolated_path_of_the_other_optima():
    """extrapolated_start extends each varying value linearly through the last two fitted points (at most two gaps
    on), held to its bounds, and leaves the fixed ones. On a straight line y = a + b x the profiled intercept
    a(b) = mean(y) - b mean(x) is linear in b, so after two points the prediction is the refit's optimum itself,
    and profile_curve starts each later refit there."""
    import lmfit

    from hcvdyn.estimate.optimize import minimize_least_squares
    from hcvdyn.estimate.profile import extrapolated_start, profile_curve

    def pars(a, b, c=0.0):
        p = lmfit.Parameters()
        p.add("a", value=a, min=-10, max=10)
        p.add("b", value=b, min=-10, max=10)
        p.add("c", value=c, vary=False)
        return p

    one = extrapolated_start([(0.0, pars(1.0, 0.0, 7.0))], 0.5)
    assert [one[k].value for k in "abc"] == [1.0, 0.0, 7.0]  # one point: its values
    start = extrapolated_start([(0.0, pars(1.0, 2.0, 5.0)), (1.0, pars(2.0, 9.0, 6.0))], 2.0)
    assert start["a"].value == pytest.approx(3.0) and start["b"].value == 10.0 and start["c"].value == 6.0  # b at its bound; c fixed
    far = extrapolated_start([(0.0, pars(1.0, 0.0)), (1.0, pars(2.0, 0.0))], 11.0)
    assert far["a"].value == pytest.approx(4.0)  # ten gaps on: extended two

    rng = np.random.default_rng(3)
    x = np.linspace(0, 5, 9)
    y = 2.0 - 0.7 * x + 0.1 * rng.standard_normal(x.size)
    calls = []

    def residual(pv):
        calls.append((pv["b"].value, pv["a"].value))
        return y - pv["a"].value - pv["b"].value * x

    def jacobian(pv):
        return -np.ones((x.size, 1)) if not pv["b"].vary else -np.stack([np.ones_like(x), x], 1)

    def fit_at(b, start):
        p = start.copy()
        p["b"].set(value=b, vary=False)
        return minimize_least_squares(residual, jacobian, p, 50)

    path = [(b, fit_at(b, pars(0.0, b)).params) for b in (-0.7, -0.6)]
    predicted = extrapolated_start(path, -0.4)
    assert predicted["a"].value == pytest.approx(y.mean() + 0.4 * x.mean(), rel=1e-6)
    assert fit_at(-0.4, predicted).nfev <= 2 and fit_at(-0.4, path[-1][1]).nfev > 2  # at its optimum; the neighbour is not

    best = minimize_least_squares(residual, jacobian, pars(0.0, 0.0), 50)
    b_hat = best.params["b"].value
    calls.clear()
    grid = b_hat + 0.01 * np.arange(1, 7)
    assert len(profile_curve(residual, jacobian, best, "b", grid)) == 6
    first_a = {b: a for b, a in reversed(calls)}  # the intercept each refit started from
    assert first_a[grid[0]] == pytest.approx(best.params["a"].value)  # the first from the estimate's
    for b in grid[1:]:  # the others on the path: the profiled intercept itself
        assert first_a[b] == pytest.approx(y.mean() - b * x.mean(), rel=1e-9)


def test_unit_trust_region_fits_parameters_far_from_one():
    """The least-squares fits size their trust region in the parameters' own units (x_scale = 1). Parameters far
    from 1 still fit: a count near 2e7 (Tmax) with a rate near 0.1, and a rate constant near 3e-7 (beta), from
    starts 10-100 times off, reach the optimum found with the region scaled by the Jacobian's column norms, in as
    few evaluations."""
    import lmfit

    from hcvdyn.estimate.optimize import minimize_least_squares
    from hcvdyn.model.catalog import get_model

    declared = get_model("pkpd3_prolif").params
    t = np.linspace(0.5, 28, 12)
    rng = np.random.default_rng(0)
    cases = {  # free parameters (name, truth, start) and a curve of them, log10 units
        "count": ((("Tmax", 1.85e7, 5e5), ("delta", 0.12, 1.0)),
                  lambda a, d: np.log10(a) - d * t / np.log(10) + np.log10(1 + 50 * np.exp(-3 * d * t))),
        "rate": ((("beta", 3e-7, 3e-5), ("delta", 1.5, 0.2)), lambda b, d: 6.0 + np.log10(np.exp(-d * t) + b * 1e6 * t)),
    }
    for name, (free, curve) in cases.items():
        y = curve(*(v for _, v, _ in free)) + 0.05 * rng.standard_normal(t.size)

        def residual(pv, curve=curve, free=free, y=y):
            return (y - curve(*(pv[k].value for k, _, _ in free))) / 0.05

        def jacobian(pv, residual=residual, free=free):  # central differences in relative steps
            cols = []
            for k, _, _ in free:
                h = 1e-6 * pv[k].value
                up, down = pv.copy(), pv.copy()
                up[k].value, down[k].value = pv[k].value + h, pv[k].value - h
                cols.append((residual(up) - residual(down)) / (2 * h))
            return np.stack(cols, 1)

        pars = lmfit.Parameters()
        for k, _, start in free:
            pars.add(k, value=start, min=declared[k].lower, max=declared[k].upper)
        ours = minimize_least_squares(residual, jacobian, pars, 400)
        scaled = lmfit.Minimizer(residual, pars, scale_covar=False).minimize(method="least_squares", jac=jacobian, x_scale="jac", max_nfev=400)
        assert ours.chisqr == pytest.approx(scaled.chisqr, rel=1e-6) and ours.nfev <= scaled.nfev + 2, (name, ours.nfev, scaled.nfev)
        for k, _, _ in free:
            assert ours.params[k].value == pytest.approx(scaled.params[k].value, rel=1e-3), (name, k)


def test_satterthwaite_interval_of_a_standard_deviation():
    """The SD of n draws about a known mean (se = sd / sqrt(2 n)) gets the exact chi2_n interval at any level;
    the interval tends to Wald's as the SE shrinks, never moves inwards as it grows, and takes 0, inf, NaN SEs."""
    from scipy.stats import chi2, norm

    from hcvdyn.estimate.profile import satterthwaite_interval

    for n, level in ((200, 0.95), (12, 0.9), (5, 0.99)):
        lo, hi = satterthwaite_interval(0.3, 0.3 / math.sqrt(2 * n), level)
        exact = (0.3 * math.sqrt(n / chi2.ppf(0.5 + level / 2, n)), 0.3 * math.sqrt(n / chi2.ppf(0.5 - level / 2, n)))
        assert (lo, hi) == pytest.approx(exact, rel=1e-6), (n, level)
    # chi2_200's 97.5% and 2.5% points by Wilson & Hilferty's cube root (1931), 241.06 and 162.72, independently
    assert satterthwaite_interval(0.2, 0.01) == pytest.approx((0.2 * math.sqrt(200 / 241.06), 0.2 * math.sqrt(200 / 162.72)), rel=1e-4)
    z = norm.ppf(0.975)
    lo, hi = satterthwaite_interval(0.2, 1e-5)
    assert (0.2 - lo, hi - 0.2) == pytest.approx((z * 1e-5, z * 1e-5), rel=1e-3) and hi - 0.2 > 0.2 - lo
    bounds = [satterthwaite_interval(0.2, se) for se in np.geomspace(1e-4, 100, 200)]
    assert all(b[0] <= a[0] and b[1] >= a[1] for a, b in zip(bounds, bounds[1:]))  # wider as the SE grows
    assert bounds[-1][0] > 0 and bounds[-1][1] > 1e15
    assert satterthwaite_interval(0.2, 0.0) == (0.2, 0.2) and satterthwaite_interval(0.2, math.inf) == (0.0, math.inf)
    assert all(math.isnan(v) for v in satterthwaite_interval(0.2, math.nan))
    with pytest.raises(ValueError, match="sd > 0"):
        satterthwaite_interval(0.0, 0.1)

@pytest.mark.slow
def test_wald_intervals_stay_inside_the_bounds_on_the_declared_scale():
    """Fractions on the logit scale, log-scale parameters on the log scale, then back: eps near 1, whose linear
    interval leaves [0, 1], stays inside; intervals are plain floats (no np.float64 when printed)."""
    from scipy.special import logit
    from scipy.stats import norm

    z = norm.ppf(0.975)
    eps, delta, v0 = (MODEL.params[k] for k in ("eps", "delta", "log10_V0"))
    assert (eps.interval_scale, delta.interval_scale, v0.interval_scale) == ("logit", "log", "linear")
    assert wald_interval(0.877, 0.069)[1] > 1  # the linear interval leaves the bounds
    lo, hi = wald_interval(0.877, 0.069, param=eps)
    assert 0 < lo < 0.877 < hi < 1
    assert logit(hi) - logit(0.877) == pytest.approx(z * 0.069 / (0.877 * 0.123)) == pytest.approx(logit(0.877) - logit(lo))
    lo, hi = wald_interval(0.05, 0.1, param=delta)
    assert lo > 0 and math.log(hi / 0.05) == pytest.approx(z * 0.1 / 0.05) == pytest.approx(math.log(0.05 / lo))
    assert wald_interval(6.0, 0.1, param=v0) == pytest.approx(wald_interval(6.0, 0.1))
    assert wald_interval(1.0, 0.1, param=eps) == pytest.approx((1 - z * 0.1, 1.0))  # at the bound: open there
    assert wald_interval(8.9, 1.0, param=v0)[1] == 9.0
    assert all(math.isnan(v) for v in wald_interval(0.5, math.nan, param=eps))

    sparse = synthetic(0, truth={**TRUTH, "eps": 0.9}, sigma=0.5, days=np.array([0, 1, 2, 7, 14, 28.0]))
    fit = fit_patient(MODEL, sparse, FREE, {"log10_V0": 6.0, "eps": 0.9, "delta": 0.15})  # eps 0.898, SE 0.058
    intervals = {k: fit.interval(k) for k in FREE}
    assert "np.float64" not in repr(intervals)
    for k, (lo, hi) in intervals.items():
        p = MODEL.params[k]
        assert p.lower <= lo <= fit.params[k] <= hi <= p.upper, (k, lo, hi)
    assert wald_interval(fit.params["eps"], fit.stderr["eps"])[1] > 1, "this patient no longer tests the bound"


@pytest.mark.slow
def test_jacobian_matches_central_differences_with_censored_samples():
    p = synthetic(3)
    assert p.censored.sum() >= 3
    opts = SolverOptions(atol=1e-12)
    res, jac = residual_fn(MODEL, FREE, opts)
    fixed = {k: jnp.float64(v) for k, v in MODEL.defaults().items() if k not in FREE}
    data = (jnp.asarray(p.t_days), jnp.asarray(p.log10_vl), jnp.asarray(p.censored), jnp.asarray(p.lloq_log10),
            jnp.ones(p.n_obs, bool), 0.2)
    theta = np.array([6.0, 0.95, 0.25])
    j = np.asarray(jac(jnp.asarray(theta), fixed, {}, *data))
    for k in range(3):
        h = 1e-5 * theta[k]
        e = np.eye(3)[k] * h
        fd = (np.asarray(res(jnp.asarray(theta + e), fixed, {}, *data)) - np.asarray(res(jnp.asarray(theta - e), fixed, {}, *data))) / (2 * h)
        assert np.max(np.abs(j[:, k] - fd)) <= 1e-5 * np.max(np.abs(fd)), FREE[k]


@pytest.mark.slow
def test_censoring_matters():
    """Treating BLQ samples as observed at the limit flattens the second phase; M3 does not."""
    m3, naive = [], []
    for seed in range(8):
        p = synthetic(100 + seed)
        assert p.censored.sum() >= 4
        as_observed = PatientData(p.id, "", p.t_days, p.log10_vl, np.zeros_like(p.censored), p.lloq_log10)
        start = {"log10_V0": 6.0, "eps": 0.95, "delta": 0.2}
        m3.append(fit_patient(MODEL, p, FREE, start).params["delta"])
        naive.append(fit_patient(MODEL, as_observed, FREE, start).params["delta"])
    assert abs(np.median(m3) / TRUTH["delta"] - 1) < 0.15
    assert np.median(naive) < 0.75 * TRUTH["delta"]


@pytest.mark.slow
def test_parameter_recovery_100_patients():
    """100 synthetic patients with between-patient variability: 95% intervals cover the truth >= 90%."""
    rng = np.random.default_rng(2026)
    cover = {k: [] for k in FREE}
    rel_err = {k: [] for k in FREE}
    for i in range(100):
        truth = {
            "log10_V0": 6.3 + 0.4 * rng.standard_normal(),
            "eps": float(1 - 10 ** rng.uniform(-2.5, -1.0)),
            "delta": 0.2 * math.exp(0.4 * rng.standard_normal()),
        }
        p = synthetic(i, truth=truth)
        fit = fit_patient(MODEL, p, FREE, {"log10_V0": 6.0, "eps": 0.9, "delta": 0.15})
        assert fit.success, fit.message
        for k in FREE:
            lo, hi = fit.interval(k)
            cover[k].append(lo <= truth[k] <= hi)
            rel_err[k].append(abs(fit.params[k] / truth[k] - 1))
    for k in FREE:
        print(f"{k}: coverage {np.mean(cover[k]):.2f}, median relative error {np.median(rel_err[k]):.4f}")
        assert np.mean(cover[k]) >= 0.90, k


@pytest.mark.slow
def test_padding_does_not_change_a_fit(monkeypatch):
    """A series of 9 samples is padded to 16 (the shape a 12-sample series gets too, so both share one compiled
    program), its padded samples at its last time and masked out; padding changes nothing."""
    p = synthetic(21)
    short = PatientData("short", "", p.t_days[:9], p.log10_vl[:9], p.censored[:9], p.lloq_log10[:9])
    start = {"log10_V0": 6.0, "eps": 0.9, "delta": 0.15}
    a = fit_patient(MODEL, short, FREE, start)
    assert a.residuals.shape == (9,) and a.n_obs == 9
    from hcvdyn.estimate import optimize

    t, _, _, _, mask = optimize.pad_patients([short])
    assert t.shape == (1, 16) and mask.sum() == 9 and np.all(t[0, 9:] == short.t_days[-1])
    with monkeypatch.context() as m:
        m.setattr(optimize, "bucket_size", lambda n: n)  # no padding: its own shape
        assert optimize.pad_patients([short])[0].shape == (1, 9)
        b = fit_patient(MODEL, short, FREE, start)
    for k in FREE:
        assert a.params[k] == pytest.approx(b.params[k], rel=1e-8)


@pytest.mark.slow
def test_multistart_reports_the_spread_of_optima():
    fit = fit_patient(MODEL, synthetic(7), FREE, {"log10_V0": 6.0, "eps": 0.9, "delta": 0.15}, n_starts=4, seed=1)
    assert fit.starts.shape == (4, 3) and fit.start_objectives.shape == (4,)
    assert fit.objective == pytest.approx(np.min(fit.start_objectives))


def test_non_convergence_is_reported():
    fit = fit_patient(MODEL, synthetic(7), FREE, {"log10_V0": 4.0, "eps": 0.5, "delta": 0.01}, max_nfev=2)
    assert not fit.success and "not converged" in fit.message


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(free=("epsilon",)), "unknown parameter 'epsilon'"),
        (dict(free=()), "no free parameters"),
        (dict(sigma=0.0), "sigma = 0.0 must be a positive"),
        (dict(bounds={"eps": (0.5, 1.5)}), r"\[bounds\] eps: \[0.5, 1.5\] must satisfy"),
        (dict(bounds={"c": (1.0, 10.0)}), "'c' is not a free parameter"),
        (dict(params={"eps": 1.2}), "'eps' = 1.2 outside"),
    ],
)
def test_bad_fit_input(kwargs, match):
    args = dict(free=FREE)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit_patient(MODEL, synthetic(1), **args)


# ---- whole-trial fits ------------------------------------------------------------------------------
from hcvdyn.estimate.data import Dataset
from hcvdyn.estimate.design import FitDesign
from hcvdyn.estimate.problem import build_trial_problem
from hcvdyn.estimate.fit import fit_trial

AGI = hcvdyn.get_model("agi_constant")
ARM_EFFECTS = {"triple": dict(eps=0.9, rho=0.4, phi=0.5), "control": dict(eps=0.9, rho=0.4, phi=0.0)}


@pytest.fixture(scope="module")
def trial_data():
    """40 synthetic patients in two arms, per-patient V0 and delta, some dropouts and BLQ samples."""
    rng = np.random.default_rng(5)
    days = np.array([0, 1, 2, 3, 7, 14, 28, 56, 84.0])
    pats = []
    for i in range(40):
        arm = "triple" if i % 2 == 0 else "control"
        ind = {"log10_V0": 6.5 + 0.4 * rng.standard_normal(), "delta": 0.15 * math.exp(0.4 * rng.standard_normal())}
        f = hcvdyn.simulate(AGI, {**ind, **ARM_EFFECTS[arm]}, t_obs=days).log10_vl
        y = f + 0.2 * rng.standard_normal(days.size)
        c = y < LLOQ
        n = days.size if i % 7 else 6
        pats.append(PatientData(f"p{i}", arm, days[:n], np.where(c, LLOQ, y)[:n], c[:n], np.full(n, LLOQ)))
    return Dataset(tuple(pats))


TRIAL_SPEC = dict(individual=("log10_V0", "delta"), shared=("eps", "rho"), params={"eps": 0.8, "rho": 0.2, "phi": 0.2})


@pytest.mark.slow
def test_trial_jacobian_matches_central_differences(trial_data):
    problem = build_trial_problem(
        AGI, trial_data, {"triple": (), "control": ()}, FitDesign(per_arm={"phi": ["triple"]}, options=SolverOptions(atol=1e-11), **TRIAL_SPEC)
    )
    pars, residual, jacobian, n_obs = problem.parameters(), problem.residual, problem.jacobian, problem.n_obs
    j = jacobian(pars)
    names = [n for n in pars if pars[n].vary]
    assert j.shape == (n_obs, len(names)) == (n_obs, 40 * 2 + 3)
    for name in ["eps", "rho", "phi__triple", "delta__p0", "log10_V0__p7", "delta__p13"]:
        k = names.index(name)
        v, h = pars[name].value, 1e-5 * abs(pars[name].value)
        pars[name].value = v + h
        up = residual(pars)
        pars[name].value = v - h
        down = residual(pars)
        pars[name].value = v
        fd = (up - down) / (2 * h)
        assert np.max(np.abs(j[:, k] - fd)) <= 1e-5 * np.max(np.abs(fd)), name
    # residuals and Jacobian come from one call per point: back at the start, neither is the last point's
    assert np.array_equal(jacobian(pars), j) and not np.array_equal(residual(pars), down)


@pytest.mark.slow
def test_trial_fit_reaches_the_optimum_and_recovers_shared_and_per_arm_effects(trial_data):
    """Every start reaches one optimum, at least as good as a fit started at the truth, and the estimates lie
    within 3 SE of the truth. (Coverage of 95% intervals is a property over replicates: tests/test_sse.py.)

    From the given start, a joint trust-region fit alone stalls with patient p19 at -2 log L 492 (delta 0.73
    against its own optimum 0.32) and a total of 708.8 against 213.3; the per-patient refinement
    (``TrialFit.refined``) is what reaches the optimum. Started at the truth, the fit ends in another local
    optimum (218.5): with a parameter pair per patient and censored samples the likelihood is multimodal."""
    fit = fit_trial(AGI, trial_data, {"triple": (), "control": ()}, per_arm={"phi": ["triple"]}, n_starts=3, seed=2, **TRIAL_SPEC)
    assert fit.success, fit.message
    # three starts (the given one, two with the drug effects drawn in their bounds); the best one is kept
    assert len(fit.start_objectives) == 3 and fit.objective == min(fit.start_objectives)
    assert np.ptp(fit.start_objectives) < 1e-3 and "p19" in fit.refined
    truth = {"eps": 0.9, "rho": 0.4, "phi__triple": 0.5}
    at_truth = fit_trial(AGI, trial_data, {"triple": (), "control": ()}, per_arm={"phi": ["triple"]},
                         **{**TRIAL_SPEC, "params": {"eps": 0.9, "rho": 0.4, "phi": 0.5}})
    assert fit.objective <= at_truth.objective + 1e-3
    for name, true in truth.items():
        assert abs(fit.values[name] - true) < 3 * fit.stderr[name], (name, fit.values[name], fit.stderr[name])
    assert "phi__control" not in fit.values  # fixed at 0 where no celgosivir is given
    assert fit.n_patients == 40 and fit.n_obs == sum(p.n_obs for p in trial_data)


@pytest.mark.slow
def test_trial_fit_reports_non_identifiable_design(trial_data):
    """rho and a control-arm phi enter only as (1 - rho)(1 - phi): the fit must not claim success."""
    fit = fit_trial(AGI, trial_data, {"triple": (), "control": ()}, per_arm=("phi",), **TRIAL_SPEC)
    assert not fit.success and "singular" in fit.message


def test_trial_fit_bad_input(trial_data):
    with pytest.raises(ValueError, match=r"no regimens for arm\(s\) \['control'\]"):
        fit_trial(AGI, trial_data, {"triple": ()}, individual=("delta",))
    with pytest.raises(ValueError, match=r"per_arm 'phi' names arm\(s\) \['double'\]"):
        fit_trial(AGI, trial_data, {"triple": (), "control": ()}, individual=("delta",), per_arm={"phi": ["double"]})
    with pytest.raises(ValueError, match="listed in more than one"):
        fit_trial(AGI, trial_data, {"triple": (), "control": ()}, individual=("delta",), shared=("delta",))
    with pytest.raises(ValueError, match="n_starts = 0 must be >= 1"):
        fit_trial(AGI, trial_data, {"triple": (), "control": ()}, individual=("delta",), n_starts=0)


# ---- the bundled synthetic trial -----------------------------------------------------------------
import re  # noqa: E402

from hcvdyn.estimate.data import read_viral_loads
from hcvdyn.estimate.fitspec import load_fit_spec
from hcvdyn.files import load_toml
from hcvdyn.estimate.synthetic import generate_synthetic_trial, load_truth

SPEC = str(ROOT / "fits/tcl_recovery.toml")
TRUTH_FILE = str(ROOT / "fits/tcl_recovery_truth.toml")


def test_bundled_data_is_reproducible_from_its_truth_file(tmp_path):
    regenerated = generate_synthetic_trial(TRUTH_FILE, tmp_path / "d.csv")
    bundled = open(str(ROOT / "fits/tcl_recovery.csv")).read()
    data_rows = lambda text: [ln for ln in text.splitlines() if not ln.startswith("#")]  # noqa: E731
    assert data_rows(regenerated) == data_rows(bundled)
    assert bundled.startswith("# SYNTHETIC DATA")
    ds = read_viral_loads(str(ROOT / "fits/tcl_recovery.csv"))
    groups = [p.group for p in ds]
    assert len(ds) == 57 and groups.count("nonresponder") == 36 and groups.count("partial_responder") == 21
    assert sorted(ds.arms) == ["control", "double", "triple"]
    assert sum(p.n_obs < 9 for p in ds) == 5 and sum(p.censored.sum() for p in ds) > 0


def nonresponder_week12_means(path) -> dict[str, float]:
    """Mean week-12 drop (log10) of the prior non-responders who complete 12 weeks, per arm; a censored week-12
    sample counts at its limit."""
    drops: dict[str, list[float]] = {}
    for p in read_viral_loads(str(path)):
        if p.group == "nonresponder" and p.t_days[-1] == 84.0:
            drops.setdefault(p.arm, []).append(p.log10_vl[0] - p.log10_vl[-1])
    return {arm: float(np.mean(v)) for arm, v in drops.items()}


def test_trial_shaped_data_follow_their_declared_rule(tmp_path):
    """fits/phase2_synthetic.csv: drawn from its truth file at the first seed from 20261203 whose non-responder
    completers fall within 0.4 log10 of the trial's means (triple 1.2, control 0.4); the rule is in its header."""
    truth = ROOT / "fits/phase2_synthetic_truth.toml"
    bundled = (ROOT / "fits/phase2_synthetic.csv").read_text()
    data_rows = lambda text: [ln for ln in text.splitlines() if not ln.startswith("#")]  # noqa: E731
    assert data_rows(generate_synthetic_trial(truth)) == data_rows(bundled)
    header = " ".join(ln[2:] for ln in bundled.splitlines() if ln.startswith("#"))
    assert header.startswith("SYNTHETIC DATA") and "Rule: Declared before the draw" in header and "seed 20261204" in header
    means = nonresponder_week12_means(ROOT / "fits/phase2_synthetic.csv")
    assert abs(means["triple"] - 1.2) <= 0.4 and abs(means["control"] - 0.4) <= 0.4, means
    (tmp_path / "first.csv").write_text(generate_synthetic_trial(truth, seed=20261203))
    first = nonresponder_week12_means(tmp_path / "first.csv")
    assert abs(first["control"] - 0.4) > 0.4, first  # the seed before it breaks the rule (control 0.82)
    spec = load_fit_spec(ROOT / "fits/phase2_synthetic.toml")
    assert Path(spec.data_path).name == "phase2_synthetic.csv" and spec.report["truth"].endswith("phase2_synthetic_truth.toml")
    assert spec.design.arm_params == {"triple": {"rho": 0.312}, "control": {"rho": 0.312}}
    assert load_truth(truth).arms["triple"]["rho"] == 0.312  # the fixed value is the one the data were drawn with


def test_a_truth_files_rule_heads_its_own_draw_only(tmp_path):
    text = (ROOT / "fits/tcl_recovery_truth.toml").read_text()
    ruled = tmp_path / "ruled.toml"
    ruled.write_text('rule = """Kept the first seed."""\n' + text)
    assert "# Rule: Kept the first seed." in generate_synthetic_trial(ruled)
    assert "Rule:" not in generate_synthetic_trial(ruled, seed=7)  # a replicate of the design was not chosen by it
    (tmp_path / "bad.toml").write_text("rule = 3\n" + text)
    with pytest.raises(ValueError, match=r"bad.toml: rule must be a text, got 3"):
        load_truth(tmp_path / "bad.toml")


@pytest.mark.slow
def test_noise_free_trial_is_recovered_exactly(tmp_path):
    """The machinery (data, M3, block Jacobian, shared-in-arms mapping) recovers the truth without noise."""
    truth_text = re.sub(r"sigma = 0.2 ", "sigma = 0.001 ", open(TRUTH_FILE).read())
    (tmp_path / "t.toml").write_text(truth_text)
    generate_synthetic_trial(tmp_path / "t.toml", tmp_path / "d.csv")
    spec = load_fit_spec(SPEC)
    ds = read_viral_loads(tmp_path / "d.csv")
    fit = fit_trial(spec.model, ds, {a: () for a in ds.arms}, individual=spec.design.individual, shared=spec.design.shared,
                    params=spec.design.params, sigma=0.001, options=SolverOptions(atol=1e-9), max_nfev=400)
    arms = load_toml(TRUTH_FILE)["arms"]
    assert fit.success
    for name, arm in (("eps", "triple"), ("rho", "control"), ("phi", "double")):
        assert fit.values[name] == pytest.approx(arms[arm][name], abs=2e-3)


@pytest.mark.slow
def test_bundled_trial_fit_with_profile_intervals_and_estimated_residual_sd():
    """Noisy bundled data: converges; estimates near the truth; rho's profile interval brackets it.
    With the residual SD estimated too: near its truth (0.2), drug effects as with sigma fixed at 0.2.

    Coverage of the truth is a property over replicates, not of one seed (tests/test_sse.py,
    docs/fitting.md): for this seed rho's estimate (0.509, SE 0.031) is 3.5 SE from 0.4, and both arms
    that inform it say so (rho per arm: control 0.48, triple 0.57).
    """
    spec = load_fit_spec(SPEC)
    ds = read_viral_loads(spec.data_path)
    kw = dict(individual=spec.design.individual, shared=spec.design.shared, params=spec.design.params,
              options=SolverOptions(atol=spec.design.options.atol))
    fit = fit_trial(spec.model, ds, {a: () for a in ds.arms}, sigma=spec.design.sigma, profile=("rho",), profile_points=0, **kw)
    arms = load_toml(TRUTH_FILE)["arms"]
    assert fit.success, fit.message
    for name, arm in (("eps", "triple"), ("rho", "control"), ("phi", "double")):
        assert abs(fit.values[name] - arms[arm][name]) < 0.12
    lo, hi = fit.profile["rho"]  # all three are profiled by tests/test_report.py on these data
    assert lo < fit.values["rho"] < hi and hi - lo == pytest.approx(2 * 1.96 * fit.stderr["rho"], rel=0.15)

    est = fit_trial(spec.model, ds, {a: () for a in ds.arms}, sigma=0.3, estimate_sigma=True, **kw)
    assert est.success and est.sigma_estimated and not fit.sigma_estimated, est.message
    lo, hi = wald_interval(est.sigma, est.sigma_se)
    assert lo < 0.2 < hi and est.sigma_se < 0.02
    for name in ("eps", "rho", "phi"):
        assert est.values[name] == pytest.approx(fit.values[name], abs=0.2 * fit.stderr[name])
        # the SEs scale with the residual SD
        assert est.stderr[name] / fit.stderr[name] == pytest.approx(est.sigma / 0.2, rel=0.05)
    # -2 log L now carries sigma (at its ML value): below its value at sigma = 0.2
    n_obs_uncensored = sum(int((~p.censored).sum()) for p in ds)
    assert est.objective < fit.objective + 2 * n_obs_uncensored * math.log(0.2)
    assert est.aic == pytest.approx(est.objective + 2 * (len(est.values) + 1))


@pytest.mark.slow
def test_pkpd_patient_fit_with_regimens():
    """A PK-mode model: interferon potency, delta and V0 recovered from a patient on the triple regimen."""
    from hcvdyn import Regimen

    model = hcvdyn.get_model("pkpd3")
    regs = [
        Regimen("peginterferon_alfa2b", 1.5, "ug/kg", 7.0, stop_day=84),
        Regimen("ribavirin", 500.0, "mg", 0.5, stop_day=84),
        Regimen("celgosivir", 400.0, "mg", 1.0, stop_day=84),
    ]
    days = np.array([0, 0.5, 1, 2, 3, 5, 7, 10, 14, 21, 28, 42, 56, 70, 84.0])
    truth = {"log10_V0": 6.4, "delta": 0.3, "ifn_ec50": 0.08}
    f = hcvdyn.simulate(model, truth, regs, days).log10_vl
    y = f + 0.1 * np.random.default_rng(11).standard_normal(days.size)
    cens = y < LLOQ
    p = PatientData("pk1", "triple", days, np.where(cens, LLOQ, y), cens, np.full(days.size, LLOQ))
    fit = fit_patient(model, p, tuple(truth), {"log10_V0": 6.0, "delta": 0.15, "ifn_ec50": 0.2}, regs, sigma=0.1)
    assert fit.success, fit.message
    for k, v in truth.items():
        lo, hi = fit.interval(k)
        assert lo <= v <= hi, (k, fit.params[k], lo, hi)
    # the same doses as NONMEM dose rows (data file's dose records instead of regimens): the same fit
    from hcvdyn.model.dosing import DoseRecord

    records = tuple(DoseRecord(r.drug, tuple(r._scheduled_times()), (1.5 * 70 if r.unit == "ug/kg" else r.dose,) * r._scheduled_times().size)
                    for r in regs)
    p_dosed = PatientData("pk1", "triple", days, p.log10_vl, cens, p.lloq_log10, doses=records)
    fit2 = fit_patient(model, p_dosed, tuple(truth), {"log10_V0": 6.0, "delta": 0.15, "ifn_ec50": 0.2}, sigma=0.1)
    for k in truth:
        assert fit2.params[k] == pytest.approx(fit.params[k], rel=1e-9)
    with pytest.raises(ValueError, match="dose records from its data file and regimens were given"):
        fit_patient(model, p_dosed, tuple(truth), regimens=regs)


# ---- treatment ends from the data: on-treatment decline and post-treatment relapse fitted together --------------

RELAPSE_DAYS = np.array([0, 0.5, 1, 2, 3, 7, 14, 21, 28, 29, 31, 35, 42, 56.0])


def test_a_patients_treatment_end_fits_decline_and_relapse_together():
    """Noise-free data of a patient whose treatment stopped at day 28: with its treatment end, the fit recovers the
    truth from a distant start; without it the model, on treatment for ever, cannot follow the rebound."""
    truth = {**TRUTH, "t_end": 28.0}
    f = hcvdyn.simulate(MODEL, truth, t_obs=RELAPSE_DAYS).log10_vl
    assert f[-1] > f[8] + 1  # the data show the relapse
    n = RELAPSE_DAYS.size
    stopped = PatientData("r1", "", RELAPSE_DAYS, f, np.zeros(n, bool), np.full(n, LLOQ), treatment_end_days=28.0)
    start = {"log10_V0": 6.0, "eps": 0.9, "delta": 0.15}
    fit = fit_patient(MODEL, stopped, FREE, start)
    assert fit.success and fit.params["t_end"] == 28.0 and fit.objective < 1e-8
    for k in FREE:
        assert fit.params[k] == pytest.approx(TRUTH[k], rel=1e-4), k
    never = fit_patient(MODEL, replace(stopped, treatment_end_days=math.inf), FREE, start)
    assert never.params["t_end"] == MODEL.params["t_end"].default and never.objective > 100


@pytest.mark.slow
def test_trial_problem_takes_each_patients_treatment_end():
    truth = {"log10_V0": 6.4, "delta": 0.2, **ARM_EFFECTS["triple"]}
    days = RELAPSE_DAYS
    pats = []
    for pid, end in (("a", 28.0), ("b", math.inf)):
        f = hcvdyn.simulate(AGI, {**truth, "t_end": min(end, 1e4)}, t_obs=days).log10_vl
        pats.append(PatientData(pid, "triple", days, f, np.zeros(days.size, bool), np.full(days.size, LLOQ), treatment_end_days=end))
    design = FitDesign(individual=("log10_V0", "delta"), shared=("eps",), params=truth)
    problem = build_trial_problem(AGI, Dataset(tuple(pats)), {"triple": ()}, design)
    np.testing.assert_array_equal(problem.fixed["t_end"], [28.0, AGI.params["t_end"].default])
    assert np.max(np.abs(problem.residual(problem.parameters()))) < 1e-6  # at the truth, relapse included
    assert problem.patient_params(problem.parameters())["a"]["t_end"] == 28.0


@pytest.mark.slow
def test_arm_params_fix_an_effect_that_differs_between_arms():
    """A drug effect taken from the literature (fixed) is given in the arms that receive the drug and 0 in the
    others; at the generating values the residuals vanish, and the fit's per-patient values show the arm's."""
    truth = {"log10_V0": 6.4, "delta": 0.2}
    pats = [PatientData(arm, arm, DAYS, hcvdyn.simulate(AGI, {**truth, **ARM_EFFECTS[arm]}, t_obs=DAYS).log10_vl,
                        np.zeros(DAYS.size, bool), np.full(DAYS.size, LLOQ)) for arm in ARM_EFFECTS]
    design = FitDesign(individual=("log10_V0", "delta"), shared=("eps",), params={**truth, "eps": 0.9, "rho": 0.4, "phi": 0.0},
                       arm_params={"triple": {"phi": 0.5}})
    problem = build_trial_problem(AGI, Dataset(tuple(pats)), {"triple": (), "control": ()}, design)
    np.testing.assert_array_equal(problem.fixed["phi"], [0.5, 0.0])
    assert np.max(np.abs(problem.residual(problem.parameters()))) < 1e-6
    assert [problem.patient_params(problem.parameters())[a]["phi"] for a in ARM_EFFECTS] == [0.5, 0.0]
    # without the arm's value both patients get phi = 0 and the triple patient's curve misses its data
    plain = build_trial_problem(AGI, Dataset(tuple(pats)), {"triple": (), "control": ()}, replace(design, arm_params={}))
    assert np.max(np.abs(plain.residual(plain.parameters()))) > 0.1


@pytest.mark.parametrize(
    "arm_params,match",
    [
        ({"triple": {"eps": 0.5}}, r"arm_params 'triple' fixes \['eps'\], which the fit estimates"),
        ({"double": {"phi": 0.5}}, r"arm_params names arm\(s\) \['double'\] not in the data"),
        ({"triple": {"phi": 1.5}}, r"arm_params 'triple': parameter 'phi' = 1.5 outside its admissible range"),
        ({"triple": {"nope": 1.0}}, r"arm_params 'triple'.*nope"),
    ],
)
def test_bad_arm_params_are_refused(trial_data, arm_params, match):
    with pytest.raises(ValueError, match=match):
        fit_trial(AGI, trial_data, {"triple": (), "control": ()}, individual=("delta",), shared=("eps",), arm_params=arm_params)


@pytest.mark.parametrize(
    "model,end,design,match",
    [
        ("pkpd3", 28.0, dict(individual=("delta",)), r"the data give treatment ends \(patient a: day 28\) but model pkpd3 has no constant-efficacy drug"),
        ("agi_constant", 28.0, dict(individual=("delta", "t_end")), r"t_end is estimated, yet the data give treatment ends"),
        ("agi_constant", 2e4, dict(individual=("delta",)), r"patient a: treatment end: parameter 't_end' = 20000.0 outside its admissible range"),
    ],
)
def test_treatment_ends_the_model_cannot_use_are_refused(model, end, design, match):
    pat = PatientData("a", "x", DAYS, np.full(DAYS.size, 5.0), np.zeros(DAYS.size, bool), np.full(DAYS.size, LLOQ), treatment_end_days=end)
    with pytest.raises(ValueError, match=match):
        build_trial_problem(hcvdyn.get_model(model), Dataset((pat,)), {"x": ()}, FitDesign(**design))


def test_bracketed_profile_interval_finds_the_exact_crossings_and_decides_as_the_test():
    """On a closed-form asymmetric profile (exponential decay, amplitude eliminated) the limits are the exact
    crossings of z^2; a known point (a null fit) is used, not refitted, and the interval covers it exactly when
    its delta is below z^2, even when the delta is within a hair of z^2; an open side ends at its bound."""
    from scipy.optimize import brentq, minimize_scalar
    from scipy.stats import chi2

    from hcvdyn.estimate.profile import bracketed_profile_interval

    t_days = np.array([0.5, 1, 2, 3, 5, 8.0])
    y = 5.0 * np.exp(-0.6 * t_days) + 0.3 * np.random.default_rng(7).standard_normal(t_days.size)

    def chi(k):
        e = np.exp(-k * t_days)
        return np.sum((y - (y @ e) / (e @ e) * e) ** 2) / 0.3**2

    k_hat = minimize_scalar(chi, bounds=(0.01, 5), method="bounded", options={"xatol": 1e-10}).x
    crit = chi2.ppf(0.95, 1)
    calls = []
    delta = lambda k: (calls.append(k), chi(k) - chi(k_hat))[1]  # noqa: E731
    exact = (brentq(lambda k: delta(k) - crit, k_hat - 1, k_hat), brentq(lambda k: delta(k) - crit, k_hat, k_hat + 1))
    calls.clear()
    lo, hi = bracketed_profile_interval(delta, k_hat, 0.05, (0.0, 5.0))
    assert (lo, hi) == pytest.approx(exact, abs=1e-4) and hi - k_hat > k_hat - lo  # asymmetric
    assert len(calls) < 30
    for just in (exact[1] - 1e-6, exact[1] + 1e-6):  # a null point a hair inside, then a hair outside
        known = (just, delta(just))
        calls.clear()
        lo2, hi2 = bracketed_profile_interval(delta, k_hat, 0.05, (0.0, 5.0), known=[known])
        assert just not in calls and (lo2 <= just <= hi2) == (known[1] < crit)
    assert bracketed_profile_interval(delta, k_hat, 0.05, (0.0, k_hat + 0.01))[1] == k_hat + 0.01


def test_least_squares_runs_on_the_requested_blas_threads(monkeypatch):
    """The fit's linear algebra runs on $HCVDYN_BLAS_THREADS BLAS threads (default 1); a bad value is refused by name."""
    import lmfit
    from threadpoolctl import threadpool_info

    from hcvdyn.estimate.optimize import blas_threads, minimize_least_squares

    seen = []

    def residual(pars):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return np.array([pars["a"].value - 1.0, 2 * (pars["a"].value - 1.0)])

    pars = lmfit.Parameters()
    pars.add("a", value=3.0)
    monkeypatch.delenv("HCVDYN_BLAS_THREADS", raising=False)
    out = minimize_least_squares(residual, lambda p: np.array([[1.0], [2.0]]), pars, 100)
    assert out.params["a"].value == pytest.approx(1.0) and set(seen) == {1}
    monkeypatch.setenv("HCVDYN_BLAS_THREADS", "2")
    assert blas_threads() == 2
    for bad in ("0", "two"):
        monkeypatch.setenv("HCVDYN_BLAS_THREADS", bad)
        with pytest.raises(ValueError, match="HCVDYN_BLAS_THREADS"):
            blas_threads()
