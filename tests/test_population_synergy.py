"""The synergy test on population fits: nested fits, the likelihood-ratio test, psi's profile interval deciding
as the test does, and the size-study plumbing."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import chi2

import hcvdyn
import hcvdyn.analysis.population_synergy as ps
from hcvdyn.analysis.synergy_size import summarize_synergy
from hcvdyn.estimate.data import Dataset, PatientData
from hcvdyn.estimate.design import FitDesign
from hcvdyn.estimate.population_design import PopulationDesign

CRIT = chi2.ppf(0.95, 1)


def _stand_in(psi_hat: float, se: float, calls: list):
    """fit_population on a quadratic profile OFV(psi) = 100 + ((psi - psi_hat) / se)^2 (no ODEs)."""

    def fit(model, dataset, regimens, design, start=None, start_eta=None, covariance=True, hold=None):
        assert "psi" in design.fit.shared  # every fit has psi among its outer values, held or estimated
        free = "psi" not in (hold or {})
        psi = psi_hat if free else hold["psi"]
        calls.append((free, psi, dict(start or {})))
        ofv = 100 + ((psi - psi_hat) / se) ** 2
        return SimpleNamespace(ofv=ofv, objective=ofv, x={"psi": psi} if free else {"a": 1.0, "psi": psi}, success=True,
                               message="converged", stderr={"psi": se}, values=(), eta=None)

    return fit


def _design():
    fd = FitDesign(individual=("delta",), shared={"rho": ("t",), "phi": ("t",)}, params={"psi": 0.0})
    return PopulationDesign(fit=fd)


@pytest.mark.parametrize("psi_hat", [0.8, 1.2])
def test_profile_interval_and_lrt_decide_alike(monkeypatch, psi_hat):
    """LRT = ((psi_hat) / se)^2; the interval is psi_hat -/+ 1.96 se; it covers 0 exactly when the test does not
    reject; the null fit is the profile's point at 0 (never refitted); the psi-free fit starts at the null optimum."""
    calls = []
    monkeypatch.setattr(ps, "fit_population", _stand_in(psi_hat, 0.5, calls))
    model = hcvdyn.get_model("agi_constant")
    res = ps.estimate_population_synergy(model, [], {}, _design(), arm="t")
    assert res.lrt == pytest.approx((psi_hat / 0.5) ** 2) and res.p_value == pytest.approx(chi2.sf(res.lrt, 1))
    assert res.psi_interval == pytest.approx((psi_hat - 0.5 * math.sqrt(CRIT), psi_hat + 0.5 * math.sqrt(CRIT)), abs=1e-4)
    lo, hi = res.psi_interval
    assert (lo <= 0 <= hi) == (res.p_value >= 0.05) and res.verdict == ("synergy" if lo > 0 else "not distinguishable from additive")
    assert calls[1][0] and calls[1][2] == {"a": 1.0, "psi": 0.0}  # the psi-free fit from the null's optimum, psi at 0
    assert [c for c in calls[2:] if c[1] == 0.0] == []  # psi = 0 is the null fit, not refitted
    assert not res.notes


def test_a_nesting_violation_is_refitted_and_noted(monkeypatch):
    """A psi-free fit that ends above the null (from every start) is reported and its LRT set to 0."""
    calls = []
    fit = _stand_in(0.8, 0.5, calls)

    def worse(*a, **k):
        out = fit(*a, **k)
        if "psi" not in k.get("hold", {}):
            out.ofv = out.objective = 200.0
        return out

    monkeypatch.setattr(ps, "fit_population", worse)
    res = ps.estimate_population_synergy(hcvdyn.get_model("agi_constant"), [], {}, _design(), arm="t")
    assert [c[2]["psi"] for c in calls if c[0]] == [0.0, 0.5, -0.5]
    assert res.lrt == 0.0 and "nesting" in res.notes



def test_psi_bounds_that_exclude_the_null_are_refused(monkeypatch):
    monkeypatch.setattr(ps, "fit_population", _stand_in(0.8, 0.5, []))
    from dataclasses import replace

    design = replace(_design(), fit=replace(_design().fit, bounds={"psi": (0.5, 3.0)}))
    with pytest.raises(ValueError, match=r"psi's bounds \(0.5, 3.0\) exclude 0"):
        ps.estimate_population_synergy(hcvdyn.get_model("agi_constant"), [], {}, design, arm="t")

def test_summary_of_a_size_study():
    rows = [{"replicate": i, "seed": i, "m.psi": p, "m.rejects": r, "m.covers_truth": not r, "m.agree": True, "m.nested": True,
             "m.converged": True} for i, (p, r) in enumerate([(0.1, False), (2.5, True), (-0.3, False), (0.2, False)])]
    rows.append({"replicate": 9, "seed": 9, "m.psi": math.nan, "m.converged": False, "m.message": "solve failed"})
    (s,) = summarize_synergy(rows, ["m"], 0.0)
    assert (s["n_tested"], s["n_replicates"], s["n_converged"]) == (4, 5, 4)
    assert s["rejection_rate"] == 0.25 and s["coverage_rate"] == 0.75 and s["disagreements"] == 0 == s["nesting_violations"]


