"""Parameter-set and trial files; all-or-nothing results folders."""

import json
import os
from pathlib import Path

import pytest

from hcvdyn.files import list_parameter_sets
from hcvdyn.model.library import load_parameter_set
from hcvdyn.model.trial_design import load_trial
from hcvdyn.results.writers import write_results


def test_bundled_parameter_sets_load_and_keep_their_sources():
    names = list_parameter_sets()
    assert {"neumann1998_5MU", "neumann1998_10MU", "neumann1998_15MU", "g1_nonresponder", "celgosivir_phase2"} <= set(names)
    for name in names:
        from hcvdyn.files import find_model_file, load_toml

        if "model" not in load_toml(find_model_file(name)):  # trial, population and scenario files
            continue
        pset = load_parameter_set(name)
        for p in pset.values:
            assert pset.source_of(p).strip()
    assert [load_parameter_set(f"neumann1998_{g}").values["eps"] for g in ("5MU", "10MU", "15MU")] == [0.81, 0.95, 0.96]


def test_bundled_trial_has_the_three_arms():
    spec = load_trial("celgosivir_phase2")
    assert list(spec.arms) == ["triple", "double", "control"]
    drugs = {a: {r.drug for r in regs} for a, regs in spec.arms.items()}
    assert drugs["triple"] == {"peginterferon_alfa2b", "ribavirin", "celgosivir"}
    assert drugs["double"] == {"peginterferon_alfa2b", "celgosivir"}
    assert drugs["control"] == {"peginterferon_alfa2b", "ribavirin"}
    assert spec.sample_days == (0, 1, 2, 3, 7, 14, 28, 56, 84)


def write(tmp_path, text, name="bad.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text,match",
    [
        ('model = "neumann1998"\n[parameters]\neps = 0.9\n', r"parameters.eps: write \{ value = ..., source"),
        ('model = "neumann1998"\n[parameters]\neps = { value = 0.9 }\n', r"parameters.eps: missing key 'source'"),
        ('model = "neumann1998"\n[parameters]\nepsilon = { value = 0.9, source = "x" }\n', "unknown parameter 'epsilon'"),
        ('model = "neumann1998"\n[parameters]\neps = { value = 1.9, source = "x" }\n', "'eps' = 1.9 outside"),
        ('model = "neumann"\n[parameters]\n', "unknown model 'neumann'"),
        ('model = "neumann1998"\n[parameters\n', r"invalid TOML: .*line 2"),
        ('model = "dahari2007"\n[parameters]\nr = { value = 2.0, source = "x" }\n', "no positive pretreatment steady state"),
    ],
)
def test_bad_parameter_files_name_file_and_parameter(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=match) as err:
        load_parameter_set(path)
    assert str(path) in str(err.value)


TRIAL = """
parameter_set = "g1_nonresponder"
duration_days = 84.0
sample_days = [0, 7, 84]
[[arms]]
name = "a"
regimens = [ {{ drug = "{drug}", dose = {dose}, unit = "mg", interval_days = {interval} }} ]
"""


@pytest.mark.parametrize(
    "fields,match",
    [
        (dict(drug="aspirin", dose=1, interval=1), r"arms\[0\] \(a\).regimens\[0\]: unknown drug 'aspirin'"),
        (dict(drug="ribavirin", dose=-5, interval=1), r"regimens\[0\]: .*dose = -5.0 is negative"),
        (dict(drug="ribavirin", dose=5, interval=0), r"regimens\[0\]: .*interval_days = 0.0 must be > 0"),
    ],
)
def test_bad_trial_files_name_file_arm_and_regimen(tmp_path, fields, match):
    path = write(tmp_path, TRIAL.format(**fields))
    with pytest.raises(ValueError, match=match) as err:
        load_trial(path)
    assert str(path) in str(err.value)


def test_unsorted_sample_days_rejected(tmp_path):
    path = write(tmp_path, TRIAL.format(drug="ribavirin", dose=5, interval=1).replace("[0, 7, 84]", "[0, 84, 7]"))
    with pytest.raises(ValueError, match="sample_days must increase"):
        load_trial(path)


def test_results_folder_is_all_or_nothing(tmp_path):
    out = tmp_path / "res"
    write_results(out, {"a.txt": "first", "b.json": {"x": 1}})
    assert (out / "a.txt").read_text() == "first" and json.loads((out / "b.json").read_text()) == {"x": 1}
    with pytest.raises(FileExistsError, match="already exists; use --force"):
        write_results(out, {"a.txt": "second"})

    def boom(dest):
        dest.write_text("partial")
        raise RuntimeError("figure failed")

    with pytest.raises(RuntimeError, match="figure failed"):
        write_results(out, {"a.txt": "second", "fig": boom}, force=True)
    assert (out / "a.txt").read_text() == "first"  # the good folder is untouched
    assert sorted(os.listdir(tmp_path)) == ["res"]  # no temporary folder left behind
    write_results(out, {"a.txt": "third"}, force=True)
    assert sorted(os.listdir(out)) == ["a.txt"]


FIT_SPEC = """data = "d.csv"
model = "agi_constant"
[free]
individual = ["log10_V0", "delta"]
[free.shared]
eps = ["a"]
{extra}
"""


