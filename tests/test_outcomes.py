"""Outcome definitions at their boundaries, the cure boundary, and patient predictions."""

import math

import numpy as np
import pytest

from hcvdyn.analysis.outcomes import OutcomeDefinitions, classify, cure_day, patient_outcomes, roc_auc

DEFS = OutcomeDefinitions(lloq_iu_ml=15.0)
LQ = math.log10(15.0)


def test_evr_counts_exactly_two_log10_and_not_less():
    out = classify([6.0, 6.0, 6.0], [5.0, 5.0, 5.0], [4.0, 4.0 + 1e-9, 4.0 - 1e-9], defs=DEFS)
    assert out["evr"].tolist() == [True, False, True]
    assert out["cevr"].tolist() == [False, False, False]
    np.testing.assert_allclose(out["drop_evr"], [2.0, 2.0 - 1e-9, 2.0 + 1e-9])


def test_undetectable_means_below_the_limit_a_value_at_the_limit_is_detectable():
    out = classify([3.0, 3.0, 3.0], [LQ, LQ - 1e-9, LQ], [LQ, LQ - 1e-9, 2.5], defs=DEFS)
    assert out["rvr"].tolist() == [False, True, False]
    assert out["cevr"].tolist() == [False, True, False]
    # 3.0 -> at the limit is a 1.82 log drop and detectable: no EVR; below the limit: EVR by cEVR
    assert out["evr"].tolist() == [False, True, False]


def test_censored_sample_is_undetectable_and_missing_is_non_response():
    out = classify([6.0, 6.0], [np.nan, np.nan], [np.nan, np.nan], [True, False], [True, False], defs=DEFS)
    assert out["rvr"].tolist() == [True, False]
    assert out["evr"].tolist() == [True, False] and out["cevr"].tolist() == [True, False]
    assert out["drop_evr"][0] == pytest.approx(6.0 - LQ) and np.isnan(out["drop_evr"][1])


def test_cure_boundary_value_and_crossing_day():
    assert DEFS.cure_log10 == pytest.approx(-math.log10(13_500 * 2.7))
    assert DEFS.cure_log10 == pytest.approx(-4.56, abs=0.01)  # one virion in 13.5 L at 2.7 copies/IU
    assert DEFS.cure_cells_log10 == pytest.approx(-4.13, abs=0.01)  # one infected cell in 13.5 L
    t = np.arange(0.0, 11.0)
    cells = 5.0 - 1.0 * t  # crosses -4.1303 at t = 9.1303
    assert cure_day(t, cells, DEFS) == pytest.approx(5.0 - DEFS.cure_cells_log10)
    assert np.isnan(cure_day(t, 6.0 - 0.1 * t, DEFS))
    # The later crossing counts: infectious virions still above their boundary delay the cure.
    vi = 6.0 - 1.1 * t  # crosses -4.5617 at t = 9.6015
    assert cure_day(t, cells, DEFS, vi) == pytest.approx((6.0 - DEFS.cure_log10) / 1.1)
    assert np.isnan(cure_day(t, cells, DEFS, 6.0 - 0.1 * t))


def test_patient_outcomes_from_a_linear_decline():
    t = np.arange(0.0, 337.0)
    v = np.stack([6.0 - t / 28.0, 6.0 - 0.0 * t])  # 1 log10 per 4 weeks; flat
    cells = v - 1.0  # infected cells (log10 cells/mL) falling with the load
    out = patient_outcomes(t, v, DEFS, log10_infected=cells)
    np.testing.assert_allclose(out["drop_w4"], [1.0, 0.0])
    np.testing.assert_allclose(out["drop_w12"], [3.0, 0.0])
    assert out["evr"].tolist() == [True, False] and out["rvr"].tolist() == [False, False]
    assert out["cure_day"][0] == pytest.approx(28.0 * (5.0 - DEFS.cure_cells_log10)) and np.isnan(out["cure_day"][1])
    assert "cure_day" not in patient_outcomes(t, v, DEFS)  # total RNA alone does not decide a cure


def test_bad_definitions_are_refused():
    with pytest.raises(ValueError, match="lloq_iu_ml"):
        OutcomeDefinitions(lloq_iu_ml=0.0)
    with pytest.raises(ValueError, match="evr_drop_log10"):
        OutcomeDefinitions(evr_drop_log10=-1.0)


def test_roc_auc_against_hand_counts():
    assert roc_auc([0.9, 0.8, 0.3, 0.1], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.8, 0.3, 0.9], [True, True, False, False]) == pytest.approx(0.25)  # 1 of 4 pairs
    assert roc_auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert np.isnan(roc_auc([0.1], [True]))
