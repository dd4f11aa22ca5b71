"""Population fits of the HCV models: the design and its checks, the problem's mapping of patients to their arms'
effects, and the bundled trial fitted end to end by `hcvdyn fit fits/tcl_recovery_population.toml`."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hcvdyn.estimate.population_design import Covariate, PopulationDesign, build_population_problem

ROOT = Path(__file__).resolve().parents[1]


def test_population_design_is_checked(bundled):
    spec, data = bundled
    with pytest.raises(ValueError, match="no parameter has a random effect"):
        PopulationDesign(fit=replace(spec.design, individual=()))
    with pytest.raises(ValueError, match="method 'saem'"):
        PopulationDesign(fit=spec.design, method="saem")
    with pytest.raises(ValueError, match="omega given for 'eps'"):
        PopulationDesign(fit=spec.design, omega={"eps": 0.3})
    with pytest.raises(ValueError, match="covariate on 'rho'"):
        PopulationDesign(fit=spec.design, covariates=(Covariate("rho", "group"),))
    with pytest.raises(ValueError, match="form 'quadratic'"):
        Covariate("delta", "weight", "quadratic")
    design = PopulationDesign(fit=spec.design, covariates=(Covariate("delta", "weight_kg", "power"),))
    with pytest.raises(ValueError, match="patient S001 has no numeric value in column 'weight_kg'"):
        build_population_problem(spec.model, data, spec.regimens_for(data), design)


def test_population_problem_maps_patients_to_their_arms_effects(bundled):
    """Each patient's drug effects come from the fixed effects of the drugs its arm receives (0 elsewhere), its
    kinetic parameters from the typical values, random effects and covariate shifts."""
    spec, data = bundled
    design = PopulationDesign(fit=spec.design, covariates=(Covariate("delta", "group"),))
    problem = build_population_problem(spec.model, data, spec.regimens_for(data), design)
    assert problem.labels[:6] == ("log10_V0", "delta", "eps", "rho", "phi", "delta_group_partial_responder")
    assert problem.random == ("log10_V0", "delta")
    names = problem.names
    given = np.asarray(problem.arrays.context["given"])
    arms = [p.arm for p in data]
    for i, arm in enumerate(arms):
        assert given[i, names.index("rho")] == (arm in ("triple", "control"))
        assert given[i, names.index("phi")] == (arm in ("triple", "double"))
    groups = np.array([p.group == "partial_responder" for p in data], float)
    np.testing.assert_array_equal(np.asarray(problem.arrays.design)[:, names.index("delta"), 5], groups)



def test_extra_starts_move_the_fixed_effects_and_stay_finite_inside_the_bounds(bundled):
    """Multi-start population fits: the first start is the given one; the others move only the typical values and
    drug effects, and an infinite bound (omega's upper, log10_V0's) leaves them finite (they were NaN, so every
    extra start failed at once)."""
    from hcvdyn.estimate.population_fit import _starts

    spec, data = bundled
    problem = build_population_problem(spec.model, data, spec.regimens_for(data), PopulationDesign(fit=spec.design))
    first, *others = list(_starts(problem, problem.start, 4, seed=3))
    np.testing.assert_array_equal(first, problem.start)
    lower, upper = (np.array([getattr(v, k) for v in problem.values]) for k in ("lower", "upper"))
    assert np.isinf(upper).any() and np.isinf(lower).any()
    fixed = np.array([v.kind in ("typical", "shared", "per_arm") for v in problem.values])
    for x in others:
        assert np.all(np.isfinite(x)) and np.all((lower < x) & (x < upper))
        assert np.all(x[fixed] != first[fixed]) and np.all(x[~fixed] == first[~fixed])

def test_truth_of_population_values(bundled):
    """The truth file's groups give the typical values (the larger group), group shifts and SDs on each parameter's
    scale; a typical value without a group covariate has no single truth, nor has an SD that differs by group."""
    from hcvdyn.estimate.synthetic import load_truth

    spec, data = bundled
    truth = load_truth(spec.report["truth"])
    covs = (Covariate("log10_V0", "group"), Covariate("delta", "group"))
    design = PopulationDesign(fit=replace(spec.design, estimate_sigma=True), covariates=covs, block=True)
    problem = build_population_problem(spec.model, data, spec.regimens_for(data), design)
    assert truth.population_values(problem.values) == pytest.approx(
        {**TRUTH, "chol_delta_log10_V0": 0.0}, rel=1e-12)
    plain = build_population_problem(spec.model, data, spec.regimens_for(data), PopulationDesign(fit=spec.design))
    assert truth.population_values(plain.values) == pytest.approx({"eps": 0.85, "rho": 0.4, "phi": 0.5, "omega_log10_V0": 0.35,
                                                                   "omega_delta": 0.4})
    uneven = replace(truth, groups={**truth.groups, "partial_responder": replace(truth.groups["partial_responder"], delta_sd_log=0.6)})
    assert "omega_delta" not in uneven.population_values(problem.values)


@pytest.fixture(scope="module")
def population_folder(tmp_path_factory):
    """``hcvdyn fit fits/tcl_recovery_population.toml``: FOCE-I of the bundled trial as its specification declares it."""
    from hcvdyn.cli import main

    out = tmp_path_factory.mktemp("population") / "fit"
    assert main(["fit", "tcl_recovery_population", "--out", str(out)]) == 0
    return out


TRUTH = {  # fits/tcl_recovery_truth.toml: the nonresponder group is the reference category
    "log10_V0": 6.6, "delta": 0.08, "eps": 0.85, "rho": 0.4, "phi": 0.5, "log10_V0_group_partial_responder": 6.3 - 6.6,
    "delta_group_partial_responder": math.log(0.2 / 0.08), "omega_log10_V0": 0.35, "omega_delta": 0.4, "sigma_res": 0.2,
}


@pytest.mark.slow
def test_bundled_trial_population_fit(population_folder, capsys):
    """FOCE-I with the truth's structure (a group shift in log10_V0 and delta) on the bundled 57-patient trial:
    converges, passes its covariance step, its 95% intervals cover the values the data were drawn with; the
    diagnostics are standard normal where they should be; the folder records what was done and draws its figures."""
    import json

    from hcvdyn.cli import main
    from hcvdyn.results.writers import read_csv

    meta = json.loads((population_folder / "result.json").read_text())
    assert meta["converged"], meta["message"]
    assert meta["covariance"]["ok"] and meta["covariance"]["kind"] == "sandwich"
    assert meta["options"]["method"] == "foce-i" and not meta["inputs"]["data"]["path"].startswith("/")
    rows = {r["name"]: r for r in read_csv(population_folder / "parameters.csv") if r["kind"] not in ("variance", "correlation")}
    assert set(rows) == set(TRUTH)
    missed = [k for k, v in TRUTH.items() if not rows[k]["lower"] <= v <= rows[k]["upper"]]
    # one dataset, ten 95% intervals: one miss is expected 40% of the time. Seen: rho 0.473 [0.408, 0.540] against
    # 0.4 (2.1 SE); whether that is chance or bias is for the recovery study over replicates, not for one dataset
    assert len(missed) <= 1 and set(missed) <= {"rho"}, {k: rows[k] for k in missed}
    assert all(0 <= s < 30 for s in meta["shrinkage_percent"].values())
    assert max(abs(g) for g in meta["gradient"]) < 1e-2
    samples = read_csv(population_folder / "samples.csv")
    for k in ("cwres", "npde"):
        v = np.array([r[k] for r in samples if not r["censored"]])
        assert abs(v.mean()) < 0.15 and 0.85 < v.std() < 1.15, k
        assert all(math.isnan(r[k]) for r in samples if r["censored"])
    individual = {r["id"]: r for r in read_csv(population_folder / "individual.csv")}
    assert individual["S001"]["phi"] == 0.0 and individual["S001"]["arm"] == "control"  # no celgosivir in the control arm
    assert 0.5 < meta["vpc"]["coverage"] <= 1.0
    assert main(["figures", str(population_folder), "--formats", "png"]) == 0
    for fig in ("patient_fits", "gof", "vpc", "forest"):
        assert (population_folder / "figures" / f"{fig}.png").stat().st_size > 5000
    assert "wrote 4 figures" in capsys.readouterr().out


@pytest.mark.slow
def test_recovery_study_of_the_population_fit(population_folder, monkeypatch):
    """`hcvdyn sse` on a [population] specification: each replicate is the trial generate_synthetic_trial draws
    with its seed, fitted by FOCE-I; every estimate with a truth is summarized, and coverage is computed from the
    intervals of parameters.csv's kind (the compiled objective is the bundled fit's: same design and shapes)."""
    from types import SimpleNamespace

    import hcvdyn.estimate.population_profile as pp
    from hcvdyn.estimate.sse import recovery_study
    from hcvdyn.estimate.synthetic import drawn_patients

    profiled = []  # a stand-in profile (the real one is tests/test_population_profile.py): [x / 2, 2 x]

    def stand_in(model, data, regimens, design, fit, label, level):
        profiled.append(label)
        return SimpleNamespace(interval=(fit.x[label] / 2, 2 * fit.x[label]))

    monkeypatch.setattr(pp, "population_profile_interval", stand_in)
    spec = ROOT / "fits/tcl_recovery_population.toml"
    study = recovery_study(spec, ROOT / "fits/tcl_recovery_truth.toml", 2, seed=5, compare=False, profile=True)
    assert profiled == ["omega_log10_V0", "omega_delta"] * 2
    for r in study.rows:
        assert r["omega_delta_profile_low"] == r["omega_delta"] / 2
        drawn = drawn_patients(ROOT / "fits/tcl_recovery_truth.toml", r["seed"])  # the replicate's random effects
        v0, group = np.array([p.params["log10_V0"] for p in drawn]), np.array([p.group for p in drawn])
        centred = np.concatenate([v0[group == g] - v0[group == g].mean() for g in set(group)])
        assert r["omega_log10_V0_known_eta"] == pytest.approx(np.sqrt(np.mean(centred**2)))
        assert r["omega_delta_profile_covers"] == (r["omega_delta"] / 2 <= TRUTH["omega_delta"] <= 2 * r["omega_delta"])
    assert study.truth == pytest.approx(TRUTH)
    assert [r["seed"] for r in study.rows] == [5, 6] and all(r["converged"] for r in study.rows), [r["message"] for r in study.rows]
    for s in study.summary:
        assert s["method"] == "foce-i" and s["n_converged"] == 2
        assert math.isfinite(s["profile_coverage"]) == math.isfinite(s["known_eta_coverage"]) == s["name"].startswith("omega_")
        est = np.array([r[s["name"]] for r in study.rows])
        se = np.array([r[f"{s['name']}_se"] for r in study.rows])
        assert np.all(np.abs(est - s["true"]) < 4 * se), s["name"]
        assert s["mean"] == pytest.approx(est.mean())
        se_r = np.array([r[f"{s['name']}_se_R"] for r in study.rows])  # 2 R^-1 beside the sandwich, same fit
        assert s["mean_se_R"] == pytest.approx(se_r.mean()) and np.all(se_r > 0) and not np.allclose(se_r, se)
        assert s["wald_R_coverage"] == np.mean([r[f"{s['name']}_wald_R_covers"] for r in study.rows])


def test_population_rows_use_the_declared_scale_and_satterthwaite_for_standard_deviations():
    """delta (log scale): exp(ln d -/+ z se); omega and sigma (positive SDs): Satterthwaite's interval from the
    variance (hcvdyn.estimate.profile.satterthwaite_interval), never below 0; a covariate shift stays linear. The SE
    column is on the natural scale (delta's by the delta method)."""
    from hcvdyn.estimate.covariance import CovarianceStep
    from hcvdyn.estimate.population_design import OuterValue
    from hcvdyn.estimate.population_fit import PopulationFit
    from hcvdyn.model.catalog import get_model

    model = get_model("agi_constant")
    values = (OuterValue("delta", "typical", "delta", "log", 0.0, -9.0, 3.0),
              OuterValue("delta_group_b", "covariate", "delta", "linear", 0.0, -5.0, 5.0),
              OuterValue("omega_delta", "omega", "delta", "linear", 0.4, 1e-3, 5.0),
              OuterValue("sigma_res", "sigma", "", "linear", 0.2, 1e-3, 5.0))
    x = {"delta": math.log(0.08), "delta_group_b": 0.9, "omega_delta": 0.05, "sigma_res": 0.2}
    se = np.array([0.1, 0.3, 0.04, 0.01])
    cov = CovarianceStep("sandwich", True, "", tuple(x), np.eye(4), np.eye(4), np.diag(se**2), 1.0)
    fit = PopulationFit("agi_constant", "foce-i", values, x, 0.0, 0.0, 0.0, True, "", cov, (), ("delta",), np.zeros((0, 1)),
                        np.eye(1), 0.2, {}, {}, 0, 0, np.zeros(4), declared={"delta": model.params["delta"]})
    rows = {r["name"]: r for r in fit.rows()}
    z = 1.959963984540054
    assert (rows["delta"]["lower"], rows["delta"]["upper"]) == pytest.approx((0.08 * math.exp(-z * 0.1), 0.08 * math.exp(z * 0.1)))
    assert rows["delta"]["se"] == pytest.approx(0.008) and rows["delta"]["scale"] == "log"
    assert (rows["delta_group_b"]["lower"], rows["delta_group_b"]["upper"]) == pytest.approx((0.9 - z * 0.3, 0.9 + z * 0.3))
    om = rows["omega_delta"]  # a linear interval would be [-0.028, 0.128]
    assert om["scale"] == "variance (Satterthwaite)" and 0 < om["lower"] < 0.05 and om["upper"] > 30 * 0.05
    # sigma: SE 0.01 of 0.2 is that of the SD of 200 known draws, 0.2 / sqrt(400): the exact chi2_200 interval,
    # whose 97.5% and 2.5% points are 241.06 and 162.72 (Wilson & Hilferty's cube root, 1931)
    sg = rows["sigma_res"]
    assert (sg["lower"], sg["upper"]) == pytest.approx((0.2 * math.sqrt(200 / 241.06), 0.2 * math.sqrt(200 / 162.72)), rel=1e-4)
    assert {r["name"]: r for r in fit.rows(0.9)}["sigma_res"]["upper"] < sg["upper"]
    collapsed = replace(fit, x={**x, "omega_delta": 1e-4})  # an SD collapsed to about 0, SE 400 times it
    om = {r["name"]: r for r in collapsed.rows()}["omega_delta"]
    assert om["upper"] > 1e10 and 0 <= om["lower"] < 1e-4
