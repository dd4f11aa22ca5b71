"""Stochastic simulation and estimation: the coverage arithmetic, and replicate fits of the bundled design."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from hcvdyn.cli import main
from hcvdyn.estimate.sse import same_keys, summarize, wilson_interval
from hcvdyn.results.writers import rows_csv

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "fits/tcl_recovery.toml"
TRUTH = ROOT / "fits/tcl_recovery_truth.toml"


def test_wilson_interval_matches_published_values():
    # Newcombe 1998, Stat Med 17:857, Table I: 81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and lo == pytest.approx(0.8389, abs=1e-4)


def test_summarize_counts_only_converged_replicates():
    rows = [
        {"replicate": 1, "converged": True, "a": 1.1, "a_se": 0.1, "a_wald_covers": True},
        {"replicate": 2, "converged": True, "a": 0.7, "a_se": 0.1, "a_wald_covers": False},
        {"replicate": 3, "converged": True, "a": 1.0, "a_se": 0.2, "a_wald_covers": True},
        {"replicate": 4, "converged": False, "a": 9.0, "a_se": 9.0, "a_wald_covers": False},
    ]
    (s,) = summarize(rows, {"a": 1.0})
    assert s["n_converged"] == 3 and s["n_replicates"] == 4
    assert s["mean"] == pytest.approx(0.9333333) and s["bias"] == pytest.approx(-0.0666667)
    assert s["empirical_sd"] == pytest.approx(np.std([1.1, 0.7, 1.0], ddof=1))
    assert s["mean_se"] == pytest.approx(0.1333333) and s["wald_coverage"] == pytest.approx(2 / 3)
    assert (s["wald_coverage_low"], s["wald_coverage_high"]) == pytest.approx(wilson_interval(2, 3))
    (s,) = summarize([{"replicate": 1, "converged": False, "message": "solve failed"}], {"a": 1.0})
    assert s["n_converged"] == 0 and "mean" not in s
    # a profile computed in two of the three (NaN where it failed) counts over those two
    rows[0]["a_profile_covers"], rows[1]["a_profile_covers"], rows[2]["a_profile_covers"] = True, np.nan, False
    (s,) = summarize(rows, {"a": 1.0})
    assert s["profile_coverage"] == 0.5 and (s["profile_coverage_low"], s["profile_coverage_high"]) == pytest.approx(wilson_interval(1, 2))
    # a column only the second parameter has still reaches the table (rows_csv takes its header from the first row)
    two = [{"replicate": i, "converged": True, "a": 1.0, "a_se": 0.1, "a_wald_covers": True,
            "b": 2.0, "b_se": 0.1, "b_wald_covers": True, "b_profile_covers": i == 1} for i in (1, 2)]
    summary = summarize(two, {"a": 1.0, "b": 2.0})
    assert "profile_coverage" not in rows_csv(summary).splitlines()[0]
    table = [line.split(",") for line in rows_csv(same_keys(summary)).splitlines()]
    assert table[2][table[0].index("profile_coverage")] == "0.5" and table[1][table[0].index("profile_coverage")] in ("", "nan")


@pytest.mark.slow
def test_sse_command_refits_reproducible_replicates(tmp_path, capsys):
    """Two replicate trials of the bundled design, fitted with the residual SD estimated: files agree with
    each other, a replicate's data are those of generate_synthetic_trial with its seed, and every estimate
    lies within 4 SE of its truth."""
    spec_file = tmp_path / "spec.toml"
    text = SPEC.read_text().replace('data = "tcl_recovery.csv"', f'data = "{ROOT / "fits/tcl_recovery.csv"}"')
    text = text.replace('truth = "tcl_recovery_truth.toml"', f'truth = "{TRUTH}"')
    spec_file.write_text(text.replace("[options]\n", "[options]\nestimate_residual_sd = true\n"))
    out = tmp_path / "sse"
    assert main(["sse", str(spec_file), "--n", "2", "--seed", "3", "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "replicates.csv")))
    summary = {r["name"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    meta = json.loads((out / "result.json").read_text())
    assert [int(r["seed"]) for r in rows] == [3, 4] == meta["options"]["seeds"]
    assert meta["truth_values"] == {"eps": 0.85, "rho": 0.4, "phi": 0.5, "residual_sd": 0.2}
    for name, true in meta["truth_values"].items():
        est = np.array([float(r[name]) for r in rows])
        se = np.array([float(r[f"{name}_se"]) for r in rows])
        covered = [bool(int(r[f"{name}_wald_covers"])) for r in rows]
        assert covered == list(np.abs(est - true) <= 1.959964 * se)
        assert np.all(np.abs(est - true) < 4 * se)
        assert float(summary[name]["mean"]) == pytest.approx(est.mean(), rel=1e-6)
    # replicate 1 is the trial generate_synthetic_trial makes with seed 3
    from hcvdyn.estimate.data import read_viral_loads
    from hcvdyn.estimate.fit import fit_trial
    from hcvdyn.estimate.fitspec import load_fit_spec
    from hcvdyn.solve.options import SolverOptions
    from hcvdyn.estimate.synthetic import generate_synthetic_trial

    generate_synthetic_trial(TRUTH, tmp_path / "r.csv", seed=3)
    spec, data = load_fit_spec(spec_file), read_viral_loads(tmp_path / "r.csv")
    d = spec.design
    fit = fit_trial(spec.model, data, {a: () for a in data.arms}, individual=d.individual, shared=d.shared, per_arm=d.per_arm,
                    params=d.params, sigma=d.sigma, options=SolverOptions(atol=d.options.atol), bounds=d.bounds, estimate_sigma=True)
    assert fit.values["rho"] == pytest.approx(float(rows[0]["rho"]), rel=1e-6)
    assert fit.sigma == pytest.approx(float(rows[0]["residual_sd"]), rel=1e-6)
    assert main(["sse", str(spec_file), "--n", "2", "--seed", "3", "--out", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_sse_command_bad_input_is_one_line(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    text = SPEC.read_text().replace('truth = "tcl_recovery_truth.toml"', "")
    spec.write_text(text.replace('data = "tcl_recovery.csv"', f'data = "{ROOT / "fits/tcl_recovery.csv"}"'))
    assert main(["sse", str(spec), "--n", "3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no truth file" in err and str(spec) in err
    assert main(["sse", str(SPEC), "--truth", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "none.toml" in capsys.readouterr().err
    assert main(["sse", str(SPEC), "--n", "1", "--out", str(tmp_path / "o")]) == 2
    assert "n_replicates" in capsys.readouterr().err and not (tmp_path / "o").exists()


def _chunk(folder, seeds, spec=SPEC, truth=TRUTH):
    """A results folder as ``hcvdyn sse`` writes it, with made-up estimates (no fitting)."""
    from hcvdyn.estimate.sse import RecoveryStudy
    from hcvdyn.results.provenance import provenance
    from hcvdyn.results.writers import rows_csv, write_results

    rows = [{"replicate": i + 1, "seed": s, "converged": s != 7, "message": "converged" if s != 7 else "not converged: x",
             "rho": 0.4 + 0.01 * s, "rho_se": 0.05, "rho_wald_covers": s % 3 != 0} for i, s in enumerate(seeds)]
    study = RecoveryStudy(tuple(rows), tuple(summarize(rows, {"rho": 0.4}, 0.95, "trial fit")), {"rho": 0.4}, 0.95, tuple(seeds))
    meta = provenance("sse", folder, {"spec": (spec, {"name": "x"}), "truth": truth}, options={"level": 0.95, "seeds": list(seeds)},
                      truth_values=study.truth, summary=list(study.summary))
    write_results(folder, {"replicates.csv": rows_csv(rows), "summary.csv": rows_csv(list(study.summary)), "result.json": meta})


def test_sse_combines_chunks_of_one_study(tmp_path, capsys):
    """Chunks run with disjoint seeds give one study: every row once, ordered by seed, summarized again as if
    run at once; a shared seed, another truth file or a folder that is not an sse result is refused."""
    _chunk(tmp_path / "b", [6, 7, 8])
    _chunk(tmp_path / "a", [3, 4, 5])
    out = tmp_path / "all"
    assert main(["sse", str(SPEC), "--combine", str(tmp_path / "b"), str(tmp_path / "a"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "replicates.csv")))
    meta = json.loads((out / "result.json").read_text())
    assert [int(r["seed"]) for r in rows] == [3, 4, 5, 6, 7, 8] == meta["options"]["seeds"]
    assert [int(r["replicate"]) for r in rows] == [1, 2, 3, 4, 5, 6] and meta["options"]["combined_from"] == 2
    (s,) = meta["summary"]
    assert s["n_converged"] == 5 and s["n_replicates"] == 6  # seed 7 did not converge
    assert s["mean"] == pytest.approx(0.4 + 0.01 * np.mean([3, 4, 5, 6, 8]))
    assert s["wald_coverage"] == pytest.approx(3 / 5)  # seeds 3 and 6 miss
    assert meta["inputs"]["part_1"]["path"] == "../b/result.json"
    _chunk(tmp_path / "c", [8, 9])
    assert main(["sse", str(SPEC), "--combine", str(tmp_path / "a"), str(tmp_path / "c"), str(tmp_path / "b"),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "seed 8 is in parts 2 and 3" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    _chunk(tmp_path / "d", [10, 11], truth=SPEC)
    assert main(["sse", str(SPEC), "--combine", str(tmp_path / "a"), str(tmp_path / "d"), "--out", str(tmp_path / "bad")]) == 2
    assert "another truth file" in capsys.readouterr().err
    assert main(["sse", str(SPEC), "--combine", str(tmp_path / "a"), str(tmp_path), "--out", str(tmp_path / "bad")]) == 2
    assert "not an hcvdyn sse results folder" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_drawn_patients_are_the_bundled_trials_patients():
    """drawn_patients at the truth file's seed gives the bundled recovery data's patients: same groups and arms, in
    id order, and baseline loads within 4 residual SDs of each day-0 sample."""
    from hcvdyn.estimate.data import read_viral_loads
    from hcvdyn.estimate.synthetic import drawn_patients

    data = read_viral_loads(ROOT / "fits/tcl_recovery.csv")
    drawn = drawn_patients(TRUTH)
    assert len(drawn) == len(data.patients) == 57
    for p, d in zip(data.patients, drawn):
        assert (p.arm, p.group) == (d.arm, d.group), p.id
        assert p.t_days[0] == 0.0 and abs(p.log10_vl[0] - d.params["log10_V0"]) < 4 * 0.2, p.id


def test_known_eta_intervals_are_exact_over_many_draws():
    """The chi-square interval from the drawn random effects covers the true SD in 95% of 600 draws of the design
    (binomial SD 0.9%), and the realized SD averages the truth times E sqrt(chi2_{n-2} / n) (2 group centres, as
    the fit shifts both parameters by group). Without delta's group shift its two groups' medians (2.5-fold apart)
    widen the realized SD, and the interval rarely covers."""
    from dataclasses import replace

    from scipy.special import gammaln

    from hcvdyn.estimate.population_design import OuterValue
    from hcvdyn.estimate.synthetic import drawn_patients, load_truth

    tr = load_truth(TRUTH)
    values = (OuterValue("log10_V0_group_partial_responder", "covariate", "log10_V0", "linear", 0.0, -5.0, 5.0),
              OuterValue("omega_log10_V0", "omega", "log10_V0", "linear", 0.3, 1e-3, 5.0),
              OuterValue("omega_delta", "omega", "delta", "linear", 0.5, 1e-3, 5.0))
    shift = OuterValue("delta_group_partial_responder", "covariate", "delta", "linear", 0.0, -5.0, 5.0)
    drawn = [drawn_patients(tr, s) for s in range(1, 601)]
    got = [tr.known_eta_sds(d, values + (shift,)) for d in drawn]
    expected = np.exp(gammaln(56 / 2) - gammaln(55 / 2)) * np.sqrt(2 / 57)  # E sqrt(chi2_55 / 57)
    for label, true in (("omega_log10_V0", 0.35), ("omega_delta", 0.4)):
        realized = np.array([g[label][0] for g in got])
        covered = np.mean([g[label][1] <= true <= g[label][2] for g in got])
        assert 0.925 <= covered <= 0.975, (label, covered)
        assert realized.mean() == pytest.approx(true * expected, abs=3 * realized.std() / np.sqrt(600)), label
    # the degrees of freedom count the group centres: with 4 patients per group, chi2_6 (not chi2_8) covers 95%
    small = replace(tr, groups={k: replace(g, n=4) for k, g in tr.groups.items()})
    few = [small.known_eta_sds(drawn_patients(small, s), values + (shift,))["omega_log10_V0"] for s in range(1, 2001)]
    assert 0.935 <= np.mean([lo <= 0.35 <= hi for _, lo, hi in few]) <= 0.965  # 3 binomial SDs; chi2_8 limits would cover 89.5%
    unshifted = [tr.known_eta_sds(d, values)["omega_delta"] for d in drawn]
    assert np.mean([r for r, _, _ in unshifted]) > 0.5 and np.mean([lo <= 0.4 <= hi for _, lo, hi in unshifted]) < 0.2