@pytest.mark.parametrize(
    "extra,match",
    [
        ("[bounds]\ndelta = [0.5, 0.1]", r"\[bounds\] delta: \[0.5, 0.1\] must satisfy"),
        ("[bounds]\nc = [1.0, 10.0]", r"\[bounds\] c: 'c' is not a free parameter"),
        ("[bounds]\ndelta = 0.1", r"\[bounds\] delta: write \[lower, upper\]"),
        ("[bounds]\ndelta = [0.5, 1.0]", r"\[bounds\] delta: start 0.14 outside \[0.5, 1.0\]"),
        ("[options]\nresidual_sd = -1.0", "residual_sd = -1.0 must be > 0"),
        ("[parameters]\neps = 2.0", r"\[parameters\]: parameter 'eps' = 2.0 outside"),
        ("[free.per_arm]\nphi = ['a']\n[options]\nsigma = 0.2", r"\[options\]: unknown key\(s\) \['sigma'\]"),
        ("[options]\nn_starts = 0", r"\[options\] n_starts = 0 must be an integer >= 1"),
        ("[options]\nseed = 1.5", r"\[options\] seed = 1.5 must be an integer >= 0"),
        ("[options]\nestimate_residual_sd = 'yes'", r"\[options\] estimate_residual_sd = 'yes' must be true or false"),
        ("[dose_cmt]\n1 = 'ribavirin'", r"\[dose_cmt\] 1: model agi_constant has no PK-mode drug 'ribavirin'"),
        ("[dose_cmt]\n1 = 'aspirin'", r"\[dose_cmt\] 1: .*aspirin"),
        ("[dose_cmt]\nx = 'ribavirin'", r"\[dose_cmt\] write compartment number"),
        ("[arms.a]\nrho = 1.5", r"\[arms.a\]: parameter 'rho' = 1.5 outside"),
        ("[arms.a]\neps = 0.5", r"arm_params 'a' fixes \['eps'\], which the fit estimates"),
        ("[arms]\na = 0.5", r"\[arms.a\] must be a table of parameter values"),
    ],
)
def test_bad_fit_specs_name_file_and_key(tmp_path, extra, match):
    from hcvdyn.estimate.fitspec import load_fit_spec

    (tmp_path / "d.csv").write_text("id,time_days,log10_vl\nx,0,6\n")
    path = write(tmp_path, FIT_SPEC.format(extra=extra), name="spec.toml")
    with pytest.raises(ValueError, match=match) as err:
        load_fit_spec(path)
    assert str(path) in str(err.value)


def test_bundled_fit_spec_loads():
    from hcvdyn.estimate.fitspec import load_fit_spec

    spec = load_fit_spec(Path(__file__).resolve().parents[1] / "fits/tcl_recovery.toml")
    assert spec.design.shared == {"eps": ("triple", "double", "control"), "rho": ("triple", "control"), "phi": ("triple", "double")}
    assert spec.design.bounds == {"delta": (1e-3, 2.0)} and spec.design.sigma == 0.2


def test_every_bundled_fit_file_loads():
    """Each fit specification in fits/ reads with its data, and each truth file it names reads too."""
    from hcvdyn.estimate.fitspec import load_fit_spec
    from hcvdyn.estimate.synthetic import load_truth

    fits = Path(__file__).resolve().parents[1] / "fits"
    specs = [p for p in sorted(fits.glob("*.toml")) if not p.name.endswith("_truth.toml")]
    assert {p.stem for p in specs} >= {"phase2_synthetic", "tcl_recovery", "tcl_recovery_population"}
    for path in specs:
        spec = load_fit_spec(path)
        assert len(spec.read_data()) == 57, path
        if "truth" in spec.report:
            load_truth(spec.report["truth"])


def test_fit_spec_reads_doses_from_nonmem_rows_instead_of_a_trial(tmp_path):
    """A PK-mode model needs the arms' regimens, or a [dose_cmt] table that doses each patient from its data."""
    from hcvdyn.estimate.fitspec import load_fit_spec

    (tmp_path / "d.csv").write_text("ID,TIME,DV,EVID,AMT,CMT,ADDL,II\n1,0,,1,500,2,3,0.5\n1,0,6.1,0,,,,\n1,1,5.9,0,,,,\n")
    text = 'data = "d.csv"\nmodel = "pkpd3"\n[free]\nindividual = ["log10_V0"]\n'
    with pytest.raises(ValueError, match=r"give a trial .* or a \[dose_cmt\] table"):
        load_fit_spec(write(tmp_path, text, name="a.toml"))
    spec = load_fit_spec(write(tmp_path, text + '[dose_cmt]\n2 = "rbv"\n[options]\nn_starts = 3\nseed = 4\n', name="b.toml"))
    assert spec.dose_cmt == {2: "ribavirin"} and (spec.design.n_starts, spec.design.seed) == (3, 4) and not spec.design.estimate_sigma
    (p,) = spec.read_data().patients
    assert [d.drug for d in p.doses] == ["ribavirin"] and p.doses[0].times == (0.0, 0.5, 1.0, 1.5)
