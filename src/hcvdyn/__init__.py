"""hcvdyn: hepatitis C viral-kinetic models under interferon, ribavirin and alpha-glucosidase inhibitors.

64-bit floats are switched on at import: viral loads span ten orders of magnitude and the
forward-mode gradients are checked to 1e-5 relative.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from hcvdyn.model.catalog import MODELS, get_model
from hcvdyn.model.dosing import Regimen, batch_dose_arrays, dose_arrays, regimen_from_dict
from hcvdyn.model.drugs import DRUGS, Drug, get_drug
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import Param, ParamTable
from hcvdyn.solve.adaptive import log10_load, simulate, simulate_batch, solve_log_states
from hcvdyn.solve.options import SolverOptions, Trajectory
from hcvdyn.solve.reference import simulate_scipy

__version__ = "0.1.0"

__all__ = [
    "DRUGS",
    "Drug",
    "HCVModel",
    "MODELS",
    "Param",
    "ParamTable",
    "Regimen",
    "SolverOptions",
    "Trajectory",
    "batch_dose_arrays",
    "dose_arrays",
    "get_drug",
    "get_model",
    "log10_load",
    "regimen_from_dict",
    "simulate",
    "simulate_batch",
    "simulate_scipy",
    "solve_log_states",
    "__version__",
]
