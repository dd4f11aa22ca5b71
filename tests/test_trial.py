"""Virtual trials: population sampling, the fixed-grid solver against the adaptive one, the calibrated top line,
scenarios and early prediction."""

import dataclasses
import math

import numpy as np
import pytest

from hcvdyn.model.trial_design import load_trial
from hcvdyn.solve.options import SolverOptions
from hcvdyn.model.dosing import Regimen
from hcvdyn.solve.grid import (
    DEFAULT_STEPS_PER_DAY,
    GRADED_LEVELS,
    DayMesh,
    base_steps,
    base_steps_per_day,
    day_mesh,
    grid_doses,
    population_solver,
    scheduled_doses,
)
from hcvdyn.solve.adaptive import simulate
from hcvdyn.analysis.population import load_population
from hcvdyn.analysis.scenarios import load_scenarios, run_scenarios
from hcvdyn.analysis.virtual_trial import simulate_arm_patients


@pytest.fixture(scope="module")
def pop():
    return load_population("g1_nonresponder_population")


@pytest.fixture(scope="module")
def spec():
    return load_trial("celgosivir_phase2")


@pytest.mark.slow
@pytest.mark.parametrize("arm,bound", [("triple", 5e-5), ("double", 5e-5), ("control", 2e-4)])
def test_fixed_grid_solver_matches_the_adaptive_solver(spec, arm, bound):
    """The default mesh (4 steps/day, graded after each celgosivir dose) against diffrax's adaptive solve (atol
    1e-10) over 12 weeks, each arm (measured 1.9e-5, 2.2e-5 and 7.0e-5 log10; docs/numerics.md).

    Celgosivir's effect saturates within minutes of each dose. On a uniform mesh the first stage of the step after
    a dose over-weights the trough, so the error falls only as 1/steps_per_day (3.7e-4 at 8, half that at 16, on
    the triple arm); the graded step removes that term. The ln-state scheme before was 7e-3 off at 24 steps/day
    and diverged below 12."""
    m = spec.parameter_set.model
    params = spec.parameter_set.params()
    regs = spec.arms[arm]
    ref = simulate(m, params, regs, np.arange(85.0), options=SolverOptions(atol=1e-10)).log10_vl
    p = {k: np.full(2, v) for k, v in params.items()}

    def error(mesh):
        idx, amt = grid_doses(regs, m.pk_drugs, 84, mesh, np.full(2, 70.0))
        ours = np.asarray(population_solver(m, 84, mesh)(p, idx, amt))[:, 3, 0] / math.log(10)
        return np.max(np.abs(ours - ref))

    err = error(day_mesh(m, regs, DEFAULT_STEPS_PER_DAY))
    print(f"{arm}: largest |difference| {err:.2e} log10 at the default mesh")
    assert err < bound
    assert np.ptp(ref) > 0.4  # the comparison covers real dynamics
    if arm != "control":  # the uniform mesh: first order in the step, and the graded step's reason
        uniform, finer = error(DEFAULT_STEPS_PER_DAY), error(2 * DEFAULT_STEPS_PER_DAY)
        assert 0.35 < finer / uniform < 0.65 and uniform > 10 * err


