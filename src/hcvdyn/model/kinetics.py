"""The kinetic declarations shared by every HCV model: states with units, the parameter rows of equations
(1)-(7) of :mod:`hcvdyn.model.hcv` with their sources, and the interaction's odds shift (equation 5)."""

from __future__ import annotations

from hcvdyn.model.parameters import Param

STATES = ("T", "I", "V_I", "V")



STATE_UNITS = ("cells/mL", "cells/mL", "IU/mL", "IU/mL")



STATE_DESCRIPTIONS = (
    "uninfected target cells (hepatocytes)",
    "productively infected cells",
    "infectious virions",
    "all virions, infectious and non-infectious (the measured load)",
)



SRC_NEUMANN = "Neumann et al. 1998, Science 282:103-107"



KINETIC_PARAMS = (
    Param(
        "log10_V0", "log10 IU/mL", 6.5, 0.0, 9.0,
        "genotype-1 baselines are 6-7 log10 IU/mL (McHutchison et al. 2009, N Engl J Med 361:580-593; Neumann et al. 1998)",
        "baseline (pretreatment steady-state) viral load", r"\log_{10} V_0",
    ),
    Param("c", "1/day", 6.2, 0.5, 50.0, f"{SRC_NEUMANN}: virion half-life 2.7 h", "virion clearance rate", "c", "log"),
    Param(
        "delta", "1/day", 0.14, 1e-4, 5.0,
        f"{SRC_NEUMANN}: commonly quoted mean; half-lives 1.7-70 days (0.01-0.41 /day) across 23 patients",
        "loss rate of infected cells", r"\delta", "log",
    ),
    Param("p", "IU/cell/day", 100.0, 1e-3, 1e6, "Nyberg et al. 2014, Br J Clin Pharmacol (PMC4294071)", "virion production per infected cell", "p", "log"),
    Param("beta", "mL/IU/day", 1e-7, 1e-14, 1e-2, "Nyberg et al. 2014, Br J Clin Pharmacol (PMC4294071)", "infection rate constant", r"\beta", "log"),
    Param("d", "1/day", round(1 / 300, 6), 1e-6, 1.0, "Dahari, Ribeiro & Perelson 2007, Hepatology 46:16-21 (1/300 /day)", "death rate of target cells", "d", "log"),
)



PROLIFERATION_PARAMS = (
    Param("r", "1/day", 0.0, 0.0, 20.0, "0 recovers Neumann et al. 1998; Dahari et al. 2007 for r > 0", "hepatocyte proliferation rate", "r"),
    Param("Tmax", "cells/mL", 1.85e7, 1e4, 1e10, "Dahari, Ribeiro & Perelson 2007 (~2.5e11 hepatocytes in 13.5 L)", "maximal hepatocyte density", r"T_{max}", "log"),
)



R_HOMEOSTATIC = Param(
    "r", "1/day", 1.0, 0.05, 20.0,
    "Dahari, Lo, Ribeiro & Perelson 2007, J Theor Biol 247:371-381: proliferation fast against delta keeps the "
    "liver near Tmax; 1 /day is of the order of hepatocyte regeneration after injury, and the non-responder "
    "results change little between 0.5 and 5 /day (docs/calibration.md)",
    "hepatocyte proliferation rate (homeostatic liver)", "r",
)



F0_PARAM = Param(
    "f0", "1", 0.2, 1e-3, 0.9,
    "Wieland et al. 2014, Hepatology 59:2121-2130 and Kandathil et al. 2013, Gastroenterology 145:1404-1413: "
    "single-cell imaging of chronic hepatitis C biopsies finds roughly 1-50% of hepatocytes infected",
    "fraction of hepatocytes infected before treatment (homeostatic models)", "f_0", "log",
)



PSI_PARAM = Param(
    "psi", "1", 0.0, -20.0, 20.0,
    "0 = Bliss independence (the null); GPDI potency shift, Wicha et al. 2017, Nat Commun 8:2129 (equation 5)",
    "interaction: each drug's EC50 is multiplied by exp(-psi x the other drug's occupancy)", r"\psi",
)



T0_PARAM = Param(
    "t0", "day", 0.35, 0.0, 5.0, f"{SRC_NEUMANN}: pharmacological delay of 8-9 h",
    "delay before constant-efficacy drug effects start", "t_0",
)



T_END_PARAM = Param(
    "t_end", "day", 1e4, 0.0, 1e4,
    "assumption: the end of each patient's course, not a published value; a fit sets it per patient from the data "
    "(treatment_end_days). The default, 1e4 days (27 years), lies beyond any course: treatment not stopped",
    "end of treatment: constant-efficacy drug effects act for t0 <= t < t_end", r"t_{end}",
)



MODES = ("constant", "pk")



def shift_odds(h, e):
    """Occupancy h with its odds multiplied by e (equation 5); h itself when e is None."""
    if e is None:
        return h
    return h * e / (1.0 - h + h * e)
