"""Viral-load CSV reader: both layouts, censoring forms, one clear message per kind of bad data."""

import math

import numpy as np
import pytest

from hcvdyn.estimate.data import read_viral_loads

LONG = """id,arm,group,time_weeks,vl_iu_ml,lloq,weight_kg
p1,triple,NR,0,2500000,15,80
p1,triple,NR,1,40000,15,80
p1,triple,NR,4,<15,15,80
p1,triple,NR,12,TND,15,80
p2,control,NR,0,1000000,,65
p2,control,NR,12,500,,65
"""


def write(tmp_path, text, name="vl.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_long_layout_units_censoring_and_covariates(tmp_path):
    ds = read_viral_loads(write(tmp_path, LONG))
    assert [p.id for p in ds] == ["p1", "p2"] and ds.arms == ("triple", "control")
    p1 = ds.by_id("p1")
    np.testing.assert_array_equal(p1.t_days, [0, 7, 28, 84])
    np.testing.assert_allclose(p1.log10_vl, [math.log10(2.5e6), math.log10(4e4), math.log10(15), math.log10(15)])
    np.testing.assert_array_equal(p1.censored, [False, False, True, True])
    assert p1.group == "NR" and p1.covariates == {"weight_kg": 80.0}


def test_nonmem_layout_skips_dose_rows(tmp_path):
    text = "ID,TIME,DV,CENS,LLOQ,EVID,AMT,CMT,MDV\n1,0,0,0,,1,105,1,1\n1,0,6.4,0,,0,0,2,0\n1,1,5.5,0,,0,0,2,0\n1,28,1.176,1,15,0,0,2,0\n"
    ds = read_viral_loads(write(tmp_path, text))
    p = ds.patients[0]
    np.testing.assert_array_equal(p.t_days, [0, 1, 28])
    np.testing.assert_array_equal(p.censored, [False, False, True])
    assert p.log10_vl[2] == pytest.approx(math.log10(15))


NONMEM_DOSED = """ID,TIME,DV,EVID,AMT,CMT,ADDL,II,MDV
1,0,.,1,105,1,11,7,1
1,0,.,1,500,2,167,0.5,1
1,0,6.4,0,0,3,0,0,0
1,2,5.5,0,0,3,0,0,0
1,7,.,1,400,4,0,0,1
1,14,1.1,0,0,3,0,0,0
2,0,6.0,0,0,3,0,0,0
2,1,5.8,0,0,3,0,0,0
"""


def test_nonmem_dose_rows_become_each_patients_dose_records(tmp_path):
    from hcvdyn.model.dosing import Regimen, dose_arrays

    ds = read_viral_loads(write(tmp_path, NONMEM_DOSED), dose_cmt={1: "pegifn", 2: "ribavirin", 4: "celgosivir"})
    p1, p2 = ds.patients
    assert p2.doses == () and p1.n_obs == 3
    doses = {d.drug: d for d in p1.doses}
    assert doses["ribavirin"].times == tuple(0.5 * k for k in range(168)) and set(doses["ribavirin"].amounts) == {500.0}
    assert doses["celgosivir"].times == (7.0,)
    # the ADDL expansion equals the weekly regimen it encodes (1.5 ug/kg at 70 kg, 12 weeks)
    drugs = ("peginterferon_alfa2b", "ribavirin", "celgosivir")
    ours = dose_arrays(p1.doses, drugs)["peginterferon_alfa2b"]
    reg = dose_arrays([Regimen("peginterferon_alfa2b", 1.5, "ug/kg", 7.0, stop_day=84)], drugs)["peginterferon_alfa2b"]
    np.testing.assert_allclose(ours, reg)
    # celgosivir's amounts are converted to castanospermine, as a Regimen's are
    cel = Regimen("celgosivir", 400.0, "mg", 1.0, start_day=7, stop_day=8)
    np.testing.assert_allclose(dose_arrays(p1.doses, drugs)["celgosivir"], dose_arrays([cel], drugs)["celgosivir"])
    # without a compartment map the dose rows are skipped, as before
    assert read_viral_loads(write(tmp_path, NONMEM_DOSED)).patients[0].doses == ()


@pytest.mark.parametrize(
    "row,match",
    [
        ("1,0,.,1,100,9,0,0,1", r":2: column CMT: compartment 9 is not in dose_cmt"),
        ("1,0,.,1,-5,1,0,0,1", r":2: column AMT: negative dose -5"),
        ("1,0,.,1,100,1,3,0,1", r":2: column II: ADDL = 3 further doses need an interval II > 0"),
        ("1,0,.,1,100,1,1.5,7,1", r":2: column ADDL: ADDL = 1.5 must be a whole number"),
        ("1,0,.,1,abc,1,0,0,1", r":2: column AMT: 'abc' is not a number"),
        ("3,0,.,1,100,1,0,0,1", r":2: column id: patient 3 has dose rows but no observations"),
    ],
)
def test_bad_nonmem_dose_rows_name_file_line_and_column(tmp_path, row, match):
    text = "ID,TIME,DV,EVID,AMT,CMT,ADDL,II,MDV\n" + row + "\n1,0,6.4,0,0,3,0,0,0\n"
    with pytest.raises(ValueError, match=match) as e:
        read_viral_loads(write(tmp_path, text), dose_cmt={1: "pegifn"})
    assert str(tmp_path / "vl.csv") in str(e.value)
    with pytest.raises(ValueError, match="RATE = 10: infusions"):
        read_viral_loads(write(tmp_path, "ID,TIME,DV,EVID,AMT,CMT,RATE\n1,0,.,1,100,1,10\n1,0,6,0,,,\n"), dose_cmt={1: "pegifn"})


def test_declared_units(tmp_path):
    ds = read_viral_loads(write(tmp_path, "id,time,vl\na,0,6.0\na,24,5.0\n"), time_unit="hour", vl_scale="log10")
    np.testing.assert_array_equal(ds.patients[0].t_days, [0, 1])


@pytest.mark.parametrize(
    "text,kwargs,match",
    [
        ("id,time_days\na,0\n", {}, r":1: missing column: one of log10_vl, vl_iu_ml, vl"),
        ("id,time,log10_vl\na,0,6\n", {}, r":1: column 'time' needs a declared unit"),
        ("id,time_days,log10_vl\na,0,6\na,x,5\n", {}, r":3: column time_days: 'x' is not a number"),
        ("id,time_days,log10_vl\na,0,6\na,1,high\n", {}, r":3: column log10_vl: 'high' is not a number"),
        ("id,time_days,vl_iu_ml\na,0,-5\n", {}, r":2: column vl_iu_ml: viral load -5.0 IU/mL must be > 0"),
        ("id,time_days,log10_vl\na,0,-1\n", {}, r":2: column log10_vl: negative log10 viral load"),
        ("id,time_days,log10_vl\na,0,nan\n", {}, r":2: column log10_vl: 'nan' is not finite"),
        ("id,time_days,log10_vl\na,0,inf\n", {}, r":2: column log10_vl: 'inf' is not finite"),
        ("id,time_days,log10_vl\na,0,6\na,0,5\n", {}, r":3: column time_days: patient a: duplicated time 0 \(also on line 2\)"),
        ("id,time_days,log10_vl\na,0,6\na,7,5\na,3,5\n", {}, r":4: column time_days: patient a: times not increasing"),
        ("id,time_days,log10_vl,cens,lloq\na,0,6,0,15\na,7,2.5,1,15\n", {}, r":3: column log10_vl: censored value 2.5 is above its limit 15"),
        ("id,time_days,log10_vl\na,0,6\na,7,TND\n", {}, r":3: column log10_vl: censored sample 'TND' without a limit"),
        ("id,time_days,log10_vl\na,0,6\na,7\n", {}, r":3: 2 fields, header has 3"),
        ("id,time_days,log10_vl,cens\na,0,6,yes\n", {}, r":2: column cens: censoring flag 'yes' must be 0 or 1"),
        ("id,time_days,log10_vl\na,-1,6\n", {}, r":2: column time_days: negative time"),
        ("id,arm,time_days,log10_vl\na,x,0,6\na,y,1,5\n", {}, r":3: column arm: patient a changes arm"),
    ],
)
def test_bad_data_names_file_line_and_column(tmp_path, text, kwargs, match):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=match) as err:
        read_viral_loads(path, **kwargs)
    assert str(err.value).startswith(str(path))


def test_missing_file_and_bad_options(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_viral_loads(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="time_unit 'month'"):
        read_viral_loads(write(tmp_path, LONG), time_unit="month")
