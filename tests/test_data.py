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


# ---- data as the field writes it (issue 13) ------------------------------------------------------------------------

NONMEM_WS = """# exported from NONMEM, whitespace-delimited
ID   TIME   DV      CENS  LLOQ  MDV  EVID
1    0      6.4021  0     15    0    0
1    1      5.5     0     15    0    0
1    2      .       0     .     1    0
1    28     1.1761  1     15    0    0
"""


@pytest.mark.parametrize("delimiter", [" ", "  ", "\t", " \t "])
def test_whitespace_and_tab_delimited_nonmem_files(tmp_path, delimiter):
    text = "\n".join(delimiter.join(line.split()) if not line.startswith("#") else line for line in NONMEM_WS.splitlines())
    p = read_viral_loads(write(tmp_path, text, "vl.txt")).patients[0]
    np.testing.assert_array_equal(p.t_days, [0, 1, 28])
    np.testing.assert_array_equal(p.censored, [False, False, True])
    assert p.log10_vl[2] == p.lloq_log10[2] == pytest.approx(math.log10(15))


def test_tab_delimited_long_layout_keeps_cells_with_spaces(tmp_path):
    text = "id\ttime_days\tlog10_vl\tlloq\ta\t0\t6.2\t15\na\t7\tnot detected\t15\n".replace("\ta\t0", "\na\t0")
    p = read_viral_loads(write(tmp_path, text, "vl.tsv")).patients[0]
    np.testing.assert_array_equal(p.censored, [False, True])


