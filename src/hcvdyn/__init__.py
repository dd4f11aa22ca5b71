"""hcvdyn: hepatitis C viral-kinetic models under interferon, ribavirin and alpha-glucosidase inhibitors.

64-bit floats are switched on at import: viral loads span ten orders of magnitude and the
forward-mode gradients are checked to 1e-5 relative. The names below are the public API, re-exported from the
layer that defines each (docs/architecture.md); import them from ``hcvdyn``.
"""

import os as _os

_os.environ.setdefault("EQX_ON_ERROR", "nan")  # before equinox is imported: see hcvdyn.cache

from hcvdyn.cache import xla_flags as _xla_flags  # noqa: E402  (imports nothing but the standard library)

_os.environ["XLA_FLAGS"] = _xla_flags(_os.environ.get("XLA_FLAGS", ""))  # before JAX's CPU backend starts

import jax as _jax  # noqa: E402

_jax.config.update("jax_enable_x64", True)

from hcvdyn.analysis.arms import ArmSimulation, simulate_arms  # noqa: E402
from hcvdyn.analysis.outcomes import OutcomeDefinitions, classify, cure_day, patient_outcomes  # noqa: E402
from hcvdyn.analysis.population import Population, load_population  # noqa: E402
from hcvdyn.analysis.prediction import predict_patient  # noqa: E402
from hcvdyn.analysis.scenarios import load_scenarios, run_scenarios  # noqa: E402
from hcvdyn.analysis.synergy import estimate_synergy  # noqa: E402
from hcvdyn.analysis.virtual_trial import VirtualTrial, compare_arms, run_virtual_trial  # noqa: E402
from hcvdyn.cache import enable_compilation_cache  # noqa: E402
from hcvdyn.estimate.data import Dataset, PatientData, read_viral_loads  # noqa: E402
from hcvdyn.estimate.fit import PatientFit, TrialFit, fit_patient, fit_trial  # noqa: E402
from hcvdyn.estimate.fitspec import FitSpec, load_fit_spec  # noqa: E402
from hcvdyn.estimate.marginal import importance_sampling  # noqa: E402
from hcvdyn.estimate.population_design import Covariate, PopulationDesign  # noqa: E402
from hcvdyn.estimate.population_diagnostics import population_vpc, sample_rows  # noqa: E402
from hcvdyn.estimate.population_fit import PopulationFit, fit_population  # noqa: E402
from hcvdyn.estimate.synthetic import drawn_patients, generate_synthetic_trial, load_truth  # noqa: E402
from hcvdyn.model.catalog import MODELS, get_model  # noqa: E402
from hcvdyn.model.dosing import Regimen, batch_dose_arrays, dose_arrays, regimen_from_dict  # noqa: E402
from hcvdyn.model.drugs import DRUGS, Drug, get_drug  # noqa: E402
from hcvdyn.model.hcv import HCVModel  # noqa: E402
from hcvdyn.model.library import ParameterSet, load_parameter_set  # noqa: E402
from hcvdyn.model.parameters import Param, ParamTable  # noqa: E402
from hcvdyn.model.trial_design import TrialSpec, load_trial  # noqa: E402
from hcvdyn.solve.adaptive import exposure, log10_load, simulate, simulate_batch, solve_log_states  # noqa: E402
from hcvdyn.solve.options import NumericalError, SolverOptions, Trajectory  # noqa: E402
from hcvdyn.solve.reference import simulate_scipy  # noqa: E402
from hcvdyn.version import __version__  # noqa: E402

import sys as _sys  # noqa: E402

from hcvdyn.model import dosing as _dosing, drugs as _drugs, parameters as _parameters, pk as _pk  # noqa: E402

_OLD_MODULES = {"dosing": _dosing, "drugs": _drugs, "parameters": _parameters, "pk": _pk}
for _old, _module in _OLD_MODULES.items():
    _sys.modules.setdefault(f"hcvdyn.{_old}", _module)  # module paths from before the layered layout still import


def __getattr__(name):
    if name in _OLD_MODULES:
        return _OLD_MODULES[name]
    raise AttributeError(f"module 'hcvdyn' has no attribute {name!r}")

__all__ = [
    # model
    "DRUGS", "Drug", "HCVModel", "MODELS", "Param", "ParamTable", "ParameterSet", "Regimen", "TrialSpec",
    "batch_dose_arrays", "dose_arrays", "get_drug", "get_model", "load_parameter_set", "load_trial", "regimen_from_dict",
    # solve
    "NumericalError", "SolverOptions", "Trajectory", "exposure", "log10_load", "simulate", "simulate_batch", "simulate_scipy",
    "solve_log_states", "enable_compilation_cache",
    # estimate
    "Dataset", "FitSpec", "PatientData", "PatientFit", "TrialFit", "fit_patient", "fit_trial", "drawn_patients", "generate_synthetic_trial",
    "load_fit_spec", "load_truth", "read_viral_loads",
    "Covariate", "PopulationDesign", "PopulationFit", "fit_population", "importance_sampling", "population_vpc", "sample_rows",
    # analysis
    "ArmSimulation", "OutcomeDefinitions", "Population", "VirtualTrial", "classify", "compare_arms", "cure_day",
    "estimate_synergy", "load_population", "load_scenarios", "patient_outcomes", "predict_patient", "run_scenarios",
    "run_virtual_trial", "simulate_arms",
    "__version__",
]
