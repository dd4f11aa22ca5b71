"""Model declarations: steady state, parameter tables, drug switching, bad input."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

import hcvdyn
from hcvdyn.model.catalog import MODELS, get_model
from hcvdyn.model.hcv import HCVModel


# a source cites a dated publication, or says it is an assumption, a calibration or a derivation, and where
SOURCE = re.compile(r"(19|20)\d\d|^(assumption|derived|no ribavirin)|calibrat", re.IGNORECASE)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_parameter_cites_a_dated_source_or_says_it_is_an_assumption(name):
    for p in get_model(name).params:
        assert p.description and SOURCE.search(p.source), (p.name, p.source)


def test_every_value_of_every_bundled_parameter_set_cites_its_source():
    from hcvdyn.files import find_model_file, list_parameter_sets, load_toml
    from hcvdyn.model.library import load_parameter_set

    sets = [n for n in list_parameter_sets() if "model" in load_toml(find_model_file(n))]
    assert len(sets) >= 6
    for n in sets:
        for k, source in load_parameter_set(n).sources.items():
            assert SOURCE.search(source), (n, k, source)


def test_steady_state_closed_form_without_proliferation():
    m = get_model("neumann1998")
    p = m.defaults(log10_V0=6.0)
    t0, i0, s = (float(x) for x in m.steady_state(p))
    assert t0 == pytest.approx(p["c"] * p["delta"] / (p["beta"] * p["p"]), rel=1e-14)
    assert i0 == pytest.approx(p["c"] * 1e6 / p["p"], rel=1e-14)
    assert s == pytest.approx(p["d"] * t0 + p["delta"] * i0, rel=1e-14)


@pytest.mark.parametrize("name,extra", [(n, {}) for n in sorted(MODELS)] + [("pkpd3_prolif", {"r": 0.1}), ("dahari2007", {"r": 0.12})])
def test_rhs_vanishes_at_steady_state_without_drug(name, extra):
    m = get_model(name)
    zero = {k: 0.0 for k in ("eps", "eta", "rho", "phi", "sigma") if k in m.params}
    p = {k: jnp.float64(v) for k, v in m.defaults(**zero, **extra).items()}
    doses = {d: (jnp.zeros(1), jnp.zeros(1)) for d in m.pk_drugs}
    pk_data = m.pk_setup(p, doses)
    _, _, s = m.steady_state(p)
    for t in (0.0, 10.0, 300.0):
        f = np.asarray(m.rhs(t, m.initial_log_state(p), (p, pk_data, s)))
        assert np.max(np.abs(f)) < 1e-14 * max(p["c"], 1.0)


def test_infeasible_proliferation_steady_state_is_reported():
    m = get_model("dahari2007")
    with pytest.raises(ValueError, match="no positive pretreatment steady state"):
        hcvdyn.simulate(m, {"r": 1.0}, t_obs=[1.0])


def test_a_liver_above_its_carrying_capacity_is_refused():
    m = get_model("dahari2007")
    p = m.defaults(r=0.01, beta=1e-10)  # T0 = I0 delta / (beta V0) ~ 9e7 > Tmax = 1.85e7, yet s > 0
    t0, i0, s = (float(x) for x in m.steady_state(p))
    assert t0 + i0 > p["Tmax"] and s > 0
    with pytest.raises(ValueError, match=r"T0 \+ I0 = .* exceeds Tmax"):
        m.check_steady_state(p)


def test_homeostatic_steady_state_closed_form_and_stability():
    """Equation (6): beta V0 = f0 (delta - d), N0 = Tmax (1 - (d + f0 (delta - d)) / r), p = c V0 / I0; s = 0."""
    m = get_model("pkpd3_homeostatic")
    p = m.defaults(delta=0.03, f0=0.25, log10_V0=6.0)
    t0, i0, s = (float(x) for x in m.steady_state(p))
    beta, prod = (float(x) for x in m.infection_rates(p))
    n0 = p["Tmax"] * (1 - (p["d"] + 0.25 * (0.03 - p["d"])) / p["r"])
    assert (t0 + i0, i0 / (t0 + i0), s) == pytest.approx((n0, 0.25, 0.0), rel=1e-13)
    assert beta * 1e6 == pytest.approx(0.25 * (0.03 - p["d"]), rel=1e-13)
    assert prod == pytest.approx(p["c"] * 1e6 / i0, rel=1e-13)
    # the untreated state is stable: every eigenvalue of the Jacobian has a negative real part
    assert m.pretreatment_growth_rate(p) < 0
    with pytest.raises(ValueError, match="delta > d"):
        m.check_steady_state(m.defaults(delta=0.002))


def test_parameter_tables_follow_the_drug_modes():
    assert "eps" in get_model("neumann1998").params
    assert "ifn_ec50" not in get_model("neumann1998").params
    pk3 = get_model("pkpd3").params.names
    assert {"ifn_ec50", "rbv_vc", "cel_phi_max"} <= set(pk3)
    assert "t0" not in pk3 and "eps" not in pk3
    assert {"r", "Tmax"} <= set(get_model("pkpd3_prolif").params.names)
    homeo = set(get_model("pkpd3_homeostatic").params.names)
    assert {"r", "Tmax", "f0"} <= homeo and not {"beta", "p"} & homeo


def test_bad_model_declarations():
    with pytest.raises(ValueError, match="unknown drug 'aspirin'"):
        HCVModel("x", (("aspirin", "pk"),))
    with pytest.raises(ValueError, match="mode 'depot'"):
        HCVModel("x", (("ribavirin", "depot"),))
    with pytest.raises(ValueError, match="listed twice"):
        HCVModel("x", (("ribavirin", "pk"), ("rbv", "constant")))
    with pytest.raises(ValueError, match="unknown model 'neuman'"):
        get_model("neuman")


def test_bad_parameter_values_name_the_parameter():
    m = get_model("neumann1998")
    with pytest.raises(ValueError, match="'eps' = 1.2 outside"):
        m.defaults(eps=1.2)
    with pytest.raises(ValueError, match="'eta' = -0.1 outside"):
        m.defaults(eta=-0.1)
    with pytest.raises(ValueError, match="unknown parameter 'epsilon'"):
        m.defaults(epsilon=0.5)
    with pytest.raises(ValueError, match="'c'.* not finite"):
        m.defaults(c=float("nan"))
    with pytest.raises(ValueError, match="'delta'.*not a number"):
        m.defaults(delta="fast")
