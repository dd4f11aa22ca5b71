"""Command line: help, a successful run, bad input with a one-line message and exit status 2."""

import csv
import json

import numpy as np
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

from hcvdyn import __version__
from hcvdyn.cli import main
from hcvdyn.files import file_sha256
from hcvdyn.model.trial_design import load_trial
from hcvdyn.analysis.arms import simulate_arms


@pytest.mark.parametrize("argv", [["--help"], ["models", "--help"], ["simulate", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: hcvdyn" in capsys.readouterr().out


def test_models_lists_models_and_sets(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "neumann1998" in out and "pkpd3" in out and "celgosivir_phase2" in out and "[trial]" in out
    assert "[population of g1_nonresponder]" in out and "[scenarios on g1_nonresponder_population]" in out and "?]" not in out
    files = out.split("(models/):\n")[1].splitlines()
    assert len({line.index(" [") for line in files}) == 1  # one name column, as wide as the longest name


def test_arm_tables_keep_their_columns_for_long_arm_names(capsys):
    from hcvdyn.cli.trials import print_arm_table

    row = {"n": 2000, "mean_drop": 1.234, "mean_drop_lo": 1.1, "mean_drop_hi": 1.3, "sd_drop": 0.9, "pct_rvr": 1.2,
           "pct_evr": 23.4, "pct_evr_lo": 20.1, "pct_evr_hi": 26.0, "pct_cevr": 5.0}
    print_arm_table([{**row, "arm": "triple"}, {**row, "arm": "cel_200mg_bid"}, {**row, "arm": "a_much_longer_scenario_name"}])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1  # every row as wide as the header
    assert len({line.index("2000") for line in lines[1:]}) == 1 and len({line.index("23.4") for line in lines[1:]}) == 1


def test_models_shows_one_model_or_set_and_rejects_unknown_names(capsys):
    from hcvdyn.model.library import load_parameter_set
    from hcvdyn.model.catalog import get_model

    assert main(["models", "pkpd3"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["cel_ec50"])
    p = get_model("pkpd3").params["cel_ec50"]
    assert f"{p.default:g}" in row and p.unit in row and p.source in row
    assert main(["models", "g1_nonresponder"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["delta"])
    assert float(row.split()[1]) == load_parameter_set("g1_nonresponder").params()["delta"]
    assert main(["models", "pkdp3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hcvdyn: error: unknown model or parameter set 'pkdp3'; models:") and "\n" not in err


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "phase2"
    assert main(["simulate", "celgosivir_phase2", "--typical", "--out", str(out), "--points-per-day", "4"]) == 0
    return out


@pytest.mark.slow
def test_simulate_writes_table_summary_figure_and_provenance(simulated):
    names = sorted(p.name for p in simulated.iterdir())
    assert names == ["arms.pdf", "arms.png", "arms.svg", "run.json", "summary.csv", "trajectories.csv"]
    assert all((simulated / n).stat().st_size > 0 for n in names)
    meta = json.loads((simulated / "run.json").read_text())
    spec = load_trial("celgosivir_phase2")
    assert meta["hcvdyn_version"] == __version__ and meta["model"] == "pkpd3_homeostatic"
    assert meta["inputs"]["trial"]["sha256"] == file_sha256(spec.path)
    expected = spec.parameter_set.values["ifn_ec50"]
    assert meta["parameters"]["ifn_ec50"] == {"value": expected, "unit": "ug/L", "source": spec.parameter_set.source_of("ifn_ec50")}
    # the summary equals an independent in-process simulation of the same arms
    sim = simulate_arms(spec, points_per_day=4)
    rows = {r["arm"]: r for r in csv.DictReader(open(simulated / "summary.csv"))}
    for arm in spec.arms:
        for d in spec.sample_days:
            assert float(rows[arm][f"log10_drop_day_{d:g}"]) == pytest.approx(sim.log10_drop(arm, d), abs=1e-6)
    traj = list(csv.DictReader(open(simulated / "trajectories.csv")))
    first_day = [float(r["log10_drop"]) for r in traj if r["day"] == "1"]
    # interferon's first phase in a prior non-responder: a few tenths of a log10 (0.7 log10 by 48 h, Scott et al. 2011)
    assert len(first_day) == 3 and all(0.2 < x < 1.0 for x in first_day)
    assert np.all(np.array([float(r["eps"]) for r in traj]) <= 1.0)


@pytest.mark.slow
def test_simulate_population_against_the_reported_top_line(tmp_path, capsys):
    out = tmp_path / "pop"
    assert main(["simulate", "celgosivir_phase2", "--n", "200", "--draws", "5", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["arms.pdf", "arms.png", "arms.svg", "red_flags.csv", "run.json", "summary.csv", "trajectories.csv"]
    rows = {r["arm"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert float(rows["triple"]["reported_mean_drop"]) == 1.2 and float(rows["control"]["reported_pct_evr"]) == 10.0
    assert rows["double"]["reported_mean_drop"] == "nan"  # the release gives no number for the double arm
    for r in rows.values():
        assert float(r["virtual_mean_drop_lo"]) <= float(r["virtual_mean_drop"]) <= float(r["virtual_mean_drop_hi"])
    lo, hi = float(rows["triple"]["reported_pct_evr_lo"]), float(rows["triple"]["reported_pct_evr_hi"])
    assert (lo, hi) == pytest.approx((9.925, 65.112), abs=1e-2)  # Clopper-Pearson, 4 of 12
    assert "1.20 [" in printed and "not reported" in printed
    meta = json.loads((out / "run.json").read_text())
    assert meta["inputs"]["population"]["name"] == "g1_nonresponder_population" and meta["options"]["calibration_draws"] == 5


@pytest.mark.slow
def test_simulate_refuses_to_overwrite(simulated, capsys):
    before = (simulated / "summary.csv").read_text()
    assert main(["simulate", "celgosivir_phase2", "--out", str(simulated)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists; use --force" in err and "Traceback" not in err
    assert (simulated / "summary.csv").read_text() == before


def test_simulate_bad_spec_one_line(tmp_path, capsys):
    bad = tmp_path / "t.toml"
    bad.write_text('parameter_set = "g1_nonresponder"\nduration_days = -3\nsample_days = [0]\narms = []\n')
    assert main(["simulate", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"hcvdyn: error: {bad}: duration_days = -3.0 must be > 0"
    assert not (tmp_path / "o").exists()
    assert main(["simulate", "no_such_trial"]) == 2
    assert "no file 'no_such_trial'" in capsys.readouterr().err


def test_a_numerical_failure_exits_1_with_what_to_try_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import numpy as np

    from hcvdyn.analysis import arms

    class Failed:
        ok = np.array([False, True, True])

    monkeypatch.setattr(arms, "simulate_batch", lambda *a, **k: Failed())
    assert main(["simulate", "celgosivir_phase2", "--typical", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hcvdyn: numerical failure: ") and "arm(s) ['triple']" in err and "max_steps" in err
    assert err.count("\n") == 0 and "Traceback" not in err and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "phase2"
    assert main(["fit", str(ROOT / "fits/tcl_recovery.toml"), "--out", str(out), "--profile", "eps"]) == 0
    return out


def test_fit_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--help"])
    assert e.value.code == 0 and "fits/tcl_recovery.toml" in capsys.readouterr().out


@pytest.mark.slow
def test_fit_writes_parameters_result_and_curves(fitted):
    assert sorted(p.name for p in fitted.iterdir()) == ["curves.csv", "observations.csv", "parameters.csv", "result.json"]
    meta = json.loads((fitted / "result.json").read_text())
    assert meta["converged"] is True and meta["model"] == "agi_constant" and meta["inputs"]["data"]["patients"] == 57
    assert meta["inputs"]["data"]["sha256"] == file_sha256(str(ROOT / "fits/tcl_recovery.csv"))
    rows = {r["name"]: r for r in csv.DictReader(open(fitted / "parameters.csv"))}
    assert {"eps", "rho", "phi", "delta__S001", "log10_V0__S057"} <= set(rows)
    for name, r in rows.items():
        assert float(r["value"]) == pytest.approx(meta["estimates"][name]["value"], rel=1e-6)
    assert float(rows["eps"]["profile95_low"]) < float(rows["eps"]["value"]) < float(rows["eps"]["profile95_high"])
    from hcvdyn.model.catalog import get_model

    params = get_model("agi_constant").params
    for r in rows.values():  # Wald intervals on the declared scale: never outside the bounds
        assert params[r["parameter"]].lower <= float(r["wald95_low"]) <= float(r["wald95_high"]) <= params[r["parameter"]].upper
    assert len(meta["profile_trace"]["eps"]["theta"]) >= 15  # a grid for the profile figure, not only the secant steps
    assert meta["truth"] == {"eps": 0.85, "rho": 0.4, "phi": 0.5}  # the spec's truth file, for the forest plot
    curves = list(csv.DictReader(open(fitted / "curves.csv")))
    assert len(curves) == 57 * 337


def test_fit_bad_spec_one_line(tmp_path, capsys):
    spec = tmp_path / "f.toml"
    spec.write_text('data = "missing.csv"\nmodel = "agi_constant"\n[free]\nindividual = ["delta"]\n')
    assert main(["fit", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hcvdyn: error: {spec}: data file") and "\n" not in err
    (tmp_path / "missing.csv").write_text("id,time_days,log10_vl\na,0,6\n")
    spec.write_text('data = "missing.csv"\nmodel = "agi_constant"\n[free]\nindividual = ["dleta"]\n')
    assert main(["fit", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "unknown parameter 'dleta'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["models", "simulate", "fit", "sse", "trial", "scenario", "figures", "report"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: hcvdyn " + command in out
    assert "examples:" in out and f"hcvdyn {command}" in out.split("examples:")[1]


@pytest.mark.slow
def test_figures_command_redraws_a_fit_folder(fitted, capsys):
    assert main(["figures", str(fitted), "--formats", "png,pdf"]) == 0
    names = {p.name for p in (fitted / "figures").iterdir()}
    for fig in ("patient_fits", "arm_trajectories", "waterfall", "forest", "profiles"):
        assert {f"{fig}.png", f"{fig}.pdf"} <= names and (fitted / "figures" / f"{fig}.png").stat().st_size > 5000
    assert "wrote 5 figures" in capsys.readouterr().out
    from hcvdyn.results.figures import fit_figures

    forest = fit_figures(fitted, json.loads((fitted / "result.json").read_text()))["forest"]
    assert any(ln.get_marker() == "x" for ax in forest.axes for ln in ax.get_lines()), "forest plot without the true values"
    curves = list(csv.DictReader(open(fitted / "curves.csv")))
    lo, mid, hi = (np.array([float(r[k]) for r in curves]) for k in ("pred95_low", "log10_vl_fitted", "pred95_high"))
    assert np.all(lo < mid) and np.all(mid < hi) and np.all(hi - lo > 2 * 1.96 * 0.2 - 1e-9)  # at least the residual SD


@pytest.mark.slow
def test_a_moved_fit_folder_still_draws_its_figures_and_finds_its_inputs(fitted, tmp_path, capsys):
    """The figures come from the folder's files alone; its inputs are recorded relative to it."""
    import shutil

    from hcvdyn.results.provenance import input_path

    moved = tmp_path / "elsewhere" / "fit"
    shutil.copytree(fitted, moved)
    shutil.rmtree(moved / "figures", ignore_errors=True)
    assert main(["figures", str(moved), "--formats", "png"]) == 0
    assert (moved / "figures" / "patient_fits.png").stat().st_size > 5000
    meta = json.loads((moved / "result.json").read_text())
    assert not Path(meta["inputs"]["data"]["path"]).is_absolute()
    assert input_path(fitted, meta, "data") == (ROOT / "fits" / "tcl_recovery.csv").resolve()
    with pytest.raises(FileNotFoundError, match="input 'data' recorded at"):
        input_path(moved, meta, "data")  # moved without its inputs: said plainly


def test_figures_command_bad_input_is_one_line(tmp_path, capsys):
    assert main(["figures", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"hcvdyn: error: {tmp_path}: no result.json; give a folder written by hcvdyn fit or hcvdyn report"
    (tmp_path / "result.json").write_text('{"command": "trial"}')
    assert main(["figures", str(tmp_path)]) == 2
    assert "from hcvdyn 'trial'" in capsys.readouterr().err
    assert main(["figures", str(tmp_path), "--formats", "jpg"]) == 2
    assert "choose from pdf, svg, png" in capsys.readouterr().err
    assert not (tmp_path / "figures").exists()


def test_report_command_bad_input_is_one_line(tmp_path, capsys):
    spec = tmp_path / "f.toml"
    text = (ROOT / "fits/tcl_recovery.toml").read_text().replace('pk_trial = "celgosivir_phase2"', 'pk_trial = "no_such_trial"')
    spec.write_text(text.replace('data = "tcl_recovery.csv"', f'data = "{ROOT / "fits/tcl_recovery.csv"}"'))
    assert main(["report", str(spec), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hcvdyn: error: {spec}: [report] pk_trial: no file 'no_such_trial'") and "\n" not in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit) as e:
        main(["report", str(spec), "--n-vpc", "0"])
    assert e.value.code == 2 and "must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_trial_command_writes_results_and_refuses_overwrite(tmp_path, capsys):
    import json

    out = tmp_path / "t"
    assert main(["trial", "g1_nonresponder_population", "celgosivir_phase2", "--n", "40", "--seed", "1",
                 "--n-boot", "50", "--no-progress", "--out", str(out)]) == 0
    meta = json.loads((out / "result.json").read_text())
    assert meta["options"]["seed"] == 1 and meta["options"]["n_per_arm"] == 40 and meta["model"] == "pkpd3_homeostatic"
    assert len(meta["inputs"]["population"]["sha256"]) == 64
    arms = (out / "arms.csv").read_text().splitlines()
    assert arms[0].startswith("arm,n,") and len(arms) == 4
    assert len((out / "patients.csv").read_text().splitlines()) == 1 + 3 * 40
    before = (out / "arms.csv").read_text()
    assert main(["trial", "g1_nonresponder_population", "celgosivir_phase2", "--n", "40", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and (out / "arms.csv").read_text() == before


def test_trial_command_bad_input_is_one_line(tmp_path, capsys):
    assert main(["trial", "no_such_population", "celgosivir_phase2", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hcvdyn: error:") and "no_such_population" in err[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_scenario_command(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["scenario", "celgosivir_scenarios", "--n", "30", "--seed", "2", "--n-boot", "50", "--no-progress", "--out", str(out)]) == 0
    comp = (out / "comparison.csv").read_text().splitlines()
    assert comp[0].startswith("scenario,reference,diff_mean_drop") and len(comp) == 1 + 5
    bad = tmp_path / "bad.toml"
    bad.write_text('population = "g1_nonresponder_population"\ntrial = "celgosivir_phase2"\nreference_arm = "triple"\n'
                   '[[scenarios]]\nname = "x"\nremove = ["interferon_beta"]\n')
    assert main(["scenario", str(bad), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hcvdyn: error:") and "interferon_beta" in err[-1]


@pytest.mark.slow
def test_calibrate_command_writes_the_mechanism_table(tmp_path, capsys):
    out = tmp_path / "cal"
    assert main(["calibrate", "--mechanism", "infectivity", "--n", "60", "--maxfev", "8", "--no-uncertainty", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "mechanisms.csv")))
    assert [r["mechanism"] for r in rows] == ["infectivity"] and int(rows[0]["knobs"]) == 2  # delta, cel_ec50
    result = json.loads((out / "calibration.json").read_text())
    terms = result["terms"]
    assert set(terms) == {"triple.mean", "triple.evr", "control.mean", "control.evr", "total"}
    assert terms["total"] == pytest.approx(sum(v for k, v in terms.items() if k != "total"))
    assert float(rows[0]["neg2ll_calibration"]) == pytest.approx(terms["total"], abs=0.01)
    assert set(result["arms"]) == {"triple", "double", "control"}  # the double arm is predicted, not fitted
    assert main(["calibrate", "--mechanism", "no_such", "--out", str(tmp_path / "x")]) == 2
    assert "unknown mechanism 'no_such'" in capsys.readouterr().err


def test_population_fit_refuses_an_unknown_profile_name_before_fitting(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["fit", "tcl_recovery_population", "--profile", "omega_nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--profile omega_nope: not estimated by" in err and "omega_delta" in err and not out.exists()
    assert "fitting" not in err  # refused before the fit starts


def test_report_refuses_a_population_specification(tmp_path, capsys):
    """The report fits whole trials; on a population spec it would silently fit another model than declared."""
    out = tmp_path / "r"
    assert main(["report", str(ROOT / "fits/phase2_synthetic.toml"), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "phase2_synthetic.toml: a population fit specification" in err and "hcvdyn fit" in err and not out.exists()
