"""hcvdyn report on the bundled synthetic trial: every figure, and the report's numbers equal the result files'."""

import json
from pathlib import Path

import numpy as np
import pytest

from hcvdyn.cli import main
from hcvdyn.results.figures import FIGURES
from hcvdyn.results.writers import read_csv

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "phase2"
    argv = ["report", str(ROOT / "fits/tcl_recovery.toml"), "--n-vpc", "30", "--n-virtual", "100", "--profile-points", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    return out


def _row(md: str, first_cell: str) -> list[str]:
    """Cells of the first Markdown table row whose first cell is ``first_cell``."""
    for line in md.splitlines():
        if line.startswith(f"| {first_cell} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no table row {first_cell!r}")


def test_every_figure_in_three_formats(report):
    for name in FIGURES:
        for fmt in ("pdf", "svg", "png"):
            f = report / "figures" / f"{name}.{fmt}"
            assert f.is_file() and f.stat().st_size > 5000, f
    md = (report / "report.md").read_text()
    assert all(f"](figures/{name}.png)" in md for name in FIGURES)


def test_report_numbers_equal_the_result_files(report):
    md = (report / "report.md").read_text()
    meta = json.loads((report / "result.json").read_text())
    assert meta["converged"] is True and meta["inputs"]["spec"]["sha256"] in json.dumps(meta)
    assert meta["inputs"]["spec"]["sha256"][:16] in md and meta["inputs"]["data"]["sha256"][:16] in md
    assert f"{meta['objective_minus2loglik_plus_const']:.2f}" in md and f"AIC {meta['aic']:.2f}" in md
    for r in read_csv(report / "parameters.csv"):
        if r["kind"] == "individual":
            continue
        cells = _row(md, r["name"])
        assert cells[1:6] == [format(r[k], ".4g") for k in ("value", "wald95_low", "wald95_high", "profile95_low", "profile95_high")]
        assert r["profile95_low"] < r["value"] < r["profile95_high"]
    arms = read_csv(report / "arms.csv")
    for r in arms:
        data_cells = _row(md, r["arm"])  # first table: the data
        assert data_cells[1:5] == [str(int(r[k])) for k in ("patients", "samples", "censored", "with_week12")]
        rows = [line for line in md.splitlines() if line.startswith(f"| {r['arm']} |")]
        out_cells = [c.strip() for c in rows[1].strip("|").split("|")]
        assert out_cells[1:5] == [format(r["observed_mean_drop_w12"], ".3f"), format(r["predicted_mean_drop_w12"], ".3f"),
                                  format(r["observed_pct_evr"], ".1f"), format(r["predicted_pct_evr"], ".1f")]
    syn = json.loads((report / "synergy.json").read_text())
    assert f"psi = {syn['psi']:.3f}" in md and f"[{syn['psi_interval'][0]:.3f}, {syn['psi_interval'][1]:.3f}]" in md
    assert f"Verdict: **{syn['verdict']}**" in md and syn["converged"] is True
    vpc = json.loads((report / "vpc.json").read_text())
    assert f"{100 * vpc['coverage']:.1f}% of the observed" in md
    for r in read_csv(report / "comparison.csv"):
        assert _row(md, r["scenario"])[1] == format(r["diff_mean_drop"], "+.3f")


def test_report_outcomes_follow_the_data(report):
    """Observed rates in arms.csv recomputed here from the data file; VPC percentiles from the data."""
    from hcvdyn.estimate.data import read_viral_loads

    data = read_viral_loads(ROOT / "fits/tcl_recovery.csv")
    arms = {r["arm"]: r for r in read_csv(report / "arms.csv")}
    for arm in data.arms:
        pats = [p for p in data if p.arm == arm and np.any(np.isclose(p.t_days, 84))]
        drops = [p.log10_vl[0] - p.log10_vl[np.isclose(p.t_days, 84)][0] for p in pats]
        cens = [bool(p.censored[np.isclose(p.t_days, 84)][0]) for p in pats]
        evr = [d >= 2.0 or c for d, c in zip(drops, cens)]
        assert arms[arm]["with_week12"] == len(pats)
        assert arms[arm]["observed_mean_drop_w12"] == pytest.approx(np.mean(drops), abs=1e-7)
        assert arms[arm]["observed_pct_evr"] == pytest.approx(100 * np.mean(evr), abs=1e-6)
    vpc = read_csv(report / "vpc.csv")
    r = next(r for r in vpc if r["arm"] == "triple" and r["day"] == 28 and r["percentile"] == 50)
    at28 = [p.log10_vl[np.isclose(p.t_days, 28)][0] for p in data if p.arm == "triple" and np.any(np.isclose(p.t_days, 28))]
    assert r["observed"] == pytest.approx(np.median(at28))
    assert json.loads((report / "vpc.json").read_text())["coverage"] >= 0.8


def test_figures_command_reproduces_the_report_figures(report, capsys):
    """The report draws its figures from its own files: redrawn from the folder, each PNG is the same, byte for byte."""
    before = {p.stem: p.read_bytes() for p in (report / "figures").glob("*.png")}
    assert main(["figures", str(report)]) == 0  # the report's formats (pdf first: its layout is the PNG's)
    assert sorted({p.stem for p in (report / "figures").iterdir()}) == sorted(FIGURES) == sorted(before)
    changed = [p.stem for p in (report / "figures").glob("*.png") if p.read_bytes() != before[p.stem]]
    assert not changed, f"redrawn figures differ from the report's: {changed}"
    assert f"wrote {len(FIGURES)} figures" in capsys.readouterr().out
