"""Figures: labelled axes with units, the assay limit drawn."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from hcvdyn.model.trial_design import load_trial
from hcvdyn.results.plots import plot_arms
from hcvdyn.results.plotstyle import save_figure
from hcvdyn.analysis.arms import simulate_arms


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
    fig.canvas.draw()  # constrained layout, as on screen
    laid_out = np.array([ax.get_position().bounds for ax in fig.axes])
    paths = save_figure(fig, tmp_path / "arms")
    assert [p.suffix for p in paths] == [".pdf", ".svg", ".png"] and all(p.stat().st_size > 1000 for p in paths)
    # the layout is computed once (for the first format) and kept: constrained, not matplotlib's default boxes
    # (those are 0.2 away); formats laid out one by one differ among themselves by up to 0.011
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    assert not isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    assert np.allclose([ax.get_position().bounds for ax in fig.axes], laid_out, atol=0.02)


# ---- each figure function from a small hand-made result ---------------------------------------------

import math  # noqa: E402

import numpy as np  # noqa: E402

from hcvdyn.results import plots  # noqa: E402
from hcvdyn.estimate.data import PatientData

VL = r"HCV RNA (log$_{10}$ IU/mL)"


def _patients():
    t = np.array([0.0, 7, 28, 84])
    lq = np.full(4, math.log10(15))
    return [
        PatientData("P1", "triple", t, np.array([6.0, 5.0, 3.0, lq[0]]), np.array([0, 0, 0, 1], bool), lq),
        PatientData("P2", "control", t, np.array([6.5, 6.2, 6.0, 5.8]), np.zeros(4, bool), lq),
    ]


def _units_in(label):
    return "(" in label and label.endswith(")")


def test_patient_fits_grid_marks_censored_samples_and_the_limit():
    pats = _patients()
    grid = np.linspace(0, 84, 20)
    curves = {p.id: (grid, np.interp(grid, p.t_days, p.log10_vl), np.interp(grid, p.t_days, p.log10_vl) - 0.4,
                     np.interp(grid, p.t_days, p.log10_vl) + 0.4) for p in pats}
    fig = plots.plot_patient_fits(pats, curves, ncols=2)
    assert fig._supylabel.get_text() == VL and fig._supxlabel.get_text() == "time (days)"
    ax = fig.axes[0]
    assert ax.get_title() == "P1 (triple)"
    tri = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]
    assert len(tri) == 1 and list(tri[0].get_ydata()) == [math.log10(15)] and tri[0].get_markerfacecolor() == "white"
    assert any(list(ln.get_ydata()) == [math.log10(15)] * 2 for ln in ax.get_lines()), "LLOQ line missing"
    assert len(ax.collections) == 1  # the band
    with pytest.raises(ValueError, match="no patients"):
        plots.plot_patient_fits([], {})


def test_arm_trajectories_and_waterfall_labels_and_threshold():
    t = np.array([0.0, 28, 84])
    obs = {"triple": (t, np.array([0, 1, 1.2]), np.array([0, 0.8, 0.9]), np.array([0, 1.2, 1.5]))}
    fig = plots.plot_arm_trajectories(obs, {"triple": (t, obs["triple"][1], obs["triple"][2], obs["triple"][3])}, unit="weeks")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (weeks)" and ax.get_ylabel() == r"decline from baseline (log$_{10}$ IU/mL)"
    assert ax.yaxis_inverted()
    assert np.allclose(ax.get_lines()[0].get_xdata(), t / 7)
    fig = plots.plot_waterfall({"triple": np.array([2.5, 0.3, np.nan, 2.0]), "control": np.array([0.1, 0.4])},
                               censored={"triple": np.array([True, False, False, False])})
    a0, a1 = fig.axes
    assert a0.get_ylabel() == r"week-12 decline (log$_{10}$ IU/mL)" and a0.get_xlabel() == "patients (sorted)"
    heights = [b.get_height() for b in a0.patches]
    assert heights == [2.5, 2.0, 0.3]  # sorted, missing week-12 left out
    assert a0.patches[0].get_hatch() == "////" and not a0.patches[1].get_hatch()
    assert "67% >= 2" in a0.get_title(loc="left")  # exactly 2 log10 counts as EVR
    assert any(list(ln.get_ydata()) == [2.0, 2.0] for ln in a1.get_lines())


def test_vpc_pk_synergy_forest_profiles_and_scenarios(sim):
    t = np.array([0.0, 7, 84])
    obs = {"triple": (t, np.array([[5.0, 4.0, 1.2], [6.0, 5.0, 3.0], [7.0, 6.0, 5.0]]))}
    simq = {"triple": (t, np.stack([obs["triple"][1]] * 3, axis=1))}
    fig = plots.plot_vpc(obs, simq, math.log10(15))
    assert fig.axes[0].get_ylabel() == VL and fig.axes[0].get_xlabel() == "time (days)"
    assert len(fig.axes[0].collections) == 3  # one band per percentile
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "observed median" in legend and "observed 10/90th percentiles" in legend and any("95% range" in t for t in legend)

    fig = plots.plot_pk_efficacy(sim.exposure_rows("triple", days=7))
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert "peginterferon\nconcentration (ug/L)" in ylabels and "ribavirin\nconcentration (mg/L)" in ylabels
    assert "celgosivir\nconcentration (mg/L)" in ylabels and ylabels.count("effect (fraction, 0-1)") == 3
    assert all(ax.get_xlabel() == "time (days)" for ax in fig.axes[-2:])
    fig.canvas.draw()
    for ax in fig.axes:  # each effect legend lies inside its panel, clear of the axis labels
        if ax.get_legend() is not None:
            inner, box = ax.get_window_extent(), ax.get_legend().get_window_extent()
            assert inner.x0 <= box.x0 and box.x1 <= inner.x1 and inner.y0 <= box.y0 and box.y1 <= inner.y1

    from hcvdyn.model.catalog import get_model
    from hcvdyn.analysis.synergy import interaction_surface

    x, surf, bliss = interaction_surface(get_model("agi_constant"), {}, 2.0, n=21)
    fig = plots.plot_synergy(x, surf, bliss, 2.0, (1.0, 3.0), ("ribavirin", "celgosivir"), point=(1.0, 1.0))
    ax_i, ax_s = fig.axes[:2]
    assert ax_i.get_xlabel() == "celgosivir (concentration / EC50, 1)" and ax_i.get_xscale() == "log"
    assert "psi = 2.00 [1.00, 3.00]" in [t.get_text() for t in fig.legends[0].get_texts()][0]
    assert "minus Bliss" in fig.axes[-1].get_ylabel()

    rows = [{"name": "eps", "unit": "1", "value": 0.8, "lower": 0.7, "upper": 0.9, "profile_lower": 0.69, "profile_upper": 0.88, "truth": 0.85},
            {"name": "cel_ec50", "unit": "mg/L", "value": 1.0, "lower": 0.5, "upper": 1.5}]
    fig = plots.plot_forest(rows)
    assert [ax.get_xlabel() for ax in fig.axes] == ["estimate (dimensionless)", "estimate (mg/L)"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["eps"]

    theta = np.linspace(0.65, 0.95, 15)
    fig = plots.plot_profiles({"eps": {"theta": theta, "delta": 3.84 * ((theta - 0.8) / 0.1) ** 2, "estimate": 0.8,
                                       "interval": (0.7, 0.9), "unit": "1"}})
    ax = fig.axes[0]
    assert len(ax.get_lines()[0].get_xdata()) == 16  # the grid and the estimate, drawn as one curve
    assert ax.get_xlabel() == "eps (1)" and ax.get_ylabel() == r"$\Delta(-2\log L)$ (1)"
    cut = [ln for ln in ax.get_lines() if len(ln.get_ydata()) == 2 and np.allclose(ln.get_ydata(), 3.8414588)]
    assert cut, "chi-square(1) 95% cut-off missing"

    comp = [{"scenario": "no_cel", "diff_mean_drop": -1.0, "diff_mean_drop_lo": -1.2, "diff_mean_drop_hi": -0.8,
             "diff_pct_evr": -20.0, "diff_pct_evr_lo": -25.0, "diff_pct_evr_hi": -15.0}]
    fig = plots.plot_scenarios(comp, "triple")
    assert fig.axes[0].get_xlabel() == r"difference in mean week-12 decline (log$_{10}$ IU/mL)"
    assert fig.axes[1].get_xlabel() == "difference in EVR (percentage points)"
    assert fig.axes[0].get_lines()[0].get_color() == "#0072B2"  # interval below 0 drawn as a decrease


# ---- defects a reader meets: colour scale, overlapping labels, clipped titles, crowded bands --------

def _disjoint(boxes) -> bool:
    return not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.mark.parametrize("psi", [0.1, 0.37, 2.0, -1.0])
def test_synergy_colour_scale_follows_the_data_and_isobole_labels_are_upright_and_apart(psi):
    from hcvdyn.model.catalog import get_model
    from hcvdyn.analysis.synergy import interaction_surface

    x, surf, bliss = interaction_surface(get_model("agi_constant"), {"rho": 0.5, "phi": 0.5}, psi)
    fig = plots.plot_synergy(x, surf, bliss, psi, (psi - 0.5, psi + 0.5), ("ribavirin", "celgosivir"), point=(1.0, 1.0))
    ax_i, ax_s = fig.axes[:2]
    vmin, vmax = ax_s.collections[0].get_clim()
    assert vmax == pytest.approx(np.max(np.abs(surf - bliss))) and vmin == -vmax  # +/-0.01 at psi = 0.1, not +/-1
    fig.canvas.draw()
    labels = ax_i.texts
    assert sorted(float(t.get_text()) for t in labels) == [0.5, 0.8, 0.9, 0.95]  # each fitted isobole once
    assert all(t.get_rotation() == 0 for t in labels)
    boxes = [t.get_window_extent() for t in labels]
    star = next(ln for ln in ax_i.get_lines() if ln.get_marker() == "*").get_window_extent(fig.canvas.get_renderer())
    assert _disjoint(boxes + [star])  # apart from each other and from the fitted exposure's marker
    inside = ax_i.get_window_extent()
    assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1 for b in boxes)


def test_long_titles_fit_inside_the_figure():
    import matplotlib.text

    t = np.array([0.0, 28, 84])
    band = (t, np.array([0, 1, 1.2]), np.array([0, 0.8, 0.9]), np.array([0, 1.2, 1.5]))
    title = "mean decline by arm: data (censored at the limit) and fitted patients, 95% CI of the mean"
    fig = plots.plot_arm_trajectories({"triple": band}, {"triple": band}, title=title)
    fig.canvas.draw()
    shown = [a for a in fig.findobj(matplotlib.text.Text) if a.get_text().replace("\n", " ") == title]
    assert len(shown) == 1
    box, page = shown[0].get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1


def test_scenario_trajectories_one_panel_per_scenario_over_the_reference():
    t = np.arange(0, 85.0)
    model = {a: (t, k * np.sqrt(t) / 4, k * np.sqrt(t) / 5, k * np.sqrt(t) / 3)
             for k, a in enumerate(["triple", "cel_200mg_bid", "cel_800mg_qd", "rbv_1200mg", "no_celgosivir", "adherence_70"], 1)}
    fig = plots.plot_scenario_trajectories(model, "triple", title="virtual trial")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title(loc="left") for ax in panels] == list(model)[1:]
    assert all(len(ax.collections) == 1 for ax in panels)  # one scenario's band per panel (the reference: lines)
    assert all(ax.xaxis.get_tick_params()["labelbottom"] for ax in panels[-3:])  # time labelled under each column
    assert np.allclose(panels[0].get_lines()[0].get_xdata(), t / 7) and panels[0].yaxis_inverted()
    assert fig._supylabel.get_text() == r"decline from baseline (log$_{10}$ IU/mL)" and fig._supxlabel.get_text() == "time (weeks)"
    with pytest.raises(ValueError, match="reference arm 'x'"):
        plots.plot_scenario_trajectories(model, "x")