def test_day_mesh_grades_the_step_after_each_celgosivir_dose_only(spec):
    """Celgosivir washes out within a day (ke = cl/v = 6.7/day) and is graded; pegIFN and ribavirin are not."""
    m = spec.parameter_set.model
    mesh = day_mesh(m, spec.arms["triple"], 8)
    h = 1 / 8
    assert mesh.size == 8 + GRADED_LEVELS and math.isclose(sum(mesh.steps), 1.0)
    assert mesh.steps[: GRADED_LEVELS + 1] == pytest.approx([h / 2**GRADED_LEVELS] + [h / 2**k for k in range(GRADED_LEVELS, 0, -1)])
    assert mesh.steps[GRADED_LEVELS + 1 :] == pytest.approx([h] * 7)
    assert day_mesh(m, spec.arms["control"], 8) == DayMesh.uniform(8)  # no celgosivir: nothing to grade
    assert day_mesh(m, spec.arms["triple"], 8, levels=0) == DayMesh.uniform(8)
    # doses map to the steps that start at them: ribavirin at day 2.5 is the node at h * 4 of day 2
    assert mesh.step_of(np.array([0.0, 2.5, 2.51])).tolist() == [0, 2 * mesh.size + GRADED_LEVELS + 4, -1]
    with pytest.raises(ValueError, match=r"not on the solver grid of the mesh's nodes"):
        grid_doses([Regimen("celgosivir", 400.0, "mg", 1.0), Regimen("ribavirin", 500.0, "mg", 1.0, start_day=0.01)],
                   m.pk_drugs, 10, mesh, np.full(1, 70.0))
    with pytest.raises(ValueError, match="sum to one day"):
        DayMesh((0.5, 0.25))


def test_base_steps_double_until_clearance_times_step_is_small():
    """The default 4 base steps hold for c up to 6.4/day (c h <= 1.6; the calibrated population has c = 6.2), and
    double beyond: at 4 steps a day benchmarks/simulate.py's patients with c h near 1.9 were 1.2e-2 log10 off."""
    assert DEFAULT_STEPS_PER_DAY == 4
    assert base_steps_per_day(np.array([3.0, 6.2])) == 4
    assert base_steps_per_day(np.array([3.0, 6.5])) == 8
    assert base_steps_per_day(13.0) == 16
    assert base_steps_per_day(6.2, at_least=8) == 8  # a finer request is kept
    with pytest.raises(ValueError, match="clearance"):
        base_steps_per_day(np.array([6.2, np.nan]))


def test_grid_solver_drops_the_interaction_term_only_where_psi_is_zero(spec):
    """A batch with psi = 0 everywhere is solved without the odds shift of equation (5) (exactly Bliss): bit for bit
    what the model without the interaction gives. A batch with any psi != 0 keeps it for everyone: its psi = 0
    patient agrees with Bliss to rounding, its psi = 5 patient moves (by 8e-4 log10 by day 28: the typical
    patient's celgosivir is near saturation, so the shift has little room)."""
    m = spec.parameter_set.model
    assert m.interaction is not None
    regs = spec.arms["triple"]
    mesh = day_mesh(m, regs, DEFAULT_STEPS_PER_DAY)
    idx, amt = grid_doses(regs, m.pk_drugs, 28, mesh, np.full(2, 70.0))
    params = {k: np.full(2, v) for k, v in {**spec.parameter_set.params(), "psi": 0.0}.items()}
    bliss = np.asarray(population_solver(m, 28, mesh)(params, idx, amt))
    plain = dataclasses.replace(m, interaction=None)
    without = np.asarray(population_solver(plain, 28, mesh)({k: v for k, v in params.items() if k != "psi"}, idx, amt))
    assert np.array_equal(bliss, without)
    mixed = np.asarray(population_solver(m, 28, mesh)({**params, "psi": np.array([0.0, 5.0])}, idx, amt))
    assert np.max(np.abs(mixed[..., 0] - bliss[..., 0])) < 1e-10
    assert np.max(np.abs(mixed[:, 3, 1] - bliss[:, 3, 1])) / math.log(10) > 1e-4


@pytest.mark.slow
def test_patients_on_different_meshes_come_back_in_their_places(spec, pop):
    """Patients whose clearance needs 4, 8 and 16 base steps a day, interleaved, are solved on three meshes and
    returned in the order given: each equals the same patient solved alone, to 1e-12."""
    m, regs = pop.model, spec.arms["triple"]
    c = np.array([6.2, 13.0, 6.2, 7.0, 20.0])
    assert base_steps(c).tolist() == [4, 16, 4, 8, 16]
    params, _, weights, _ = pop.sample(c.size, np.random.default_rng(3))
    params = {**params, "c": c}
    taken = {d: np.ones((c.size, scheduled_doses(regs, d, 28).size), bool) for d in m.pk_drugs}
    together = simulate_arm_patients(m, params, weights, taken, regs, 28, DEFAULT_STEPS_PER_DAY, 1024, states=True)
    for i in range(c.size):
        alone = simulate_arm_patients(m, {k: v[i : i + 1] for k, v in params.items()}, weights[i : i + 1],
                                      {d: v[i : i + 1] for d, v in taken.items()}, regs, 28, DEFAULT_STEPS_PER_DAY, 1024, states=True)
        assert np.max(np.abs(together[i] - alone[0])) < 1e-12


