"""Likelihood of summary data, knob scales and the reported-interval helper, against closed forms."""

import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from hcvdyn.analysis.calibrate import ArmStats, neg2_log_likelihood
from hcvdyn.model.parameters import from_scale, to_scale
from hcvdyn.analysis.comparison import binomial_interval
from hcvdyn.model.trial_design import ArmTarget


def test_neg2_log_likelihood_is_normal_mean_plus_binomial_count():
    stats = {"triple": ArmStats(1.0, 0.8, 0.25, 2000, 0.5), "control": ArmStats(0.6, 0.5, 0.05, 2000, 0.45)}
    targets = (ArmTarget("triple", 12, 1.2, 4), ArmTarget("control", 10, 0.4, 1), ArmTarget("control", 14, day2_mean=0.7, day2_se=0.15))
    terms = neg2_log_likelihood(stats, targets)
    assert terms["triple.mean"] == pytest.approx(-2 * norm.logpdf(1.2, 1.0, 0.8 / math.sqrt(12)), rel=1e-12)
    assert terms["triple.evr"] == pytest.approx(-2 * binom.logpmf(4, 12, 0.25), rel=1e-12)
    assert terms["control.mean"] == pytest.approx(-2 * norm.logpdf(0.4, 0.6, 0.5 / math.sqrt(10)), rel=1e-12)
    assert terms["control.evr"] == pytest.approx(-2 * binom.logpmf(1, 10, 0.05), rel=1e-12)
    assert terms["control.day2"] == pytest.approx(-2 * norm.logpdf(0.7, 0.45, 0.15), rel=1e-12)
    assert terms["total"] == pytest.approx(sum(v for k, v in terms.items() if k != "total"))


def test_knob_scales_round_trip_and_follow_the_parameter_table():
    vals, scales = [0.03, 0.8, 2.0], ["log", "logit", "linear"]
    x = to_scale(vals, scales)
    np.testing.assert_allclose(x, [math.log(0.03), math.log(4.0), 2.0])
    np.testing.assert_allclose(from_scale(x, scales), vals, rtol=1e-14)
    from hcvdyn.model.catalog import get_model

    params = get_model("pkpd3_homeostatic").params
    assert [params[k].interval_scale for k in ("delta", "ifn_ec50", "cel_phi_max", "psi")] == ["log", "log", "logit", "linear"]


def test_clopper_pearson_intervals_of_the_reported_evr():
    # reference values: exact binomial (Clopper-Pearson) intervals, e.g. R binom.test(4, 12)$conf.int
    assert binomial_interval(4, 12) == pytest.approx((0.09925, 0.65112), abs=1e-5)
    assert binomial_interval(1, 10) == pytest.approx((0.002529, 0.445016), abs=1e-5)
    assert binomial_interval(0, 8) == pytest.approx((0.0, 0.369416), abs=1e-5)


def test_reported_arm_targets_are_validated():
    with pytest.raises(ValueError, match="evr_count = 5 outside"):
        ArmTarget("x", 4, 1.0, 5)
    with pytest.raises(ValueError, match="day2_se"):
        ArmTarget("x", 4, day2_mean=0.7)


def test_a_knob_at_a_bound_is_recognised_on_its_declared_scale():
    from hcvdyn.analysis.calibrate import at_bound
    from hcvdyn.model.catalog import get_model

    m = get_model("pkpd3_homeostatic")
    p = m.params["cel_ec50"]  # log scale, [0.001, 100]: 2e-3 of the range is a factor 1.023
    assert at_bound(m, "cel_ec50", p.lower) == "lower"
    assert at_bound(m, "cel_ec50", 1.01 * p.lower) == "lower"  # where Nelder-Mead stops against the bound
    assert at_bound(m, "cel_ec50", 1.05 * p.lower) is None
    assert at_bound(m, "cel_ec50", 0.5) is None
    assert at_bound(m, "cel_ec50", 0.99 * p.upper) == "upper"
    assert at_bound(m, "delta", 0.033) is None


@pytest.mark.slow
def test_the_bundled_calibration_is_the_optimum_of_its_own_objective():
    """The population file's delta minimises -2 log L along delta at the calibration's n (400) and seed (7), with EVR
    counted as a step, as the reported -2 log L is (the optimiser's 0.05-log10 ramp moves it by less than 10%).

    The objective simulates typical values as given: the population's [calibration] covariance (the result of an
    earlier calibration) must not enter it, or each calibration moves the next one (it did: delta 0.036 instead of 0.033).
    """
    from hcvdyn.analysis.calibrate import MECHANISMS, arm_statistics, targets_of
    from hcvdyn.analysis.population import load_population
    from hcvdyn.model.trial_design import load_trial

    spec = load_trial("celgosivir_phase2")
    pop = load_population(spec.population)
    assert pop.knob_cov is not None  # the case that matters: a population that carries a calibration
    typical = pop.parameter_set.params()
    mech = MECHANISMS["infectivity"]
    base = {**mech.fixed, **{k: typical[k] for k in mech.knobs}}

    def neg2ll(delta):
        st = arm_statistics(pop, spec, {**base, "delta": delta}, ["triple", "control"], 400, 7)
        return neg2_log_likelihood(st, targets_of(spec))["total"]

    at = neg2ll(typical["delta"])
    lower, higher = neg2ll(typical["delta"] / 1.1), neg2ll(typical["delta"] * 1.1)
    assert at < min(lower, higher), f"-2 log L {lower:.3f}, {at:.3f}, {higher:.3f} at delta / 1.1, delta {typical['delta']:.4g}, delta x 1.1"


