"""The fit design (validated once) and the identity of each estimate (the one place its lmfit name is built)."""

import pytest

import hcvdyn
from hcvdyn.estimate.design import Estimate, FitDesign, design_of
from hcvdyn.estimate.fit import fit_trial

AGI = hcvdyn.get_model("agi_constant")


def test_estimate_labels_and_owners():
    assert Estimate("eps", "shared").label == "eps"
    assert Estimate("phi", "per_arm", "triple").label == "phi__triple"
    assert Estimate("delta", "individual", "S001").label == "delta__S001"
    assert Estimate("rho", "outside").label == "rho__fixed"
    with pytest.raises(ValueError, match="needs an owner"):
        Estimate("delta", "individual")
    with pytest.raises(ValueError, match="has no owner"):
        Estimate("eps", "shared", "triple")
    with pytest.raises(ValueError, match="kind 'patient'"):
        Estimate("delta", "patient", "S001")


def test_design_normalises_and_resolves_arms():
    d = FitDesign(individual=["delta"], shared=("eps",), per_arm={"phi": ["triple"]}, bounds={"delta": [0.01, 2]})
    assert d.individual == ("delta",) and d.shared == {"eps": None} and d.per_arm == {"phi": ("triple",)}
    assert d.bounds == {"delta": (0.01, 2.0)} and d.free == ("delta", "eps", "phi")
    checked = d.check(AGI, ("triple", "control"))
    assert checked.shared == {"eps": ("triple", "control")} and checked.check(AGI, ("triple", "control")) == checked
    assert [e.label for e in checked.population_estimates(("triple", "control"))] == ["eps", "phi__triple"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(individual="delta"), "must be a list, not one string"),
        (dict(individual=("delta",), shared=("delta",)), "listed in more than one"),
        (dict(sigma=-0.1), "sigma = -0.1 must be a positive number"),
        (dict(n_starts=0), "n_starts = 0 must be >= 1"),
        (dict(max_nfev=2.5), "max_nfev = 2.5 must be >= 1 \\(an integer\\)"),
        (dict(bounds={"delta": 3.0}), "bounds of 'delta' must be \\(lower, upper\\)"),
        (dict(options={"atol": 1e-7}), "options must be a SolverOptions"),
    ],
)
def test_bad_design(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FitDesign(**kwargs)


@pytest.mark.parametrize(
    "kwargs, arms, match",
    [
        (dict(individual=("delta",), per_arm={"phi": ["double"]}), ("triple",), r"per_arm 'phi' names arm\(s\) \['double'\]"),
        (dict(individual=("delta", "epsilon")), ("triple",), "unknown parameter 'epsilon'"),
        (dict(individual=("delta",), bounds={"c": (1.0, 10.0)}), ("triple",), "'c' is not a free parameter"),
        (dict(individual=("delta",), outside={"phi": 2.0}), ("triple",), "outside: .*'phi' = 2.0 outside"),
    ],
)
def test_design_checked_against_model_and_arms(kwargs, arms, match):
    with pytest.raises(ValueError, match=match):
        FitDesign(**kwargs).check(AGI, arms)


def test_fit_trial_takes_a_design_or_its_fields():
    with pytest.raises(ValueError, match=r"fit_trial: unknown argument\(s\) \['individuals'\]"):
        fit_trial(AGI, [], {}, individuals=("delta",))
    with pytest.raises(ValueError, match="must be a FitDesign"):
        fit_trial(AGI, [], {}, ("delta",))
    with pytest.raises(ValueError, match="not both"):
        fit_trial(AGI, [], {}, FitDesign(individual=("delta",)), sigma=0.3)
    d = FitDesign(individual=("delta",))
    assert design_of(d, {}, "here") is d and design_of(None, {"individual": ["delta"]}, "here") == d