@pytest.mark.parametrize(
    "text,match",
    [
        ("ID,TIME,DV\n1,0,6.1\n1\t2\t5\n", r"vl.txt:3: fields separated by tab, but the header \(line 1\) by comma"),
        ("ID\tTIME\tDV\n1\t0\t6.1\n1,2,5\n", r"vl.txt:3: fields separated by comma, but the header \(line 1\) by tab"),
        ("ID TIME DV\n1 0 6.1\n1,2,5\n", r"vl.txt:3: fields separated by comma, but the header \(line 1\) by whitespace"),
        ("ID,TIME,DV\n1,0,6.1\n1 2 5\n", r"vl.txt:3: fields separated by whitespace, but the header \(line 1\) by comma"),
        ("ID TIME DV CENS\n1 0 6.1\n", r"vl.txt:2: 3 fields, header has 4 \(whitespace-delimited: write \. for an empty cell\)"),
        ("id;time_days;log10_vl\na;0;6\n", r"vl.txt:1: missing column: one of id .*semicolon-delimited"),
        ("ID,TIME,DV,TIME\n1,0,6,0\n", r"vl.txt:1: column time appears twice in the header"),
    ],
)
def test_mixed_delimiters_are_refused_naming_file_and_line(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_viral_loads(write(tmp_path, text, "vl.txt"))


def test_monolix_y_cens_and_limit(tmp_path):
    """Monolix: Y holds the limit on CENS = 1 rows; LIMIT is the interval's other end, open (empty, -inf) for M3."""
    text = "ID TIME Y CENS LIMIT SEX\n1 0 6.3 0 . F\n1 7 3.2 0 . F\n1 28 1.18 1 . F\n1 56 1.18 1 -inf F\n"
    p = read_viral_loads(write(tmp_path, text, "monolix.txt")).patients[0]
    np.testing.assert_array_equal(p.censored, [False, False, True, True])
    np.testing.assert_allclose(p.log10_vl, [6.3, 3.2, 1.18, 1.18])
    np.testing.assert_allclose(p.lloq_log10[2:], [1.18, 1.18])
    assert p.categories == {"sex": "F"}
    for row, match in [("1 56 1.18 1 0 F", r"monolix.txt:5: column limit: LIMIT = 0 makes the sample interval-censored"),
                       ("1 56 1.18 -1 . F", r"monolix.txt:5: column cens: CENS = -1 .*right-censored samples are not supported"),
                       ("1 56 0 1 . F", r"monolix.txt:5: column y: censored sample 0 as its own limit is at or below 1 IU/mL")]:
        with pytest.raises(ValueError, match=match):
            read_viral_loads(write(tmp_path, text.rsplit("\n", 2)[0] + "\n" + row + "\n", "monolix.txt"))


@pytest.mark.parametrize(
    "lloq_header,lloq,dv,kwargs,expected",
    [
        ("LLOQ", "15", "1.1761", {}, math.log10(15)),  # above 10: IU/mL
        ("LLOQ", "1.18", "1.18", {}, 1.18),  # the censored DV equals it: DV's log10 scale
        ("LLOQ", "25", "1.4", {}, math.log10(25)),  # the censored DV equals its log10 (to DV's written precision)
        ("LLOQ", "1.18", ".", {"limit_scale": "log10"}, 1.18),  # declared
        ("LLOQ", "12", ".", {"limit_scale": "linear"}, math.log10(12)),  # declared: below 10, yet IU/mL
        ("LLOQ_IU_ML", "8", ".", {}, math.log10(8)),  # the name says the unit
        ("LLOQ_LOG10", "1.18", ".", {}, 1.18),
    ],
)
def test_nonmem_limit_unit_declared_or_shown_by_the_file(tmp_path, lloq_header, lloq, dv, kwargs, expected):
    text = f"ID TIME DV CENS {lloq_header}\n1 0 6.1 0 .\n1 28 {dv} 1 {lloq}\n"
    p = read_viral_loads(write(tmp_path, text, "nm.txt"), **kwargs).patients[0]
    assert p.censored[1] and p.log10_vl[1] == pytest.approx(expected) == p.lloq_log10[1]


@pytest.mark.parametrize(
    "rows,kwargs,match",
    [
        (["1 0 6.1 0 1.18", "1 28 5.0 0 1.18"], {}, r"nm.txt:2: column lloq: is the limit 1.18 in IU/mL or in log10 IU/mL"),
        (["1 0 6.1 1 6.1", "1 28 1.18 1 15"], {}, r"nm.txt:3: column lloq: the limit reads as log10 IU/mL on line 2 .* but as IU/mL on line 3"),
        (["1 0 6.1 0 1.18"], {"limit_scale": "banana"}, r"limit_scale 'banana'"),
        (["1 0 6.1 0 1.18"], {"limit_scale": "linear", "vl_scale": "log10"}, None),
    ],
)
def test_ambiguous_limit_units_are_refused(tmp_path, rows, kwargs, match):
    path = write(tmp_path, "ID TIME DV CENS LLOQ\n" + "\n".join(rows) + "\n", "nm.txt")
    if match is None:
        assert read_viral_loads(path, **kwargs).patients[0].lloq_log10[0] == pytest.approx(math.log10(1.18))
        return
    with pytest.raises(ValueError, match=match):
        read_viral_loads(path, **kwargs)
    with pytest.raises(ValueError, match="limit_scale = 'log10' contradicts the column name lloq_iu_ml"):
        read_viral_loads(write(tmp_path, "ID TIME DV LLOQ_IU_ML\n1 0 6 15\n", "nm2.txt"), limit_scale="log10")


@pytest.mark.parametrize("bom", ["\ufeff", ""])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_byte_order_mark_and_utf16_spreadsheet_exports(tmp_path, bom, encoding):
    p = tmp_path / "export.csv"
    p.write_bytes((bom + LONG.replace("\n", "\r\n")).encode(encoding))  # utf-16 writes its own mark
    ds = read_viral_loads(p)
    assert [x.id for x in ds] == ["p1", "p2"] and ds.by_id("p1").covariates == {"weight_kg": 80.0}


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("id,time_days,log10_vl,site\na,0,6,Z\u00fcrich\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv:2: not UTF-8 text \(byte 0xfc\)"):
        read_viral_loads(p)


@pytest.mark.parametrize(
    "value,limit,ok",
    [
        ("1.1761", "15", True),  # log10(15) = 1.17609 rounded to 4 decimals
        ("1.18", "15", True),
        ("1.2", "15", True),  # half a unit of the first decimal: 0.05
        ("1.0", "15", True),  # below the limit
        ("1.19", "15", False),  # 1.19 - 0.005 > 1.17609
        ("1.3", "15", False),
        ("2", "15", False),
        ("1.176", "1.1761", True),  # both rounded: below
    ],
)
def test_censored_value_equal_to_its_limit_to_written_precision(tmp_path, value, limit, ok):
    log_header = "lloq" if float(limit) > 10 else "lloq_log10"
    text = f"id,time_days,log10_vl,cens,{log_header}\na,0,6,0,{limit}\na,7,{value},1,{limit}\n"
    path = write(tmp_path, text)
    if ok:
        p = read_viral_loads(path).patients[0]
        assert p.censored[1] and p.log10_vl[1] == p.lloq_log10[1]
    else:
        with pytest.raises(ValueError, match=rf":3: column log10_vl: censored value {value} is above its limit"):
            read_viral_loads(path)


def test_censored_iu_ml_value_rounded_to_its_limit(tmp_path):
    text = "id,time_days,vl_iu_ml,cens,lloq\na,0,2000000,0,15\na,7,15,1,15\na,8,12,1,15\n"
    assert read_viral_loads(write(tmp_path, text)).patients[0].censored.tolist() == [False, True, True]
    for above in ("16", "15.4"):
        with pytest.raises(ValueError, match=rf":3: column vl_iu_ml: censored value {above} is above its limit 15 IU/mL"):
            read_viral_loads(write(tmp_path, text.replace("a,7,15,", f"a,7,{above},")))


@pytest.mark.parametrize(
    "header,value,kwargs,match",
    [
        ("log10_vl", "3000000", {}, r":2: column log10_vl: 3000000 is not a log10 viral load .* name the column vl_iu_ml"),
        ("log10_vl", "10.5", {}, r":2: column log10_vl: 10.5 is not a log10 viral load"),
        ("vl", "2.5e6", {"vl_scale": "log10"}, r":2: column vl: 2.5e6 is not a log10 viral load .* pass vl_scale='linear'"),
        ("vl_iu_ml", "3e12", {}, r":2: column vl_iu_ml: 3e12 IU/mL is above any human load"),
    ],
)
def test_iu_ml_load_in_a_log10_column_is_refused(tmp_path, header, value, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_viral_loads(write(tmp_path, f"id,time_days,{header}\na,0,{value}\n"), **kwargs)
    if header != "vl_iu_ml":  # 10 log10 IU/mL is the largest accepted
        assert read_viral_loads(write(tmp_path, f"id,time_days,{header}\na,0,10\n"), **kwargs).patients[0].log10_vl[0] == 10


def test_iu_ml_load_in_nonmem_dv_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"nm.csv:3: column dv: 3000000 is not a log10 viral load .* vl_scale='linear'"):
        read_viral_loads(write(tmp_path, "ID,TIME,DV\n1,0,6.5\n1,1,3000000\n", "nm.csv"))
    p = read_viral_loads(write(tmp_path, "ID,TIME,DV\n1,0,6.5\n1,1,3000000\n", "nm.csv"), vl_scale="linear").patients[0]
    assert p.log10_vl[1] == pytest.approx(math.log10(3e6))


def test_treatment_end_per_patient(tmp_path):
    text = ("id,arm,time_days,log10_vl,treatment_end_weeks\n"
            "a,x,0,6,12\na,x,84,2,12\na,x,112,5,12\nb,x,0,6,\nb,x,7,5,\n")
    ds = read_viral_loads(write(tmp_path, text))
    assert ds.by_id("a").treatment_end_days == 84.0 and ds.by_id("b").treatment_end_days == math.inf
    nm = read_viral_loads(write(tmp_path, "ID TIME DV TEND\n1 0 6 24\n1 24 5 24\n", "nm.txt"), time_unit="hour")
    assert nm.patients[0].treatment_end_days == 1.0  # TEND in TIME's unit
    for body, match in [("a,x,0,6,12\na,x,7,5,10\n", r":3: column treatment_end_weeks: patient a changes its treatment end from 84 days \(line 2\) to 70"),
                        ("a,x,0,6,-1\n", r":2: column treatment_end_weeks: treatment end -1 must be >= 0")]:
        with pytest.raises(ValueError, match=match):
            read_viral_loads(write(tmp_path, text.split("\n")[0] + "\n" + body))


def test_text_columns_are_categorical_covariates(tmp_path):
    text = ("id,time_days,log10_vl,sex,genotype,weight_kg\n"
            "a,0,6,F,1a,70\na,7,5,F,,70\nb,0,6,M,1,82\nb,7,5,M,1,83\n")
    ds = read_viral_loads(write(tmp_path, text))
    assert ds.by_id("a").categories == {"sex": "F", "genotype": "1a"} and ds.by_id("a").covariates == {"weight_kg": 70.0}
    assert ds.by_id("b").categories == {"sex": "M", "genotype": "1"} and ds.by_id("b").covariates == {"weight_kg": 82.0}
    with pytest.raises(ValueError, match=r":5: column sex: patient b changes sex from 'M' \(line 4\) to 'F'"):
        read_viral_loads(write(tmp_path, text.replace("b,7,5,M", "b,7,5,F")))
    with pytest.raises(ValueError, match=r":3: column group: patient a changes group from 'NR' to 'R'"):
        read_viral_loads(write(tmp_path, "id,group,time_days,log10_vl\na,NR,0,6\na,R,7,5\n"))