@pytest.mark.slow
def test_missed_doses_change_the_exposure_and_per_kg_dosing_is_weight_free(spec, pop):
    m = pop.model
    regs = spec.arms["triple"]
    p = {k: np.full(3, v) for k, v in spec.parameter_set.params().items()}
    full = {d: np.ones((3, scheduled_doses(regs, d, 28).size), bool) for d in m.pk_drugs}
    v = simulate_arm_patients(m, p, np.array([70.0, 40.0, 70.0]), full, regs, 28, 24, 3)
    # pegIFN 1.5 ug/kg with clearance and volumes per kg: the same concentrations at 40 and 70 kg
    np.testing.assert_allclose(v[0], v[1], rtol=0, atol=1e-12)
    flat = [dataclasses.replace(r, dose=105.0, unit="ug") if r.drug == "peginterferon_alfa2b" else r for r in regs]
    u = simulate_arm_patients(m, p, np.array([70.0, 40.0, 70.0]), full, flat, 28, 24, 3)
    np.testing.assert_allclose(u[0], v[0], rtol=0, atol=1e-9)  # 105 ug at 70 kg is 1.5 ug/kg
    assert np.max((u[1] - u[0])[1:]) < -0.01  # the same flat dose in a 40-kg patient: higher exposure, deeper decline
    # Every interferon dose missed == the same arm without its interferon regimen (an independent path).
    none_ifn = {**full, "peginterferon_alfa2b": np.zeros_like(full["peginterferon_alfa2b"])}
    w = simulate_arm_patients(m, p, np.full(3, 70.0), none_ifn, regs, 28, 24, 3)
    no_ifn_regs = [r for r in regs if r.drug != "peginterferon_alfa2b"]
    x = simulate_arm_patients(m, p, np.full(3, 70.0), {d: full[d] for d in full if d != "peginterferon_alfa2b"}, no_ifn_regs, 28, 24, 3)
    np.testing.assert_allclose(w, x, rtol=0, atol=1e-12)
    assert not np.allclose(w[0], v[0])


def test_off_grid_doses_are_refused(spec):
    from hcvdyn.model.dosing import Regimen

    with pytest.raises(ValueError, match="not on the solver grid"):
        grid_doses([Regimen("celgosivir", 400.0, "mg", 1.0, start_day=0.01)], ["celgosivir"], 10, 16, np.full(1, 70.0))


def test_population_sampling_is_seeded_and_respects_bounds(pop):
    a = pop.sample(500, np.random.default_rng(1))
    b = pop.sample(500, np.random.default_rng(1))
    np.testing.assert_array_equal(a[0]["delta"], b[0]["delta"])
    sd = np.std(np.log(a[0]["delta"]))
    assert sd == pytest.approx(pop.omega["delta"], rel=0.15)
    assert np.std(a[0]["log10_V0"]) == pytest.approx(pop.omega["log10_V0"], rel=0.15)
    for k, v in a[0].items():
        p = pop.model.params[k]
        assert np.all((v >= p.lower) & (v <= p.upper)), k


def test_population_file_errors_name_the_key(tmp_path):
    bad = tmp_path / "pop.toml"
    bad.write_text('parameter_set = "g1_nonresponder"\n[variability]\nbogus = { sd = 0.5, source = "x" }\n')
    with pytest.raises(ValueError, match=r"pop.toml: variability.bogus: unknown parameter"):
        load_population(bad)
    bad.write_text('parameter_set = "g1_nonresponder"\n[variability]\ndelta = { sd = 0.5, source = "x" }\nc = { sd = 0.5, source = "x" }\n'
                   '[correlations]\npairs = [["delta", "c", 1.5]]\n')
    with pytest.raises(ValueError, match=r"correlations.pairs\[0\]: correlation 1.5"):
        load_population(bad)


