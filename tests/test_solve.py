"""Solver checks: closed form, steady state, gradients, batching, independent integrator, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hcvdyn
from hcvdyn import Regimen, SolverOptions, get_model
from hcvdyn.solve.adaptive import log10_load

TIGHT = SolverOptions(rtol=1e-11, atol=1e-11)


def neumann_closed_form(t, log10_v0, eps, c, delta, t0):
    """V(t) of Neumann et al. 1998 (Science 282:103-107) with T held at T0 and eta = 0: the biphasic closed form."""
    root = math.sqrt((c - delta) ** 2 + 4 * (1 - eps) * c * delta)
    l1, l2 = ((c + delta) + root) / 2, ((c + delta) - root) / 2
    a = (eps * c - l2) / (l1 - l2)
    tau = np.maximum(t - t0, 0.0)
    return log10_v0 + np.log10(a * np.exp(-l1 * tau) + (1 - a) * np.exp(-l2 * tau))


@pytest.mark.parametrize("eps,delta", [(0.81, 0.14), (0.95, 0.14), (0.96, 0.41), (0.999, 0.05)])
def test_neumann_biphasic_closed_form(eps, delta):
    m = get_model("neumann1998_fixedT")
    t = np.linspace(0.0, 14.0, 141)
    tr = hcvdyn.simulate(m, {"eps": eps, "delta": delta, "log10_V0": 6.3}, t_obs=t, options=TIGHT)
    p = m.defaults()
    expected = neumann_closed_form(t, 6.3, eps, p["c"], delta, p["t0"])
    assert np.max(np.abs(tr.log10_vl - expected)) < 1e-6


def _no_drug(model):
    return {k: 0.0 for k in ("eps", "eta", "rho", "phi", "sigma") if k in model.params}


STEADY_CASES = [(n, {}) for n in sorted(hcvdyn.MODELS)] + [("pkpd3_prolif", {"r": 0.1})]


@pytest.mark.parametrize("name,extra", [pytest.param(n, e, marks=[pytest.mark.slow] if n.startswith("pkpd") else [])
                                        for n, e in STEADY_CASES])  # the PK models' 48-week compiles: slow tier
def test_steady_state_holds_48_weeks_without_drug(name, extra):
    m = get_model(name)
    t = np.array([1.0, 7.0, 28.0, 84.0, 168.0, 336.0])
    tr = hcvdyn.simulate(m, {**_no_drug(m), **extra}, t_obs=t)
    p = m.defaults(**_no_drug(m), **extra)
    t0, i0, _ = (float(x) for x in m.steady_state(p))
    rel = lambda x, ref: np.max(np.abs(np.asarray(x) / ref - 1.0))  # noqa: E731
    assert rel(10**tr.log10_vl, 10 ** p["log10_V0"]) < 1e-9
    assert rel(10**tr.log10_vi, 10 ** p["log10_V0"]) < 1e-9
    assert rel(tr.target_cells, t0) < 1e-9
    assert rel(tr.infected_cells, i0) < 1e-9


TRIAL_REGIMENS = (
    Regimen("peginterferon_alfa2b", 1.5, "ug/kg", 7.0, stop_day=84),
    Regimen("ribavirin", 500.0, "mg", 0.5, stop_day=84),
    Regimen("celgosivir", 400.0, "mg", 1.0, stop_day=84),
)


@pytest.fixture(scope="module")
def pkpd3():
    m = get_model("pkpd3")
    doses = hcvdyn.dose_arrays(TRIAL_REGIMENS, m.pk_drugs)
    p = m.defaults(ifn_eta_max=0.2, cel_sigma_max=0.1, ifn_ec50=0.2, ifn_emax_late=0.5)
    return m, doses, p


def _jacobian_vs_fd(model, params, doses, t_obs, names, step=1e-4):
    opts = SolverOptions(rtol=1e-12, atol=1e-12)
    base = {k: jnp.float64(v) for k, v in params.items()}

    def f(theta):
        return log10_load(model, {**base, **dict(zip(names, theta))}, doses, t_obs, opts)

    theta0 = jnp.array([params[n] for n in names])
    jac = np.asarray(jax.jit(jax.jacfwd(f))(theta0))
    h = np.array([step * abs(v) if v != 0 else 1e-6 for v in np.asarray(theta0)])
    eye = np.eye(len(names)) * h
    fv = jax.jit(jax.vmap(f))
    plus, minus = np.asarray(fv(theta0 + eye)), np.asarray(fv(theta0 - eye))
    fd = ((plus - minus) / (2 * h[:, None])).T  # (n_t, n_params)
    return jac, fd


def _assert_jacobian(model, params, doses, t_obs):
    """Each column within 1e-5 of central differences, relative to the column's largest entry.

    p is structurally non-identifiable from the load when target cells do not proliferate (s is derived
    from the steady state, so p only rescales I): both derivatives must then vanish.
    """
    names = list(model.params.names)
    jac, fd = _jacobian_vs_fd(model, params, doses, t_obs, names)
    for j, name in enumerate(names):
        scale = np.max(np.abs(fd[:, j]))
        if name == "p" and not model.proliferation:
            assert np.max(np.abs(jac[:, j])) < 1e-12 and scale < 1e-9
            continue
        assert scale > 1e-9, f"{name} has no influence on the load"
        err = np.max(np.abs(jac[:, j] - fd[:, j])) / scale
        assert err < 1e-5, f"{name}: relative error {err:.2e}"


@pytest.mark.slow  # the costliest compilations of the quick tier; still run in CI
def test_jacfwd_matches_central_differences_pkpd3(pkpd3):
    """Every free parameter of the three-drug PK-PD model, with weekly/daily/twice-daily dosing."""
    m, doses, p = pkpd3
    t_obs = np.array([0.25, 1.0, 2.0, 3.0, 7.0, 14.0, 21.0, 28.0])
    _assert_jacobian(m, p, doses, t_obs)


@pytest.mark.slow
def test_jacfwd_matches_central_differences_constant_model():
    """Constant-efficacy model including the onset delay t0 and the end of treatment t_end (moving discontinuities)."""
    m = get_model("agi_constant")
    p = m.defaults(eps=0.8, eta=0.1, rho=0.3, phi=0.2, sigma=0.1, t_end=10.0)
    t_obs = np.array([0.5, 1.0, 2.0, 7.0, 14.0, 28.0])
    _assert_jacobian(m, p, {}, t_obs)


@pytest.mark.slow  # the costliest compilations of the quick tier; still run in CI
def test_vmap_equals_loop(pkpd3):
    m, _, _ = pkpd3
    t = np.array([0.0, 1.0, 7.0, 28.0, 56.0])
    params = {"ifn_ec50": [0.1, 0.3, 0.9], "log10_V0": [5.5, 6.5, 7.0], "delta": [0.1, 0.2, 0.3]}
    regs = [
        TRIAL_REGIMENS,
        TRIAL_REGIMENS[:2],
        (TRIAL_REGIMENS[0], Regimen("ribavirin", 600.0, "mg", 1.0, stop_day=56, missed_days=(3.0, 4.0))),
    ]
    weights = [60.0, 70.0, 95.0]
    batch = hcvdyn.simulate_batch(m, params, regs, t, weights_kg=weights)
    assert batch.log10_vl.shape == (3, 5) and np.all(batch.ok)
    for i in range(3):
        one = hcvdyn.simulate(m, {k: v[i] for k, v in params.items()}, regs[i], t, weight_kg=weights[i])
        np.testing.assert_allclose(batch.log10_vl[i], one.log10_vl, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_drug_that_is_off_contributes_nothing():
    t = np.array([0.5, 3.0, 14.0, 56.0])
    full = get_model("pkpd3")
    two = hcvdyn.HCVModel("ifn_rbv_pk", (("peginterferon_alfa2b", "pk"), ("ribavirin", "pk")))
    shared = {k: v for k, v in full.defaults().items() if k in two.params}
    a = hcvdyn.simulate(full, shared, TRIAL_REGIMENS[:2], t)  # celgosivir modelled but not given
    b = hcvdyn.simulate(two, shared, TRIAL_REGIMENS[:2], t)  # celgosivir not modelled
    np.testing.assert_array_equal(a.log10_vl, b.log10_vl)
    c = hcvdyn.simulate(get_model("agi_constant"), {"rho": 0.0, "phi": 0.0, "sigma": 0.0, "eps": 0.9}, t_obs=t)
    d = hcvdyn.simulate(get_model("neumann1998"), {"eps": 0.9}, t_obs=t)
    np.testing.assert_array_equal(c.log10_vl, d.log10_vl)
    np.testing.assert_array_equal(c.log10_vi, c.log10_vl)  # no non-infectious virions without rho/phi


def test_non_infectious_virions_follow_their_own_equation():
    """V_NI = V - V_I obeys dV_NI/dt = rho (1 - eps) p I - c V_NI (Dixit et al. 2004), checked by quadrature."""
    m = get_model("dixit2004")
    p = m.defaults(eps=0.7, rho=0.6)
    t = np.linspace(0.0, 10.0, 4001)
    tr = hcvdyn.simulate(m, p, t_obs=t, options=TIGHT)
    v_ni = 10**tr.log10_vl - 10**tr.log10_vi
    on = t >= p["t0"]
    source = np.where(on, p["rho"] * (1 - p["eps"]) * p["p"], 0.0) * tr.infected_cells
    # exact variation of constants: V_NI(t) = int_0^t exp(-c (t - s)) source(s) ds
    integrand = source * np.exp(p["c"] * t)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(t))])
    expected = np.exp(-p["c"] * t) * cum
    late = t > 1.0
    np.testing.assert_allclose(v_ni[late], expected[late], rtol=2e-4)


@pytest.mark.slow
def test_agrees_with_scipy_lsoda_over_12_weeks(pkpd3):
    m, _, p = pkpd3
    t = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 7.0, 14.0, 28.0, 56.0, 84.0])
    ours = hcvdyn.simulate(m, p, TRIAL_REGIMENS, t, options=SolverOptions(rtol=1e-10, atol=1e-10))
    ref = hcvdyn.simulate_scipy(m, p, TRIAL_REGIMENS, t, rtol=1e-10, atol=1e-10)
    assert np.max(np.abs(ours.log10_vl - ref.log10_vl)) < 1e-7
    assert np.max(np.abs(ours.log10_vi - ref.log10_vi)) < 1e-7


@pytest.mark.slow
def test_high_load_patients_solve_with_steps_capped_by_their_fastest_mode():
    """Target cells turn over at s/T0 = d + beta V0, faster than virion clearance (c = 6.2/day) above log10 V0
    ~7.8 (7.6/day at 7.88, 31.6/day at 8.5). With steps capped by c alone, the plateau of such a patient sat on
    the edge of Tsit5's stability region and the solve exhausted its step budget (a drawn patient of the
    synthetic design, log10 V0 7.88, delta 0.065); capped by the fastest mode it agrees with LSODA."""
    m = get_model("agi_constant")
    t = np.array([0.0, 1.0, 2.0, 3.0, 7.0, 14.0, 28.0, 56.0, 84.0])
    arm = {"eps": 0.85, "rho": 0.4, "phi": 0.5, "t0": 0.35}
    batch = hcvdyn.simulate_batch(m, {**arm, "log10_V0": [7.8826, 8.5], "delta": [0.0652, 0.0652]}, [(), ()], t)
    assert batch.ok.all()
    for i, v0 in enumerate((7.8826, 8.5)):
        ref = hcvdyn.simulate_scipy(m, {**arm, "log10_V0": v0, "delta": 0.0652}, (), t, rtol=1e-10, atol=1e-10)
        assert np.max(np.abs(batch.log10_vl[i] - ref.log10_vl)) < 1e-5


@pytest.mark.slow
def test_step_budget_exhaustion_is_reported():
    """The reporting path is the same for every model; the smallest one keeps the compilation cheap."""
    m = get_model("neumann1998")
    assert hcvdyn.simulate(m, {}, (), [84.0]).num_steps > 20
    with pytest.raises(RuntimeError, match="solve failed.*max_steps"):
        hcvdyn.simulate(m, {}, (), [84.0], options=SolverOptions(max_steps=20))
    batch = hcvdyn.simulate_batch(m, {"delta": [0.1, 0.2]}, [(), ()], [84.0], options=SolverOptions(max_steps=20))
    assert not batch.ok.any() and np.isnan(batch.log10_vl).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(t_obs=[0.0, 2.0, 1.0]), r"strictly increasing: t_obs\[2\] = 1.0"),
        (dict(t_obs=[0.0, 1.0, 1.0]), "strictly increasing"),
        (dict(t_obs=[0.0, float("nan")]), r"t_obs\[1\] = nan is not finite"),
        (dict(t_obs=[-1.0, 1.0]), "negative"),
        (dict(t_obs=[]), "non-empty"),
        (dict(t_obs=[1.0], params={"ifn_ec50": -1.0}), "'ifn_ec50' = -1.0 outside"),
        (dict(t_obs=[1.0], params={"ifn_emax": 1.5}), "'ifn_emax' = 1.5 outside"),
        (dict(t_obs=[1.0], params={"eps": 0.9}), "unknown parameter 'eps'"),
    ],
)
def test_bad_simulation_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hcvdyn.simulate(get_model("pkpd3"), **kwargs)


def test_regimen_for_unmodelled_drug_is_rejected():
    with pytest.raises(ValueError, match="no PK-mode drug 'celgosivir'"):
        hcvdyn.simulate(get_model("neumann1998"), {}, [TRIAL_REGIMENS[2]], [1.0])


def test_batch_bad_input_names_patient_and_parameter():
    m = get_model("pkpd3")
    with pytest.raises(ValueError, match="'delta' of patient 1 = -0.2"):
        hcvdyn.simulate_batch(m, {"delta": [0.1, -0.2]}, TRIAL_REGIMENS, [1.0])
    with pytest.raises(ValueError, match="lengths"):
        hcvdyn.simulate_batch(m, {"delta": [0.1, 0.2]}, [TRIAL_REGIMENS] * 3, [1.0])
    with pytest.raises(ValueError, match="unknown parameter 'dleta'"):
        hcvdyn.simulate_batch(m, {"dleta": [0.1, 0.2]}, TRIAL_REGIMENS, [1.0])


def test_proliferation_gives_a_triphasic_decline():
    """Dahari et al. 2007: with r > delta a shoulder separates the first phase from a steeper final phase."""
    from hcvdyn.model.library import load_parameter_set

    pset = load_parameter_set("dahari2007_triphasic")
    t = np.linspace(0.0, 56.0, 225)
    tr = hcvdyn.simulate(pset.model, pset.params(), t_obs=t)
    slope = lambda a, b: np.polyfit(t[(t >= a) & (t <= b)], tr.log10_vl[(t >= a) & (t <= b)], 1)[0]  # noqa: E731
    first, shoulder, final = slope(0.4, 1.0), slope(3.0, 10.0), slope(35.0, 56.0)
    assert first < -0.5  # log10/day: the fast first phase
    assert final < 1.3 * shoulder < 0  # the final phase is at least 30% steeper than the shoulder
    no_prolif = hcvdyn.simulate(pset.model, pset.params(r=0.0), t_obs=t)
    assert not np.allclose(no_prolif.log10_vl, tr.log10_vl, atol=1e-2)


def test_step_count_of_the_main_job_course_is_capped():
    """A cost regression fails here: the typical non-responder's 12-week triple course (the main job's patient,
    default SolverOptions) took 6,039 adaptive steps when this cap was set, and may take at most 10% more."""
    from hcvdyn.model.trial_design import load_trial

    spec = load_trial("celgosivir_phase2")
    ps = spec.parameter_set
    tr = hcvdyn.simulate(ps.model, ps.params(), spec.arms["triple"], t_obs=np.array([0, 1, 2, 7, 14, 28, 56, 84.0]), weight_kg=70)
    assert tr.ok and tr.num_steps <= 6650, tr.num_steps


@pytest.mark.slow
def test_new_sampling_schedules_and_regimens_reuse_the_compiled_solver():
    """Sample times and dose lists are padded to bucketed sizes: 5 and 7 samples, 3 and 6 weekly doses, share one
    compiled solver, and the padding changes no value."""
    from hcvdyn.model.dosing import Regimen
    from hcvdyn.solve.adaptive import _compiled
    from hcvdyn.solve.options import SolverOptions, bucket_size

    assert [bucket_size(n) for n in (1, 8, 9, 17, 1000)] == [8, 8, 16, 32, 1024]
    m, opts = hcvdyn.get_model("pkpd3"), SolverOptions(atol=1e-7)
    week = lambda n: [Regimen("peginterferon_alfa2b", 1.5, "ug/kg", 7, stop_day=7 * n)]  # noqa: E731
    a = hcvdyn.simulate(m, {}, week(3), t_obs=[0, 1, 2, 7, 21.0], options=opts)
    compiled = _compiled(m, opts, False)._cache_size()
    b = hcvdyn.simulate(m, {}, week(6), t_obs=[0, 1, 2, 3, 7, 14, 21.0], options=opts)
    assert _compiled(m, opts, False)._cache_size() == compiled
    np.testing.assert_allclose(b.log10_vl[[0, 1, 2, 4, 6]], a.log10_vl, rtol=0, atol=1e-9)  # doses after day 21 do not matter


@pytest.mark.slow
def test_constant_efficacy_stops_at_t_end_and_the_virus_rebounds_as_the_closed_form():
    """After t_end the held-T model is linear in (I, V) with no drug: d(I, V)/dt = [[-delta, beta T0], [p, -c]] (I, V),
    solved exactly by the matrix exponential from the state at t_end (Neumann et al. 1998 without treatment).
    Before t_end nothing changes; the solver's jump times include t_end, and LSODA split there agrees."""
    from scipy.linalg import expm

    m = get_model("neumann1998_fixedT")
    p = m.defaults(eps=0.95, delta=0.2, log10_V0=6.3, t_end=28.0)
    t = np.concatenate([np.linspace(0.0, 28.0, 15), np.linspace(28.5, 84.0, 20)])
    tr = hcvdyn.simulate(m, p, t_obs=t, options=TIGHT)
    on = t < 28.0
    expected_on = neumann_closed_form(t[on], 6.3, 0.95, p["c"], 0.2, p["t0"])
    assert np.max(np.abs(tr.log10_vl[on] - expected_on)) < 1e-6
    t0_cells = float(m.steady_state(p)[0])
    at_end = hcvdyn.simulate(m, p, t_obs=[28.0], options=TIGHT)
    state = np.array([at_end.infected_cells[0], 10 ** at_end.log10_vl[0]])
    a = np.array([[-p["delta"], p["beta"] * t0_cells], [p["p"], -p["c"]]])
    expected_off = [np.log10((expm(a * (ti - 28.0)) @ state)[1]) for ti in t[~on]]
    assert np.max(np.abs(tr.log10_vl[~on] - expected_off)) < 1e-6
    assert tr.log10_vl[-1] > tr.log10_vl[on][-1] + 1  # relapse: the load climbs back
    ref = hcvdyn.simulate_scipy(m, p, (), t, rtol=1e-11, atol=1e-11)
    assert np.max(np.abs(tr.log10_vl - ref.log10_vl)) < 1e-6
    from hcvdyn.solve.grid import grid_doses, population_solver  # fixed steps cannot follow the rebound: refused

    idx, amt = grid_doses((), (), 84, 24, np.full(2, 70.0))
    with pytest.raises(ValueError, match=r"constant efficacies stop at t_end = 28 days, within the 84-day grid"):
        population_solver(m, 84, 24)({k: np.full(2, v) for k, v in p.items()}, idx, amt)
    idx, amt = grid_doses((), (), 27, 24, np.full(2, 70.0))
    grid = np.asarray(population_solver(m, 27, 24)({k: np.full(2, v) for k, v in p.items()}, idx, amt))[:, 3, 0] / math.log(10)
    days = hcvdyn.simulate(m, p, t_obs=np.arange(28.0), options=TIGHT).log10_vl
    assert np.max(np.abs(grid - days)) < 1e-2  # up to the end of treatment the grid follows
    default = hcvdyn.simulate(m, {**p, "t_end": m.params["t_end"].default}, t_obs=t, options=TIGHT)
    np.testing.assert_allclose(default.log10_vl[on], tr.log10_vl[on], atol=1e-9)  # the default never stops
    with pytest.raises(ValueError, match=r"parameter 't_end' = -1.0 outside its admissible range"):
        hcvdyn.simulate(m, {"t_end": -1.0}, t_obs=t)
