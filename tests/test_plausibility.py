"""Red flags of a virtual population: each check against arrays whose answer is known."""

import numpy as np
import pytest

from hcvdyn.analysis.plausibility import format_flags, red_flags
from hcvdyn.analysis.virtual_trial import ArmResult, VirtualTrial


class _Pop:
    """A population stand-in without interferon (the interferon check is exercised in the slow tier)."""

    class model:
        pk_drugs = ()


def _arm(true_drop, drop=None, max_t=None, delta=None):
    n = len(true_drop)
    drop = np.asarray(true_drop if drop is None else drop, float)
    params = None if delta is None else {"delta": np.asarray(delta, float)}
    z = np.zeros(n, bool)
    return ArmResult("a", {}, drop, z, z, z, np.asarray(true_drop, float), np.zeros((3, 2)), np.array(["all"] * n),
                     None if max_t is None else np.asarray(max_t, float), params)


def test_each_red_flag_fires_on_its_own_defect_and_reports_the_figure():
    n = 200
    ok = _arm(np.full(n, 1.0), max_t=np.full(n, 1.1), delta=np.full(n, 0.05))
    assert all(f.ok for f in red_flags(VirtualTrial("p", "t", 0, n, 84, 24, {"a": ok}, None), _Pop, {"a": ()}))
    deep = np.full(n, 1.0)
    deep[:4] = 7.0  # 2% beyond 6 log10
    flags = red_flags(VirtualTrial("p", "t", 0, n, 84, 24, {"a": _arm(deep)}, None), _Pop, {"a": ()})
    bad = [f for f in flags if not f.ok]
    assert [f.check for f in bad] == ["share with week-12 drop > 6 log10"] and bad[0].value == pytest.approx(0.02)
    above = np.full(n, 1.0)
    above[:30] = -0.2  # 15% above baseline
    bad = [f for f in red_flags(VirtualTrial("p", "t", 0, n, 84, 24, {"a": _arm(above)}, None), _Pop, {"a": ()}) if not f.ok]
    assert [f.check for f in bad] == ["share above baseline at week 12"] and bad[0].value == pytest.approx(0.15)
    high_t = np.full(n, 1.1)
    high_t[:30] = 1.6
    bad = [f for f in red_flags(VirtualTrial("p", "t", 0, n, 84, 24, {"a": _arm(np.full(n, 1.0), max_t=high_t)}, None), _Pop, {"a": ()}) if not f.ok]
    assert [f.check for f in bad] == ["share with target cells > 1.5 T0"] and bad[0].value == pytest.approx(0.15)
    delta = np.full(n, 0.05)
    delta[:30] = 0.6
    bad = [f for f in red_flags(VirtualTrial("p", "t", 0, n, 84, 24, {"a": _arm(np.full(n, 1.0), delta=delta)}, None), _Pop, {"a": ()}) if not f.ok]
    assert [f.check for f in bad] == ["share with delta outside 0.01-0.41 /day"] and bad[0].value == pytest.approx(0.15)
    skew = np.r_[np.full(150, 0.2), np.full(50, 5.5)]  # mean 1.525, median 0.2
    bad = [f for f in red_flags(VirtualTrial("p", "t", 0, n, 84, 24, {"a": _arm(skew)}, None), _Pop, {"a": ()}) if not f.ok]
    assert [f.check for f in bad] == ["|mean - median| of the week-12 drop (log10)"] and bad[0].value == pytest.approx(1.325)
    assert "RED" in format_flags(bad) and "1.32" in bad[0].message()
