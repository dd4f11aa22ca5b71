"""Parameter rows and tables."""

import pytest

from hcvdyn.model.parameters import Param, ParamTable, check_values


def row(**kw):
    base = dict(name="c", unit="1/day", default=6.2, lower=0.5, upper=50.0, source="Neumann 1998", description="clearance")
    return Param(**{**base, **kw})


def test_param_rows_validate_themselves():
    with pytest.raises(ValueError, match="'c': unit is empty"):
        row(unit="")
    with pytest.raises(ValueError, match="'c': source is empty"):
        row(source="")
    with pytest.raises(ValueError, match="default 60.0 outside its bounds"):
        row(default=60.0)
    with pytest.raises(ValueError, match="log scale needs a positive lower bound"):
        row(scale="log", lower=0.0)


def test_table_lookup_labels_and_overrides():
    t = ParamTable([row(symbol="c"), row(name="delta", unit="1/day", default=0.14, lower=0.0, upper=5.0, symbol=r"\delta")])
    assert t.names == ("c", "delta") and t["delta"].default == 0.14 and "c" in t
    assert t["delta"].label() == r"$\delta$ (1/day)"
    assert t.with_defaults({"c": 10.0})["c"].default == 10.0
    with pytest.raises(ValueError, match="duplicate parameter names"):
        ParamTable([row(), row()])
    with pytest.raises(ValueError, match=r"file.toml: parameter 'c' = 0.1 outside its admissible range \[0.5, 50.0\]"):
        check_values(t, {"c": 0.1}, where="file.toml")


def test_one_scale_rule_per_parameter_with_exact_round_trips():
    import numpy as np

    frac = Param("e", "1", 0.5, 0.0, 1.0, "src", "a fraction")
    rate = Param("k", "1/day", 0.1, 1e-3, 5.0, "src", "a rate", scale="log")
    load = Param("v", "log10 IU/mL", 6.0, 0.0, 9.0, "src", "a load")
    assert (frac.scale, rate.scale, load.scale) == ("logit", "log", "linear")
    x = np.array([0.01, 0.5, 0.9])
    assert frac.to_scale(x) == pytest.approx(np.log(x / (1 - x)))
    assert rate.to_scale(x) == pytest.approx(np.log(x))
    for p in (frac, rate, load):
        assert p.from_scale(p.to_scale(x)) == pytest.approx(x, rel=1e-12)
    with pytest.raises(ValueError, match="logit scale needs bounds within"):
        Param("w", "1", 0.5, 0.0, 2.0, "src", "not a fraction", scale="logit")
    with pytest.raises(ValueError, match="scale must be"):
        Param("w", "1", 0.5, 0.0, 1.0, "src", "x", scale="probit")


def test_every_layer_uses_the_declared_scale():
    """Wald intervals, population variability and calibration knobs of a fraction stay in [0, 1] (logit scale)."""
    import numpy as np

    from hcvdyn.analysis.population import load_population
    from hcvdyn.estimate.profile import wald_interval

    pop = load_population("g1_nonresponder_population")
    eps = pop.model.params["ifn_emax_late"]
    lo, hi = wald_interval(0.95, 0.2, param=eps)
    assert 0.0 < lo < 0.95 < hi < 1.0
    wide = {**pop.omega, "ifn_emax_late": 3.0}
    import dataclasses

    params, *_ = dataclasses.replace(pop, omega=wide, corr=np.eye(len(wide))).sample(2000, np.random.default_rng(1))
    v = params["ifn_emax_late"]
    assert 0.0 < v.min() and v.max() < 1.0 and np.median(v) == pytest.approx(pop.typical()["ifn_emax_late"], abs=0.05)
