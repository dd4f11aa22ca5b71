"""Solve layer: the adaptive diffrax solver (the reference), the fixed-grid population solver, the scipy
(LSODA) cross-check and drug exposure on a time grid."""
