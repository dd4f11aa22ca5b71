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


@pytest.mark.slow
def test_modes_of_loads_that_rise_again_are_not_left_short_by_a_small_step_scale(bundled):
    """Two patients of benchmarks/nlme.py's 1,000-patient trial (seed 1; loads that rise again after day 28), at the
    bundled trial's FOCE-I estimate with three random effects: their step scale falls near its floor after steps
    that overshoot. The search once counted the scaled step's tiny predicted gain as a stall and stopped after 7
    steps with the decrement above tolerance ('no conditional mode'); a stall is judged on the unscaled step."""
    from dataclasses import replace

    from hcvdyn.estimate.data import Dataset, PatientData
    from hcvdyn.estimate.population_design import PopulationDesign, build_population_problem

    spec, _ = bundled
    days = [0.0, 1.0, 2.0, 3.0, 7.0, 14.0, 28.0, 56.0, 84.0]
    loads = {
        "V0000": ("control", days[:6], [6.629559692087785, 5.80797078877205, 5.726794885051098, 5.272049010540254,
                                        5.4909187824911205, 4.8016625379303415]),
        "V0115": ("double", days, [6.678748169946273, 6.0933243872962946, 5.923707468096146, 5.927503094946133, 5.7766671601075865,
                                   5.551088147412023, 5.61869652223403, 5.967585196976623, 5.771207146643642]),
        "V0470": ("triple", days, [7.0142069114233445, 6.443982826335818, 6.290098573093963, 5.767994749658871, 5.715209247032179,
                                   5.400948094367713, 5.582191862746573, 6.6415289129860176, 6.278342056999535]),
    }
    lloq = 1.1760912590556813
    pats = tuple(PatientData(pid, arm, np.array(t), np.array(y), np.zeros(len(t), bool), np.full(len(t), lloq))
                 for pid, (arm, t, y) in loads.items())
    fd = replace(spec.design, individual=("log10_V0", "delta", "eps"),
                 shared={k: v for k, v in spec.design.shared.items() if k != "eps"}, estimate_sigma=True)
    data = Dataset(pats)
    problem = build_population_problem(spec.model, data, spec.regimens_for(data),
                                       PopulationDesign(fit=fd, omega={"log10_V0": 0.3, "delta": 0.5, "eps": 0.5}))
    at = {"log10_V0": 6.473653406408242, "delta": -2.0827329638712273, "eps": 1.6497146090167807, "rho": -0.05535566192282854,
          "phi": -0.11370642732959461, "omega_log10_V0": 0.3871153828422826, "omega_delta": 0.644782874367989,
          "omega_eps": 0.12219528415012401, "sigma_res": 0.20347490583672595}
    x = jnp.asarray([at[label] for label in problem.labels])
    eta, ok, steps = (np.asarray(a) for a in problem.engine.modes(x, problem.arrays, jnp.zeros((3, 3))))
    assert ok.all() and steps.max() <= 12, (ok, steps)  # seen: 4, 10, 10 steps (7, 7 and not found before)
