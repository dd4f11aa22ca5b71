"""The population objective (FOCE-I, Laplace), its exact gradient and the importance-sampling marginal likelihood,
checked where the answer is known: a model linear in its random effects has a closed-form marginal likelihood."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from hcvdyn.estimate.covariance import covariance_step, hessian_from_gradient
from hcvdyn.estimate.marginal import importance_sampling
from hcvdyn.estimate.nlme import Layout, PopulationArrays, engine, gn_weights
from hcvdyn.estimate.population_design import OuterValue
from hcvdyn.estimate.population_fit import PopulationObjective, newton_decrease, outer_minimizer, start_inverse_hessian

N_PAT, N_OBS = 6, 5


def linear_predict(u, t):
    """log10 load = intercept + slope * t: linear in the random effects."""
    return u[0] + u[1] * t


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(1)
    t = np.tile(np.linspace(0.0, 4.0, N_OBS), (N_PAT, 1))
    mask = np.ones((N_PAT, N_OBS), bool)
    mask[2, 3:] = False  # a dropout: padded samples
    t[2, 3:] = t[2, 2]
    omega = np.array([[0.3, 0.05], [0.05, 0.02]])
    eta = rng.multivariate_normal([0, 0], omega, N_PAT)
    y = (6.0 + eta[:, :1]) + (-0.5 + eta[:, 1:]) * t + 0.2 * rng.normal(size=t.shape)
    arrays = PopulationArrays(jnp.zeros((N_PAT, 2)), jnp.tile(jnp.eye(2), (N_PAT, 1, 1)), jnp.tile(jnp.eye(2), (N_PAT, 1, 1)),
                              jnp.asarray(y), jnp.zeros(t.shape, bool), jnp.zeros(t.shape), jnp.asarray(mask), jnp.asarray(t))
    L = np.linalg.cholesky(omega)
    x = np.array([6.1, -0.4, L[0, 0], L[1, 1], L[1, 0], 0.25])  # (beta, diag L, below-diagonal L, sigma)

    def exact(x):
        b, s = x[:2], x[5]
        Lm = np.array([[x[2], 0.0], [x[4], x[3]]])
        total = 0.0
        for i in range(N_PAT):
            ti = t[i][mask[i]]
            X = np.stack([np.ones_like(ti), ti], 1)
            cov = X @ Lm @ Lm.T @ X.T + s**2 * np.eye(ti.size)
            total += -2 * multivariate_normal(X @ b, cov).logpdf(y[i][mask[i]])
        return total

    return arrays, x, exact


def total_ofv(eng, arrays, x):
    eta, ok, _ = eng.modes(jnp.asarray(x), arrays, jnp.zeros((N_PAT, eng.layout.n_eta)))
    assert bool(np.all(ok))
    value, grads, _ = eng.objective(jnp.asarray(x), arrays, eta)
    return float(np.sum(value)), np.asarray(grads).sum(axis=0), eta


@pytest.mark.slow
@pytest.mark.parametrize("method", ["foce-i", "laplace"])
def test_linear_model_ofv_is_the_exact_marginal_likelihood(linear, method):
    arrays, x, exact = linear
    eng = engine(linear_predict, Layout(2, 2, block=True), method)
    value, _, _ = total_ofv(eng, arrays, x)
    assert value == pytest.approx(exact(x), abs=1e-8)
    diagonal = x.copy()
    diagonal[4] = 0.0
    assert total_ofv(eng, arrays, diagonal)[0] == pytest.approx(exact(diagonal), abs=1e-8)


@pytest.mark.parametrize("method", ["foce-i", pytest.param("laplace", marks=pytest.mark.slow)])
def test_linear_model_gradient_matches_central_differences(linear, method):
    arrays, x, exact = linear
    eng = engine(linear_predict, Layout(2, 2, block=True), method)
    _, grad, _ = total_ofv(eng, arrays, x)
    h = 1e-5
    fd = np.array([(exact(x + h * e) - exact(x - h * e)) / (2 * h) for e in np.eye(x.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


def test_importance_sampling_matches_the_exact_marginal_within_its_error(linear):
    arrays, x, exact = linear
    eng = engine(linear_predict, Layout(2, 2, block=True), "foce-i")
    _, _, eta = total_ofv(eng, arrays, x)
    m = importance_sampling(eng, x, arrays, eta, n_draws=2000, seed=3)
    assert 0 < m.mc_se < 0.1
    assert abs(m.ofv - exact(x)) < 4 * m.mc_se
    again = importance_sampling(eng, x, arrays, eta, n_draws=2000, seed=3)
    assert again.ofv == m.ofv  # seeded


def test_gradient_as_lmfit_sees_it_matches_differences_through_lmfit(linear):
    """lmfit rescales the gradient for bounded parameters (Minimizer._jacobian): compare it with central
    differences of lmfit's own penalty in its internal (unbounded) coordinates."""
    arrays, x, _ = linear
    eng = engine(linear_predict, Layout(2, 2, block=True), "foce-i")
    objective = PopulationObjective(eng, arrays, tuple(f"P{i}" for i in range(N_PAT)))
    values = [OuterValue("b0", "typical", "a", "linear", 0, -np.inf, np.inf),
              OuterValue("b1", "typical", "b", "linear", 0, -10.0, 10.0),
              OuterValue("omega_a", "omega", "a", "linear", 0, 1e-3, 5.0),
              OuterValue("omega_b", "omega", "b", "linear", 0, 1e-3, 5.0),
              OuterValue("chol_b_a", "cholesky", "b", "linear", 0, -5.0, 5.0),
              OuterValue("sigma_res", "sigma", "", "linear", 0, 1e-3, 5.0)]
    mini, vec = outer_minimizer(objective, values, x)
    result = mini.prepare_fit()
    result.method = "BFGS"
    mini.jacfcn = lambda p: objective.gradient(vec(p)).copy()
    internal = np.array([result.params[n].setup_bounds() for n in result.var_names])
    grad = mini._jacobian(internal)  # lmfit's view of our gradient (private: the method lmfit itself calls)
    h = 1e-6
    fd = np.array([float(np.squeeze(mini.penalty(internal + h * e) - mini.penalty(internal - h * e))) / (2 * h) for e in np.eye(internal.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_covariance_step_of_the_linear_model(linear):
    """At the maximum-likelihood estimate (lmfit BFGS with the exact gradient), R by differences of the exact
    gradient equals the Hessian of the closed-form likelihood; the sandwich and 2 R^-1 are positive definite;
    a singular R is reported, not inverted."""
    arrays, x0, exact = linear
    eng = engine(linear_predict, Layout(2, 2, block=False), "foce-i")
    x0 = np.delete(x0, 4)  # diagonal Omega: six patients do not pin down a correlation
    values = [OuterValue(n, "typical", n, "linear", 0, lo, hi) for n, lo, hi in
              (("b0", -np.inf, np.inf), ("b1", -np.inf, np.inf), ("omega_a", 1e-3, 5), ("omega_b", 1e-3, 5), ("sigma_res", 1e-3, 5))]
    objective = PopulationObjective(eng, arrays, tuple(f"P{i}" for i in range(N_PAT)))
    mini, vec = outer_minimizer(objective, values, x0)
    out = mini.minimize(method="bfgs", jac=lambda p: objective.gradient(vec(p)).copy())
    x = vec(out.params)
    assert out.success and np.max(np.abs(objective.gradient(x))) < 1e-4
    exact_diag = lambda z: exact(np.insert(z, 4, 0.0))  # noqa: E731
    R = hessian_from_gradient(lambda z: total_ofv(eng, arrays, z)[1], x)
    h = 1e-4
    E = np.eye(x.size) * h
    direct = np.array([[(exact_diag(x + a + b) - exact_diag(x + a - b) - exact_diag(x - a + b) + exact_diag(x - a - b)) / (4 * h * h)
                        for b in E] for a in E])
    np.testing.assert_allclose(R, direct, rtol=1e-4, atol=1e-3)
    eta = total_ofv(eng, arrays, x)[2]
    scores = np.asarray(eng.objective(jnp.asarray(x), arrays, eta)[1])
    labels = [f"x{k}" for k in range(x.size)]
    for kind in ("sandwich", "R"):
        step = covariance_step(R, scores, labels, kind)
        assert step.ok and np.all(step.stderr > 0) and step.condition_number >= 1
    sandwich = covariance_step(R, scores, labels)
    np.testing.assert_allclose(sandwich.as_kind("R").covariance, 2 * np.linalg.inv(R), rtol=1e-10)  # re-read, no refit
    np.testing.assert_allclose(sandwich.as_kind("R").as_kind("sandwich").covariance, sandwich.covariance, rtol=1e-12)
    singular = R.copy()
    singular[:, 1] = singular[:, 0]
    singular[1, :] = singular[0, :]
    bad = covariance_step(singular, scores, labels)
    assert not bad.ok and bad.covariance is None and "R matrix" in bad.message and np.all(np.isnan(bad.stderr))


def test_censored_weight_is_finite_and_vanishes_far_below_the_limit():
    """The Gauss-Newton weight of a censored sample, (d ln Phi / df)^2 / (-2 ln Phi), computed in logs: it matches
    the direct formula where that is representable and goes to 0, with a zero derivative, where it underflows."""
    import jax
    from jax.scipy.special import log_ndtr

    lloq, sigma = np.log10(15.0), 0.2
    one = lambda f: gn_weights(jnp.array([f]), jnp.array([True]), jnp.array([lloq]), jnp.array([True]), sigma)[0]  # noqa: E731
    for f in (3.0, 1.0, 0.0, -2.0):
        d = jax.grad(lambda v: log_ndtr((lloq - v) / sigma))(f)
        assert float(one(f)) == pytest.approx(float(d**2 / (-2 * log_ndtr((lloq - f) / sigma))), rel=1e-6)
    assert float(one(-20.0)) == 0.0 and float(jax.grad(one)(-20.0)) == 0.0


def test_start_inverse_hessian_is_the_outer_product_approximation_on_lmfits_scale():
    """R ~ S / 2 (S = sum of per-patient gradient outer products), mapped to lmfit's internal scale by the
    chain-rule factors, floored at 1e-3 of the largest curvature; non-finite scores give the identity."""
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1]
    scale = np.array([1.0, 0.5, 2.0])
    H = 0.5 * scores.T @ scores * np.outer(scale, scale)
    np.testing.assert_allclose(start_inverse_hessian(scores, scale), np.linalg.inv(H), rtol=1e-10)
    uninformed = scores.copy()
    uninformed[:, 2] = 0.0  # no patient informs the third direction
    inv = start_inverse_hessian(uninformed, scale)
    curvature = np.linalg.eigvalsh(np.linalg.inv(inv))
    assert np.all(np.isfinite(inv)) and curvature[0] == pytest.approx(1e-3 * curvature[-1], rel=1e-8)
    np.testing.assert_array_equal(start_inverse_hessian(np.where(np.eye(40, 3) > 0, np.nan, scores), scale), np.eye(3))


def test_newton_decrease_is_the_distance_to_the_optimum_of_a_quadratic_and_ignores_the_parameterisation():
    """For OFV = f* + (x - x*)' R (x - x*) / 2 the decrement is f(x) - f* exactly; rescaling one parameter by 1000
    changes the gradient 1000-fold and leaves the decrement; an R that is not positive definite gives NaN."""
    R = np.array([[4.0, 1.0], [1.0, 2.0]])
    d = np.array([0.03, -0.02])
    assert newton_decrease(R, R @ d) == pytest.approx(0.5 * d @ R @ d, rel=1e-12)
    S = np.diag([1000.0, 1.0])  # x1 measured in units 1000 times smaller
    assert newton_decrease(S @ R @ S, S @ R @ d) == pytest.approx(0.5 * d @ R @ d, rel=1e-12)
    assert np.isnan(newton_decrease(np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones(2)))


def test_modes_where_gauss_newton_overshoots_are_found_in_few_steps():
    """f = 2 exp(-u t): the data fall faster than the typical patient, so at the mode the residuals are negative
    where f is convex, and g's exact curvature exceeds the Gauss-Newton curvature (by 26%, 8% and 35%). Plain
    Gauss-Newton steps overshoot and zigzag (9, 5 and 11 steps, measured with the step scale held at 1); steps
    scaled by the curvature measured along the last one take at most 5. The modes are g's minima (scipy)."""
    from scipy.optimize import minimize_scalar

    t = np.tile(np.array([0.5, 1.0, 2.0, 4.0]), (3, 1))
    y = np.array([[0.9, 0.3, 0.05, 0.0], [1.5, 0.9, 0.4, 0.1], [0.5, 0.1, 0.0, 0.0]])
    arrays = PopulationArrays(jnp.zeros((3, 1)), jnp.ones((3, 1, 1)), jnp.ones((3, 1, 1)), jnp.asarray(y), jnp.zeros(y.shape, bool),
                              jnp.zeros(y.shape), jnp.ones(y.shape, bool), jnp.asarray(t))
    beta, omega, sigma = 0.5, 0.15, 0.1
    eng = engine(lambda u, ti: 2.0 * jnp.exp(-u[0] * ti), Layout(1, 1), "foce-i")
    eta, ok, steps = (np.asarray(a) for a in eng.modes(jnp.array([beta, omega, sigma]), arrays, jnp.zeros((3, 1))))
    assert ok.all() and steps.max() <= 5, steps
    f_at, A_at = (np.asarray(a) for a in eng.linearised(jnp.array([beta, omega, sigma]), arrays, jnp.asarray(eta)))
    for i in range(3):
        g = lambda e: np.sum((y[i] - 2 * np.exp(-(beta + e) * t[i])) ** 2) / sigma**2 + (e / omega) ** 2  # noqa: E731
        mode = minimize_scalar(g, bounds=(-0.5, 2.0), method="bounded", options={"xatol": 1e-10}).x
        assert eta[i, 0] == pytest.approx(mode, abs=1e-5)
        u = beta + mode
        f, df, d2f = 2 * np.exp(-u * t[i]), -2 * t[i] * np.exp(-u * t[i]), 2 * t[i] ** 2 * np.exp(-u * t[i])
        np.testing.assert_allclose(f_at[i], 2 * np.exp(-(beta + eta[i, 0]) * t[i]), rtol=1e-12)  # the CWRES linearisation
        np.testing.assert_allclose(A_at[i, :, 0], -t[i] * f_at[i], rtol=1e-12)
        gauss_newton = np.sum(df**2) / sigma**2 + 1 / omega**2
        assert 1.05 < (gauss_newton - np.sum((y[i] - f) * d2f) / sigma**2) / gauss_newton < 1.4