@pytest.mark.slow
def test_scenarios_on_common_patients(tmp_path):
    sc = load_scenarios("celgosivir_scenarios")
    vt, rows = run_scenarios(sc, n_per_arm=300, seed=3, n_boot=200)
    by = {r["scenario"]: r for r in rows}
    # Removing celgosivir turns the triple arm into control on the same patients: a clear loss.
    assert by["no_celgosivir"]["diff_mean_drop_hi"] < 0
    # Doubling the dose cannot do worse on the same patients (effects are monotone in concentration).
    assert by["cel_800mg_qd"]["diff_mean_drop"] >= -0.02
    assert by["adherence_70"]["diff_mean_drop"] < 0


def test_scenario_file_errors(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('population = "g1_nonresponder_population"\ntrial = "celgosivir_phase2"\nreference_arm = "triple"\n'
                   '[[scenarios]]\nname = "x"\nremove = ["celgosivir"]\nset = [{ drug = "celgosivir", dose = 1.0 }]\n')
    with pytest.raises(ValueError, match=r"scenarios\[0\].set\[0\]: arm 'triple' has no celgosivir"):
        load_scenarios(bad)
    bad.write_text('population = "g1_nonresponder_population"\ntrial = "celgosivir_phase2"\nreference_arm = "nope"\nscenarios = []\n')
    with pytest.raises(ValueError, match="reference_arm 'nope'"):
        load_scenarios(bad)


def test_naive_population_carries_the_non_responder_calibration():
    naive, nr = load_population("g1_naive_population"), load_population("g1_nonresponder_population")
    assert naive.knobs and set(naive.knobs) <= set(nr.knobs)
    idx = [nr.knobs.index(k) for k in naive.knobs]
    np.testing.assert_array_equal(naive.knob_cov, nr.knob_cov[np.ix_(idx, idx)])
    for k in naive.knobs:  # one source of truth: the value is read from the non-responder parameter set
        assert naive.parameter_set.params()[k] == nr.parameter_set.params()[k]
        assert "calibrated on g1_nonresponder_population" in naive.parameter_set.source_of(k)
    draws = nr.draw_typical(400, np.random.default_rng(1))
    z = np.log([d["delta"] for d in draws])  # delta varies on the log scale with its Laplace variance
    j = nr.knobs.index("delta")
    assert np.std(z) == pytest.approx(math.sqrt(nr.knob_cov[j, j]), rel=0.1)
    assert np.mean(z) == pytest.approx(math.log(nr.parameter_set.params()["delta"]), abs=3 * math.sqrt(nr.knob_cov[j, j] / 400))
    # cel_ec50 sits at its lower bound: half the draws stay there, the rest reach the profile's upper limit
    cel = np.array([d["cel_ec50"] for d in draws])
    lower = nr.model.params["cel_ec50"].lower
    assert np.mean(cel == lower) == pytest.approx(0.5, abs=0.08)
    assert np.quantile(cel, 0.975) == pytest.approx(6.0, rel=0.6)


def test_population_calibration_block_errors(tmp_path):
    bad = tmp_path / "pop.toml"
    bad.write_text('parameter_set = "g1_nonresponder"\n[calibration]\nknobs = ["delta"]\ncovariance = [[-1.0]]\n')
    with pytest.raises(ValueError, match="pop.toml: calibration: covariance must be a symmetric positive-definite 1 x 1"):
        load_population(bad)
    bad.write_text('parameter_set = "g1_nonresponder"\n[calibration]\nknobs = ["nope"]\ncovariance = [[1.0]]\n')
    with pytest.raises(ValueError, match="calibration.knobs: unknown parameter 'nope'"):
        load_population(bad)
