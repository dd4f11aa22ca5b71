"""Figures: labelled axes with units, the assay limit drawn."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from hcvdyn.io import load_trial  # noqa: E402
from hcvdyn.plots import plot_arms, save_figure  # noqa: E402
from hcvdyn.trial import simulate_arms  # noqa: E402


@pytest.fixture(scope="module")
def sim():
    return simulate_arms(load_trial("celgosivir_phase2"), points_per_day=2)


def test_arm_figure_axes_and_units(sim, tmp_path):
    fig = plot_arms(sim)
    ax_v, ax_e = fig.axes[:2]
    assert ax_v.get_ylabel() == r"HCV RNA (log$_{10}$ IU/mL)" and ax_v.get_xlabel() == "time (weeks)"
    assert ax_e.get_xlabel() == "time (days)" and "fraction" in ax_e.get_ylabel()
    assert [t.get_text() for t in ax_v.get_legend().get_texts()] == ["triple", "double", "control"]
    lloq = [ln for ln in ax_v.get_lines() if list(ln.get_ydata()) == [sim.spec.lloq_log10] * 2]
    assert lloq, "assay limit line missing"
    paths = save_figure(fig, tmp_path / "arms")
    assert [p.suffix for p in paths] == [".pdf", ".svg", ".png"] and all(p.stat().st_size > 1000 for p in paths)
