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
