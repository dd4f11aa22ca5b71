"""Profile-likelihood intervals of a population fit's outer values (hold one value, refit the rest)."""

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import chi2

import hcvdyn
from hcvdyn.estimate.data import Dataset, PatientData
from hcvdyn.estimate.design import FitDesign
from hcvdyn.estimate.population_design import PopulationDesign
from hcvdyn.estimate.population_fit import fit_population
from hcvdyn.estimate.population_profile import population_profile_interval

CRIT = chi2.ppf(0.95, 1)
pytestmark = pytest.mark.slow  # the module's fixture is a population fit


@pytest.fixture(scope="module")
def small_trial():
    """16 patients of one arm, baseline log10 V0 normal (SD 0.35, the bundled truth's omega), delta fixed; FOCE-I with
    log10 V0 random. (A random delta would not do: under this target-cell-limited model at eps 0.85 the load
    settles on a plateau, and delta barely shows.)"""
    model = hcvdyn.get_model("agi_constant")
    rng = np.random.default_rng(4)
    days = np.array([0, 1, 2, 7, 14, 28, 56, 84.0])
    pats = []
    for i in range(16):
        par = {"log10_V0": 6.5 + 0.35 * rng.normal(), "eps": 0.85, "t0": 0.35, "rho": 0.0, "phi": 0.0, "delta": 0.1}
        y = hcvdyn.simulate(model, par, t_obs=days).log10_vl + 0.2 * rng.normal(size=days.size)
        pats.append(PatientData(f"p{i}", "a", days, y, np.zeros(days.size, bool), np.full(days.size, math.log10(15.0))))
    data = Dataset(tuple(pats))
    fd = FitDesign(individual=("log10_V0",), shared={"eps": None},
                   params={"log10_V0": 6.5, "eps": 0.8, "rho": 0.0, "phi": 0.0, "t0": 0.35, "delta": 0.1}, sigma=0.2, estimate_sigma=True)
    design = PopulationDesign(fit=fd, omega={"log10_V0": 0.3})
    return model, data, {"a": ()}, design, fit_population(model, data, {"a": ()}, design)


def test_omega_profile_interval_limits_lie_where_the_held_fit_is_3_84_above(small_trial):
    model, data, regimens, design, fit = small_trial
    assert fit.success, fit.message
    prof = population_profile_interval(model, data, regimens, design, fit, "omega_log10_V0")
    lo, hi = prof.interval
    est = fit.x["omega_log10_V0"]
    assert lo < est < hi and not prof.notes
    assert hi - est > est - lo  # an SD's profile is flat above the estimate, steep below
    one = replace(design, fit=replace(design.fit, n_starts=1))
    for limit in (lo, hi):
        again = fit_population(model, data, regimens, one, start=fit.x, start_eta=fit.eta, hold={"omega_log10_V0": limit})
        assert again.x["omega_log10_V0"] == limit and again.covariance.kind == design.covariance and not again.covariance.ok
        assert again.ofv - fit.ofv == pytest.approx(CRIT, abs=0.05), limit
    wald = {r["name"]: r for r in fit.rows()}["omega_log10_V0"]
    assert wald["lower"] < hi and wald["upper"] > lo  # the two intervals overlap; they need not agree
    from hcvdyn.results.population_tables import population_parameter_rows

    rows = {r["name"]: r for r in population_parameter_rows(fit, profiles={"omega_log10_V0": prof})}
    assert (rows["omega_log10_V0"]["profile95_low"], rows["omega_log10_V0"]["profile95_high"]) == (lo, hi)
    assert math.isnan(rows["eps"]["profile95_low"]) and "profile95_low" not in population_parameter_rows(fit)[0]
    assert all("profile95_high" in r for r in rows.values())  # the derived rows (omega2_...) too: one CSV header


def test_a_drug_effects_profile_interval_is_in_its_unit_and_its_limits_lie_3_84_above(small_trial):
    """eps is estimated on the logit scale; its interval and points are reported as fractions."""
    model, data, regimens, design, fit = small_trial
    prof = population_profile_interval(model, data, regimens, design, fit, "eps")
    lo, hi = prof.interval
    assert prof.estimate == fit.natural("eps") and 0.0 < lo < prof.estimate < hi < 1.0, prof
    assert all(0.0 < t < 1.0 for t, _ in prof.points)
    one = replace(design, fit=replace(design.fit, n_starts=1))
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    for limit in (lo, hi):
        again = fit_population(model, data, regimens, one, start=fit.x, start_eta=fit.eta, hold={"eps": logit(limit)})
        assert again.ofv - fit.ofv == pytest.approx(CRIT, abs=0.05), limit


def test_hold_names_an_outer_value_within_its_range(small_trial):
    model, data, regimens, design, _ = small_trial
    with pytest.raises(ValueError, match=r"hold \['omega_nope'\]: not an outer value"):
        fit_population(model, data, regimens, design, hold={"omega_nope": 0.3})
    with pytest.raises(ValueError, match="hold omega_log10_V0 = 9 outside its range"):
        fit_population(model, data, regimens, design, hold={"omega_log10_V0": 9.0})