@pytest.mark.parametrize("t_end,jump_ts", [(1e4, False), (28.0, True)])
def test_steps_that_overflow_are_rejected_not_carried_into_the_next_step_size(t_end, jump_ts):
    """A step across the onset t0 of a potent efficacy without the jump times, or the first step after it stops (ln V
    then relaxes at c / (1 - eps) = 62 /day with the step size of the slow decline before), overflowed to inf/NaN,
    and diffrax's PID controller carried the NaN into every later step size until the step budget ran out.
    Rejected and shrunk instead (_NaNRejecting in solve/adaptive.py), the solve agrees with LSODA."""
    m = get_model("neumann1998_fixedT")
    p = {"log10_V0": 6.0, "eps": 0.9, "delta": 0.15, "t_end": t_end}
    t = np.array([0, 0.5, 1, 2, 3, 7, 14, 21, 28, 29, 31, 35, 42, 56.0])
    ours = hcvdyn.simulate(m, p, t_obs=t, options=SolverOptions(atol=1e-9, jump_ts=jump_ts))
    assert ours.num_steps < 2000
    ref = hcvdyn.simulate_scipy(m, p, (), t, rtol=1e-11, atol=1e-11)
    assert np.max(np.abs(ours.log10_vl - ref.log10_vl)) < 1e-6