def test_profile_limits_interpolate_on_the_declared_scale_and_say_when_a_side_never_crosses():
    from hcvdyn.analysis.calibrate import profile_limits

    # -2 log L = best + ((ln x - ln 0.03) / 0.15)^2 at points 1.1 SE apart: the crossings are ln 0.03 +- 1.96 x 0.15
    # exactly; between points 1.1 SE apart, linear interpolation finds the chord's crossing, computed here
    z = np.array([-3.3, -2.2, -1.1, 0.0, 1.1, 2.2])
    trace = [(0.03 * math.exp(0.15 * zi), 5.0 + zi**2) for zi in z]
    lo, hi, lo_ok, hi_ok = profile_limits(trace, 5.0, "log")
    z_cross = 1.1 + (3.841 - 1.21) * 1.1 / (4.84 - 1.21)  # the chord between z = 1.1 and 2.2
    assert (lo_ok, hi_ok) == (True, True)
    assert lo == pytest.approx(0.03 * math.exp(-0.15 * z_cross), rel=1e-12)
    assert hi == pytest.approx(0.03 * math.exp(0.15 * z_cross), rel=1e-12)
    assert 1.85 < z_cross < 1.96  # the chord of a convex profile crosses early: the interval is about 3% short
    lo, hi, lo_ok, hi_ok = profile_limits(trace[:5], 5.0, "log")  # the upper side ends at 1.1 SE, below the level
    assert (lo_ok, hi_ok) == (True, False) and hi == pytest.approx(0.03 * math.exp(0.165), rel=1e-12)


def test_interior_profile_steps_out_until_it_crosses_and_ends_a_side_at_the_bound(monkeypatch):
    """A stand-in likelihood, -2 log L = 5 + ((ln d - ln 0.03) / 0.15)^2 (no simulation): the upper side steps 1.1 SE at
    a time until it crosses 3.84; the lower side, whose next step would leave the range, is evaluated at the bound."""
    from types import SimpleNamespace

    import hcvdyn.analysis.calibrate as cal_mod
    from hcvdyn.model.catalog import get_model

    model = get_model("pkpd3_homeostatic")
    lower = model.params["delta"].lower
    seen = []

    def fake_calibrate(pop, spec, mech, start, targets, n, seed, maxfev, fixed_extra):
        v = fixed_extra["delta"]
        seen.append(v)
        return SimpleNamespace(values={**start, "delta": v}, neg2ll=5.0 + (math.log(v / 0.03) / 0.15) ** 2)

    monkeypatch.setattr(cal_mod, "calibrate", fake_calibrate)
    mech = SimpleNamespace(knobs=("delta", "cel_ec50"))
    best = SimpleNamespace(values={"delta": 0.03, "cel_ec50": 0.001}, mechanism=mech, neg2ll=5.0, n_per_arm=10, seed=1)
    pop = SimpleNamespace(model=model)
    trace = cal_mod.interior_profile(pop, None, best, "delta", 0.15, targets=())
    xs = [x for x, _ in trace]
    assert xs == sorted(xs) and 0.03 in xs
    up = [x for x in xs if x > 0.03]
    assert up == pytest.approx([0.03 * math.exp(0.15 * 1.1 * k) for k in (1, 2)])  # 2.2 SE: +4.84 > 3.84, stop
    lo, hi, lo_ok, hi_ok = cal_mod.profile_limits(trace, 5.0, "log")
    assert hi_ok and hi == pytest.approx(0.03 * math.exp(0.15 * 1.897), rel=0.01)
    # a knob 1 SE above its lower bound: the first step down is taken at the bound, and that side ends there
    near = SimpleNamespace(values={"delta": lower * math.exp(0.15), "cel_ec50": 0.001}, mechanism=mech, neg2ll=5.0, n_per_arm=10, seed=1)
    seen.clear()
    trace = cal_mod.interior_profile(pop, None, near, "delta", 0.15, targets=())
    assert min(x for x, _ in trace) == pytest.approx(lower) and seen[0] == pytest.approx(lower)
