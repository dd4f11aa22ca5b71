"""Exact gradients of the population objective of the HCV models, through the ODE solver and the conditional modes,
against central differences: with censored samples (constant-efficacy model) and with PK and dosing (interferon PK)."""

import math
from dataclasses import replace

import numpy as np
import pytest

import hcvdyn
from hcvdyn import HCVModel, Regimen
from hcvdyn.estimate.data import Dataset, PatientData
from hcvdyn.estimate.design import FitDesign
from hcvdyn.estimate.population_design import PopulationDesign, build_population_problem
from hcvdyn.estimate.population_fit import PopulationObjective
from hcvdyn.solve.options import SolverOptions

LLOQ = math.log10(15.0)
TIGHT = SolverOptions(atol=1e-10)  # differences of the OFV need solves far more precise than the step


def constant_model_case(bundled):
    spec, data = bundled
    pats = [p for p in data if p.censored.any()][:2] + [p for p in data if not p.censored.any()][:2]
    small = Dataset(tuple(pats), data.path)
    design = replace(spec.design, estimate_sigma=True, options=TIGHT)
    return spec.model, small, spec.regimens_for(small), design, {1: math.log(0.12)}


def pk_model_case():
    # interferon's PK alone (the only drug dosed here): a third less to compile than pkpd3 with all three drugs' PK
    model = HCVModel("pkpd_ifn", drugs=(("peginterferon_alfa2b", "pk"),), description="pegIFN alfa-2b with PK (test)")
    regs = [Regimen("peginterferon_alfa2b", 1.5, "ug/kg", 7.0, stop_day=21)]  # weekly injections: few dose times to step through
    days = np.array([0, 1, 2, 3, 7, 10, 14, 21.0])
    rng = np.random.default_rng(2)
    pats = []
    for i in range(4):
        truth = {"log10_V0": 6.4 + 0.3 * rng.normal(), "delta": 0.3 * math.exp(0.4 * rng.normal()), "ifn_ec50": 0.08}
        y = hcvdyn.simulate(model, truth, regs, days).log10_vl + 0.1 * rng.normal(size=days.size)
        if i == 0:
            y[-1] = LLOQ - 0.3
        c = y < LLOQ
        pats.append(PatientData(f"p{i}", "a", days, np.where(c, LLOQ, y), c, np.full(days.size, LLOQ)))
    design = FitDesign(individual=("delta",), shared={"ifn_ec50": None}, estimate_sigma=True, sigma=0.15,
                       options=TIGHT, params={"ifn_ec50": 0.1, "delta": 0.25, "log10_V0": 6.4})
    return model, Dataset(tuple(pats)), {"a": regs}, design, {}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["foce-i", "laplace"])
@pytest.mark.parametrize("case", ["constant, censored", "pk and dosing"])
def test_ofv_gradient_matches_central_differences(bundled, case, method):
    """d OFV / d (every fixed effect, omega and sigma), by JAX through the solver and the implicit derivative of
    the modes, against central differences of the OFV (modes found again at each point) to 1e-4 relative."""
    model, data, regimens, design, moved = constant_model_case(bundled) if case.startswith("constant") else pk_model_case()
    problem = build_population_problem(model, data, regimens, PopulationDesign(fit=design, omega={"delta": 0.5}, method=method))
    assert case.startswith("pk") or problem.n_censored > 0
    objective = PopulationObjective(problem.engine, problem.arrays, problem.ids)
    x = problem.start.copy()
    for k, v in moved.items():
        x[k] = v
    _, grad, _, _ = objective.evaluate(x)
    fd = []
    for k in range(x.size):
        step = np.zeros(x.size)
        step[k] = 1e-5 * max(1.0, abs(x[k]))
        fd.append((objective.value(x + step) - objective.value(x - step)) / (2 * step[k]))
    np.testing.assert_allclose(grad, fd, rtol=1e-4, err_msg=str(problem.labels))
