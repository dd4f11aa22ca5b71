"""The outer objective's conditional modes where Levenberg-Marquardt alone is not enough: a conditional density
with two modes (the lower one must define the objective) and a mode left short of its optimum (exact Newton
steps settle it), on a one-parameter model whose g_i is known in closed form."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from hcvdyn.estimate.nlme import Layout, PopulationArrays, engine
from hcvdyn.estimate.population_objective import PopulationObjective

T = np.array([0.5, 1.0, 1.5, 2.0])
SIGMA, OMEGA = 0.2, 1.0
X = np.array([0.0, OMEGA, SIGMA])  # (beta, omega, sigma): u = beta + eta


def double_well(u, t):
    """log10 load (u^2 + 0.1 u) t: with data y = t, g(eta) has two wells, near -1.05 and +0.95."""
    return (u[0] ** 2 + 0.1 * u[0]) * t


def g_exact(eta: float) -> float:
    f = (eta**2 + 0.1 * eta) * T
    return float(np.sum((T - f) ** 2) / SIGMA**2 + T.size * np.log(2 * np.pi * SIGMA**2) + eta**2 / OMEGA**2)


def well(lo: float, hi: float) -> tuple[float, float]:
    r = minimize_scalar(g_exact, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    return float(r.x), float(r.fun)


@pytest.fixture(scope="module")
def objective():
    n = 2
    arrays = PopulationArrays(jnp.zeros((n, 1)), jnp.ones((n, 1, 1)), jnp.ones((n, 1, 1)), jnp.tile(jnp.asarray(T), (n, 1)),
                              jnp.zeros((n, T.size), bool), jnp.zeros((n, T.size)), jnp.ones((n, T.size), bool),
                              jnp.tile(jnp.asarray(T), (n, 1)))
    return PopulationObjective(engine(double_well, Layout(1, 1), "foce-i"), arrays, ("upper well", "lower well"))


def test_a_lower_second_mode_is_found_and_named(objective):
    (low, g_low), (high, g_high) = well(0.0, 2.0), well(-2.0, 0.0)
    assert g_low < g_high - 0.1  # the data make the positive well the lower one
    objective.restart_modes(np.array([[-1.0], [1.0]]))  # patient 1 warm-started in the higher well
    eta = objective.evaluate(X)[3]
    assert eta[0, 0] == pytest.approx(high, abs=1e-5) and eta[1, 0] == pytest.approx(low, abs=1e-5)  # Levenberg-Marquardt's tolerance
    lower, ids, rivals = objective.second_modes(X)
    assert ids == ("upper well",) and rivals == {}
    np.testing.assert_allclose(lower[:, 0], [low, low], atol=1e-5)
    objective.restart_modes(np.array([[low], [low]]))
    assert objective.second_modes(X)[1:] == ((), {})


def test_exact_newton_steps_settle_a_mode_left_short(objective):
    """Started 0.1 off the higher well's bottom, the polish ends on it: the OFV terms are those at the exact
    modes, as the conditional objective computes them there."""
    high, _ = well(-2.0, 0.0)
    low, _ = well(0.0, 2.0)
    per, _, eta, g_settled, unsettled = objective.settle(jnp.asarray(X), np.array([[high + 0.1], [low - 0.1]]))
    np.testing.assert_allclose(eta[:, 0], [high, low], atol=1e-6)
    assert not unsettled.any()
    at_modes = np.asarray(objective.engine.conditional(jnp.asarray(X), objective.arrays, jnp.asarray(eta))[2])
    np.testing.assert_allclose(per, at_modes, atol=2e-5)  # to POLISH_TOL's decrement
    g = np.asarray(objective.engine.conditional(jnp.asarray(X), objective.arrays, jnp.asarray(eta))[0])
    np.testing.assert_allclose(g, [g_exact(high), g_exact(low)], atol=1e-8)
    np.testing.assert_allclose(g_settled, g, atol=1e-10)


def test_a_mode_whose_hessian_is_not_positive_definite_is_left_and_named(objective):
    """At the top of the barrier between the wells (g_i's maximum on the line) no Newton step is taken, the
    patient is marked unsettled, and an evaluation there names it."""
    top = minimize_scalar(lambda e: -g_exact(e), bounds=(-1.0, 0.9), method="bounded", options={"xatol": 1e-12}).x
    per, _, eta, _, unsettled = objective.settle(jnp.asarray(X), np.array([[top], [top]]))
    np.testing.assert_allclose(eta[:, 0], [top, top])
    assert unsettled.all()
    fresh = PopulationObjective(objective.engine, objective.arrays, objective.ids)
    fresh.restart_modes(np.array([[top], [0.9]]))  # Levenberg-Marquardt sees no gradient at the top and stays
    fresh.evaluate(X)
    assert fresh.unsettled == ("upper well",)
    fresh.unsettled = ()
    fresh.evaluate(X)  # from the cache: the names come back with the point
    assert fresh.unsettled == ("upper well",) and fresh.evaluations == 1