@pytest.mark.slow
def test_population_synergy_on_a_small_trial():
    """24 simulated patients in three arms, psi = 0: the psi-free fit does not end above the null; each finite
    limit of psi's profile interval is where a separate population fit with psi fixed there lies 3.84 above."""
    model = hcvdyn.get_model("agi_constant")
    rng = np.random.default_rng(11)
    days = np.array([0, 1, 2, 7, 14, 28, 56, 84.0])
    effects = {"triple": {"rho": 0.4, "phi": 0.5}, "double": {"rho": 0.0, "phi": 0.5}, "control": {"rho": 0.4, "phi": 0.0}}
    pats = []
    for i in range(24):
        arm = list(effects)[i % 3]
        par = {"log10_V0": 6.5, "eps": 0.85, "t0": 0.35, "delta": 0.1 * math.exp(0.4 * rng.normal()), **effects[arm]}
        y = hcvdyn.simulate(model, par, t_obs=days).log10_vl + 0.2 * rng.normal(size=days.size)
        pats.append(PatientData(f"p{i}", arm, days, y, np.zeros(days.size, bool), np.full(days.size, math.log10(15.0))))
    data = Dataset(tuple(pats))
    fd = FitDesign(individual=("delta",), shared={"eps": None, "rho": ("triple", "control"), "phi": ("triple", "double")},
                   params={"log10_V0": 6.5, "eps": 0.8, "rho": 0.3, "phi": 0.3, "t0": 0.35, "psi": 0.0},
                   bounds={"psi": (-3.0, 3.0)}, sigma=0.2, estimate_sigma=True)
    design = PopulationDesign(fit=fd, omega={"delta": 0.4})
    res = ps.estimate_population_synergy(model, data, {a: () for a in effects}, design)
    assert res.full.ofv <= res.null.ofv + 1e-6 and res.lrt == pytest.approx(res.null.ofv - res.full.ofv)
    lo, hi = res.psi_interval
    assert lo < res.psi < hi and (lo <= 0 <= hi) == (res.p_value >= 0.05)
    from dataclasses import replace

    free = replace(design, fit=replace(fd, shared={**fd.shared, "psi": None}))  # psi held below: the same compiled objective
    for limit in (x for x in (lo, hi) if -3 < x < 3):
        again = hcvdyn.estimate.population_fit.fit_population(model, data, {a: () for a in effects}, free, start=res.full.x,
                                                              covariance=False, hold={"psi": limit})
        assert again.x["psi"] == limit and again.ofv - res.full.ofv == pytest.approx(CRIT, abs=0.05)


def test_sse_synergy_chunks_combine(tmp_path, capsys):
    """Two chunks of a synergy size study (written as hcvdyn sse --synergy writes them) join into one; a recovery
    study is not mixed in."""
    import json
    from pathlib import Path

    from hcvdyn.cli import main
    from hcvdyn.results.provenance import provenance
    from hcvdyn.results.writers import rows_csv, write_results

    root = Path(__file__).resolve().parents[1]
    spec, truth = root / "fits/tcl_recovery_population.toml", root / "fits/tcl_recovery_truth.toml"

    def chunk(folder, seeds, synergy=True):
        rows = [{"replicate": i + 1, "seed": s, "foce-i.psi": 0.1 * s, "foce-i.rejects": s == 4, "foce-i.covers_truth": s != 4,
                 "foce-i.agree": True, "foce-i.nested": True, "foce-i.converged": True} for i, s in enumerate(seeds)]
        summary = summarize_synergy(rows, ["foce-i"], 0.0)
        meta = provenance("sse", folder, {"spec": (spec, {"name": "x"}), "truth": truth}, truth_values={"psi": 0.0},
                          options={"level": 0.95, "seeds": list(seeds), "synergy": synergy, "methods": ["foce-i"]}, summary=summary)
        write_results(folder, {"replicates.csv": rows_csv(rows), "summary.csv": rows_csv(summary), "result.json": meta})

    chunk(tmp_path / "a", [1, 2, 3])
    chunk(tmp_path / "b", [4, 5])
    out = tmp_path / "all"
    assert main(["sse", str(spec), "--synergy", "--combine", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    (s,) = json.loads((out / "result.json").read_text())["summary"]
    assert s["n_tested"] == 5 and s["rejection_rate"] == pytest.approx(0.2) and s["coverage_rate"] == pytest.approx(0.8)
    assert "rejects psi = 0 in 20.0%" in capsys.readouterr().out
    chunk(tmp_path / "c", [6, 7], synergy=False)
    assert main(["sse", str(spec), "--synergy", "--combine", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "x")]) == 2
    assert "give --synergy for all parts or none" in capsys.readouterr().err
