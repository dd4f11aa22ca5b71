"""The calibrated non-responder population is biologically credible and reproduces the trial's top line.

One virtual trial of 2,000 patients per arm (shared by every test here) is checked against what a hepatologist
would believe (hcvdyn.analysis.plausibility) and against the Phase II top line within the trial's own 95% intervals.
Each failure message carries the measured figure. ``hcvdyn trial g1_nonresponder_population celgosivir_phase2
--check-typical`` prints the same checks.
"""

import math

import numpy as np
import pytest

from hcvdyn.analysis.comparison import binomial_interval
from hcvdyn.model.trial_design import load_trial
from hcvdyn.analysis.plausibility import red_flags, typical_patient_flags
from hcvdyn.analysis.population import load_population
from hcvdyn.analysis.virtual_trial import run_virtual_trial

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def population():
    return load_population("g1_nonresponder_population")


@pytest.fixture(scope="module")
def spec():
    return load_trial("celgosivir_phase2")


@pytest.fixture(scope="module")
def vt(population, spec):
    return run_virtual_trial(population, spec, 2000, 2026, n_boot=0, n_draws=20)


@pytest.fixture(scope="module")
def flags(vt, population, spec):
    return {(f.arm, f.check): f for f in red_flags(vt, population, spec.arms)}


def test_interferon_blocks_production_as_published_for_non_responders(flags):
    for arm in ("triple", "double", "control"):
        f = flags[(arm, "median interferon production block at the first peak")]
        assert 0.4 <= f.value <= 0.95, f.message()


def test_control_arm_first_phase(flags):
    f = flags[("control", "median 0-48 h decline (log10)")]
    assert 0.3 <= f.value <= 1.2, f.message()


@pytest.mark.parametrize("arm", ["triple", "double", "control"])
def test_no_implausible_declines_or_mixtures(flags, arm):
    deep = flags[(arm, "share with week-12 drop > 6 log10")]
    assert deep.value < 0.01, deep.message()
    gap = flags[(arm, "|mean - median| of the week-12 drop (log10)")]
    assert gap.value <= 0.6, gap.message()


def test_triple_arm_rarely_above_baseline(flags):
    f = flags[("triple", "share above baseline at week 12")]
    assert f.value < 0.10, f.message()


def test_control_arm_cevr_at_most_5_percent(vt):
    cevr = vt.arms["control"].table["pct_cevr"][0]
    assert cevr <= 5.0, f"control-arm cEVR {cevr:.2f}% > 5%"


def test_typical_patient_never_above_baseline_and_liver_near_homeostasis(spec):
    for f in typical_patient_flags(spec, weeks=48):
        assert f.ok, f.message()


def test_top_line_within_the_trial_intervals(vt, spec):
    """Mean drop within mean +/- 1.96 SD/sqrt(n) of the reported value; EVR within its Clopper-Pearson interval."""
    for arm, rep in spec.reported.items():
        r = vt.arms[arm]
        if rep.mean_drop is not None:
            sd = float(np.nanstd(r.drop, ddof=1))
            half = 1.96 * sd / math.sqrt(rep.n)
            m = r.table["mean_drop"][0]
            assert abs(m - rep.mean_drop) <= half, f"{arm}: virtual mean drop {m:.3f} vs reported {rep.mean_drop} +/- {half:.3f}"
        if rep.evr_count is not None:
            lo, hi = binomial_interval(rep.evr_count, rep.n)
            p = r.table["pct_evr"][0] / 100
            assert lo <= p <= hi, f"{arm}: virtual EVR {100 * p:.1f}% outside the reported {rep.evr_count}/{rep.n} interval [{100 * lo:.1f}, {100 * hi:.1f}]%"


def test_intervals_carry_the_calibration_uncertainty(vt, population):
    assert population.knobs and vt.arms["triple"].draw is not None
    v, lo, hi = vt.arms["triple"].table["mean_drop"]
    assert lo < v < hi and hi - lo > 0.05, (v, lo, hi)
