"""Solve layer: the adaptive diffrax solver (the reference), the fixed-grid population solver, the scipy
(LSODA) cross-check and drug exposure on a time grid. The adaptive solver's public names are re-exported here, as
the module ``hcvdyn.solve`` had them before the layered layout."""

from hcvdyn.solve.adaptive import exposure, log10_load, simulate, simulate_batch, solve_log_states
from hcvdyn.solve.options import NumericalError, SolverOptions, Trajectory

__all__ = ["NumericalError", "SolverOptions", "Trajectory", "exposure", "log10_load", "simulate", "simulate_batch",
           "solve_log_states"]
