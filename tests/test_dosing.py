"""Regimen expansion and validation."""

import numpy as np
import pytest

from hcvdyn import Regimen, batch_dose_arrays, dose_arrays, regimen_from_dict
from hcvdyn.model.drugs import MW_CASTANOSPERMINE, MW_CELGOSIVIR


def test_weekly_peginterferon_per_kg():
    t, a = Regimen("pegifn", 1.5, "ug/kg", 7, stop_day=84).doses(weight_kg=80)
    np.testing.assert_array_equal(t, np.arange(12) * 7.0)
    np.testing.assert_allclose(a, 1.5)  # pegIFN's PK is per kg: 120 ug in an 80-kg patient is 1.5 ug per kg
    np.testing.assert_allclose(Regimen("pegifn", 120.0, "ug", 7, stop_day=84).doses(weight_kg=80)[1], 1.5)


def test_twice_daily_ribavirin_for_48_weeks_has_672_doses():
    t, a = Regimen("ribavirin", 500, "mg", 0.5, stop_day=336).doses()
    assert t.size == 672 and t[-1] == 335.5 and np.all(a == 500.0)


def test_celgosivir_dose_is_converted_to_castanospermine():
    t, a = Regimen("celgosivir", 400, "mg", 1, stop_day=3, loading_dose=800).doses()
    np.testing.assert_allclose(a, np.array([800, 400, 400]) * MW_CASTANOSPERMINE / MW_CELGOSIVIR)


def test_missed_and_changed_doses():
    r = Regimen("ribavirin", 600, "mg", 1, stop_day=10, missed_days=(2.0, 3.0), changes=((5.0, 400.0), (8.0, 0.0)))
    t, a = r.doses()
    np.testing.assert_array_equal(t, [0, 1, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(a, [600, 600, 600, 400, 400, 400, 0, 0])


def test_padding_and_batching():
    regs = [Regimen("ribavirin", 500, "mg", 0.5, stop_day=2)]
    d = dose_arrays(regs, ["ribavirin", "celgosivir"], length=6)
    np.testing.assert_array_equal(d["ribavirin"][0], [0, 0.5, 1, 1.5, 1.5, 1.5])
    np.testing.assert_array_equal(d["ribavirin"][1], [500] * 4 + [0, 0])
    assert d["celgosivir"][1].sum() == 0.0  # a modelled drug without a regimen gets no dose
    b = batch_dose_arrays([regs, regs + [Regimen("ribavirin", 200, "mg", 1, start_day=3, stop_day=5)]], ["ribavirin"])
    assert b["ribavirin"][0].shape == (2, 6)
    np.testing.assert_array_equal(b["ribavirin"][0][1], [0, 0.5, 1, 1.5, 3, 4])


def test_regimen_round_trip_through_dict():
    r = Regimen("celgosivir", 400, "mg", 1, stop_day=84, missed_days=(7.0,), changes=((28.0, 200.0),))
    assert regimen_from_dict(r.to_dict()) == r


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(drug="aspirin"), "unknown drug 'aspirin'"),
        (dict(dose=-1.0), r"dose = -1.0 is negative"),
        (dict(dose=float("nan")), "dose = nan is not finite"),
        (dict(interval_days=0.0), r"interval_days = 0.0 must be > 0"),
        (dict(interval_days=-7.0), r"interval_days = -7.0 must be > 0"),
        (dict(stop_day=0.0), "stop_day = 0.0 must be after start_day"),
        (dict(start_day=-1.0), "start_day = -1.0 is negative"),
        (dict(unit="mg"), r"unit 'mg' not one of \('ug', 'ug/kg'\)"),
        (dict(route="oral"), "route 'oral' not supported"),
        (dict(missed_days=(3.0,)), "missed dose at day 3.0 is not a scheduled dose"),
        (dict(changes=((14.0, -5.0),)), "changed dose -5.0 at day 14.0 is negative"),
        (dict(loading_dose=-2.0), "loading_dose = -2.0 is negative"),
    ],
)
def test_bad_regimens_name_the_culprit(kwargs, match):
    base = dict(drug="peginterferon_alfa2b", dose=1.5, unit="ug/kg", interval_days=7.0)
    with pytest.raises(ValueError, match=match):
        Regimen(**{**base, **kwargs})


def test_bad_regimen_tables():
    with pytest.raises(ValueError, match=r"arms.triple\[0\]: unknown key\(s\) \['dose_mg'\]"):
        regimen_from_dict({"drug": "rbv", "dose_mg": 5, "unit": "mg", "interval_days": 1}, where="arms.triple[0]")
    with pytest.raises(ValueError, match=r"missing key\(s\) \['interval_days'\]"):
        regimen_from_dict({"drug": "rbv", "dose": 5, "unit": "mg"})
    with pytest.raises(ValueError, match="weight_kg = 0.0 must be > 0"):
        Regimen("pegifn", 1.5, "ug/kg", 7).doses(weight_kg=0.0)
