"""Drug declarations: pharmacokinetic structure, parameters (unit, default, source) and effects.

Each drug acts on the viral-kinetic model through named *effects* (fractions in [0, 1]):

* ``eps``   block of virion production (interferon; Neumann et al. 1998)
* ``eta``   block of new infections (interferon; Neumann et al. 1998, ~0)
* ``rho``   fraction of new virions non-infectious (ribavirin as a mutagen; Dixit et al. 2004)
* ``phi``   fraction of new virions non-infectious because their envelope misfolds (alpha-glucosidase
  inhibitor; hcvdyn's own formulation, see docs/models.md)
* ``sigma`` block of virion secretion (alpha-glucosidase inhibitor; hcvdyn's own formulation)

A drug is used either in ``"constant"`` mode (each effect a constant, switched on at the delay t0 and off at the
end of treatment t_end, as in the classic fits) or in ``"pk"`` mode (effect = max * Hill(C(t)) with C from the drug's
regimen and linear PK, :mod:`hcvdyn.model.pk`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hcvdyn.model.parameters import Param

__all__ = [
    "Drug",
    "get_drug",
    "EFFECTS",
    "MW_CELGOSIVIR",
    "MW_CASTANOSPERMINE",
]

EFFECTS = ("eps", "eta", "rho", "phi", "sigma")

MW_CELGOSIVIR = 259.30  # g/mol, 6-O-butanoyl castanospermine (C12H21NO5)
MW_CASTANOSPERMINE = 189.21  # g/mol (C8H15NO4)

LN2 = math.log(2.0)

SRC_PEG_FIT = (
    "derived: two-compartment model, clearances and volumes per kg, fitted to pegIFN alfa-2b at 6 ug/kg weekly "
    "(Daud et al. 2011, Cancer Chemother Pharmacol 67:657-666, PMC3043235, Table 3, melanoma patients: week-1 Cmax 3.98 and Cavg "
    "1.93 ug/L, tmax 24 h, t1/2 46 h; week-8 Cmax 5.07, Cavg 2.75, Cmin 1.30 ug/L; accumulation R 1.69), scaled "
    "linearly to the dose; absorption half-life 4.6 h (Zeuzem et al. 2003, Semin Liver Dis 23 Suppl 1:23-28) as "
    "the start; see docs/pk.md"
)
SRC_TALAL = "Talal et al. 2006, Hepatology 43:943-953 (EC50 0.45 ug/L in non-responders)"
SRC_NYBERG = "Nyberg et al. 2014, Br J Clin Pharmacol (PMC4294071): Hill coefficient n = 2"
SRC_NEUMANN = "Neumann et al. 1998, Science 282:103-107"
SRC_RBV_FIT = (
    "derived: two-compartment model with CL/F = 21.5 L/h (Jen 2000, Ther Drug Monit 22:555, men, 70 kg) whose Vc/F, "
    "Q/F, Vp/F and ka were solved so that the terminal half-life is 298 h, tmax after one dose 1.5 h and 90% of "
    "steady state is reached at 4 weeks (Glue 1999, Semin Liver Dis 19 Suppl 1:17), and the AUC(0-12h) accumulation "
    "index is 10.5 (Br J Clin Pharmacol 2003;55:360); see docs/pk.md"
)
SRC_CEL_FIT = (
    "derived: one-compartment model with t1/2 = 2.5 h solved to reproduce steady-state Cmax 5727 ng/mL and trough "
    "430 ng/mL of castanospermine at 200 mg celgosivir q12h (Sung et al. 2016, PLoS Negl Trop Dis 10:e0004851); "
    "see docs/pk.md"
)
SRC_ASSUMED = "assumption: no published in-vivo estimate; set for the trial calibration (docs/models.md)"


@dataclass(frozen=True)
class Drug:
    """A drug: how it is dosed, its PK structure and parameters, and which effects it drives.

    ``prefix`` namespaces its parameters (``ifn_ka``). ``amount_unit`` is the unit of the active moiety
    in the depot; ``dose_factor`` converts a dose in ``dose_unit`` of the administered compound into it
    (celgosivir -> castanospermine by molar mass). ``constant_params`` are used in constant mode,
    ``pk_params`` in PK mode; ``effect_max`` maps each effect to its maximum-effect parameter in PK mode.
    ``pk_per_kg``: clearances and volumes are declared per kg of body weight, so the PK runs on amounts per
    kg (a per-kg dose then gives the same concentrations at every weight; a flat dose is divided by weight).
    """

    name: str
    prefix: str
    aliases: tuple[str, ...]
    routes: tuple[str, ...]
    pk_kind: str
    dose_unit: str
    amount_unit: str
    conc_unit: str
    dose_factor: float
    effects: tuple[str, ...]
    constant_params: tuple[Param, ...]
    pk_params: tuple[Param, ...]
    effect_max: tuple[tuple[str, str], ...]
    pk_per_kg: bool = False

    @property
    def pk_names(self) -> tuple[str, ...]:
        """Names of the PK (not PD) parameters in the order of :func:`hcvdyn.model.pk.rate_constants`' dict keys."""
        keys = ("ka", "cl", "v") if self.pk_kind == "1cpt" else ("ka", "cl", "vc", "q", "vp")
        return tuple(f"{self.prefix}_{k}" for k in keys)

    @property
    def volume_name(self) -> str:
        return f"{self.prefix}_v" if self.pk_kind == "1cpt" else f"{self.prefix}_vc"


def _frac(name, default, source, description, symbol):
    return Param(name, "1", default, 0.0, 1.0, source, description, symbol)


PEGIFN = Drug(
    name="peginterferon_alfa2b",
    prefix="ifn",
    aliases=("pegifn", "pegifn_alfa2b", "peginterferon", "ifn", "interferon"),
    routes=("sc",),
    pk_kind="2cpt",
    dose_unit="ug",
    amount_unit="ug/kg",
    conc_unit="ug/L",
    dose_factor=1.0,
    effects=("eps", "eta"),
    constant_params=(
        _frac("eps", 0.95, f"{SRC_NEUMANN} (10 MU daily group)", "interferon block of virion production", r"\varepsilon"),
        _frac("eta", 0.0, f"{SRC_NEUMANN} (infection block ~0)", "interferon block of new infections", r"\eta"),
    ),
    pk_params=(
        Param("ifn_ka", "1/day", 2.516, 0.1, 50.0, SRC_PEG_FIT, "s.c. absorption rate", r"k_a^{IFN}", "log"),
        Param("ifn_cl", "L/day/kg", 0.2546, 0.01, 10.0, SRC_PEG_FIT, "apparent clearance CL/F per kg", r"CL^{IFN}", "log"),
        Param("ifn_vc", "L/kg", 1.034, 0.01, 50.0, SRC_PEG_FIT, "apparent central volume Vc/F per kg", r"V_c^{IFN}", "log"),
        Param("ifn_q", "L/day/kg", 0.2428, 0.001, 10.0, SRC_PEG_FIT, "apparent intercompartmental clearance Q/F per kg", r"Q^{IFN}", "log"),
        Param("ifn_vp", "L/kg", 5.069, 0.01, 100.0, SRC_PEG_FIT, "apparent peripheral volume Vp/F per kg", r"V_p^{IFN}", "log"),
        Param("ifn_ec50", "ug/L", 0.45, 1e-4, 100.0, SRC_TALAL, "concentration for half-maximal eps", r"EC_{50}^{IFN}", "log"),
        Param("ifn_n", "1", 2.0, 0.2, 6.0, SRC_NYBERG, "Hill coefficient of the interferon effect", r"n^{IFN}"),
        Param("ifn_emax", "1", 1.0, 0.0, 1.0, "Talal et al. 2006 (Emax fixed at 1)", "maximal eps at the first dose", r"\varepsilon_{max}"),
        Param(
            "ifn_emax_late", "1", 1.0, 0.0, 1.0,
            "1 = no refractoriness. Sarasin-Filipowicz et al. 2008, PNAS 105:7034-7039: the liver's JAK-STAT response "
            "to pegIFN becomes refractory after the first injection (USP18; Sarasin-Filipowicz et al. 2009, Mol Cell "
            "Biol 29:4841-4851), and prior non-responders show pre-activated interferon-stimulated genes",
            "maximal eps once refractoriness has set in", r"\varepsilon_{max}^{late}",
        ),
        Param(
            "ifn_k_ref", "1/day", 0.5, 0.01, 20.0,
            "assumption: refractoriness sets in over the first days (Sarasin-Filipowicz et al. 2008 saw it 1-7 days "
            "after the first injection); half-time 1.4 days",
            "rate at which the maximal eps moves from ifn_emax to ifn_emax_late", r"k_{ref}",
        ),
        Param("ifn_eta_max", "1", 0.0, 0.0, 1.0, f"{SRC_NEUMANN} (eta ~ 0)", "maximal eta", r"\eta_{max}"),
    ),
    effect_max=(("eps", "ifn_emax"), ("eta", "ifn_eta_max")),
    pk_per_kg=True,
)

RIBAVIRIN = Drug(
    name="ribavirin",
    prefix="rbv",
    aliases=("rbv",),
    routes=("oral",),
    pk_kind="2cpt",
    dose_unit="mg",
    amount_unit="mg",
    conc_unit="mg/L",
    dose_factor=1.0,
    effects=("rho",),
    constant_params=(
        _frac("rho", 0.5, "Dixit et al. 2004, Nature 432:922-924 (illustrative rho)", "fraction of new virions non-infectious (ribavirin)", r"\rho"),
    ),
    pk_params=(
        Param("rbv_ka", "1/day", 91.57, 1.0, 500.0, SRC_RBV_FIT, "oral absorption rate", r"k_a^{RBV}", "log"),
        Param("rbv_cl", "L/day", 516.0, 10.0, 5000.0, "Jen et al. 2000, Ther Drug Monit 22:555-565: CL/F 21.5 L/h (men, 70 kg)", "apparent clearance CL/F", r"CL^{RBV}", "log"),
        Param("rbv_vc", "L", 2462.0, 10.0, 50000.0, SRC_RBV_FIT, "apparent central volume Vc/F", r"V_c^{RBV}", "log"),
        Param("rbv_q", "L/day", 236.5, 0.1, 10000.0, SRC_RBV_FIT, "apparent intercompartmental clearance Q/F", r"Q^{RBV}", "log"),
        Param("rbv_vp", "L", 2607.6, 10.0, 50000.0, SRC_RBV_FIT, "apparent peripheral volume Vp/F", r"V_p^{RBV}", "log"),
        Param("rbv_ec50", "mg/L", 1.0, 1e-3, 100.0, SRC_ASSUMED, "concentration for half-maximal rho", r"EC_{50}^{RBV}", "log"),
        Param("rbv_n", "1", 1.0, 0.2, 6.0, SRC_ASSUMED, "Hill coefficient of the ribavirin effect", r"n^{RBV}"),
        Param("rbv_rho_max", "1", 0.5, 0.0, 1.0, SRC_ASSUMED, "maximal non-infectious fraction rho", r"\rho_{max}"),
    ),
    effect_max=(("rho", "rbv_rho_max"),),
)

CELGOSIVIR = Drug(
    name="celgosivir",
    prefix="cel",
    aliases=("cel", "mx-3253", "mx3253", "agi"),
    routes=("oral",),
    pk_kind="1cpt",
    dose_unit="mg",
    amount_unit="mg",  # of castanospermine, the active form
    conc_unit="mg/L",
    dose_factor=MW_CASTANOSPERMINE / MW_CELGOSIVIR,
    effects=("phi", "sigma"),
    constant_params=(
        _frac("phi", 0.0, SRC_ASSUMED, "fraction of new virions non-infectious (misfolded envelope)", r"\varphi"),
        _frac("sigma", 0.0, SRC_ASSUMED, "block of virion secretion (alpha-glucosidase inhibitor)", r"\sigma"),
    ),
    pk_params=(
        Param("cel_ka", "1/day", 26.6, 0.5, 500.0, SRC_CEL_FIT, "oral absorption rate (castanospermine)", r"k_a^{CEL}", "log"),
        Param("cel_cl", "L/day", 112.1, 1.0, 5000.0, SRC_CEL_FIT, "apparent clearance CL/F (castanospermine)", r"CL^{CEL}", "log"),
        Param("cel_v", "L", 16.85, 0.5, 5000.0, SRC_CEL_FIT, "apparent volume V/F (castanospermine)", r"V^{CEL}", "log"),
        Param("cel_ec50", "mg/L", 0.5, 1e-3, 100.0, SRC_ASSUMED, "castanospermine concentration for half-maximal effect", r"EC_{50}^{CEL}", "log"),
        Param("cel_n", "1", 1.0, 0.2, 6.0, SRC_ASSUMED, "Hill coefficient of the glucosidase-inhibitor effect", r"n^{CEL}"),
        Param("cel_phi_max", "1", 0.5, 0.0, 1.0, SRC_ASSUMED, "maximal non-infectious fraction phi", r"\varphi_{max}"),
        Param("cel_sigma_max", "1", 0.0, 0.0, 1.0, SRC_ASSUMED, "maximal secretion block sigma", r"\sigma_{max}"),
    ),
    effect_max=(("phi", "cel_phi_max"), ("sigma", "cel_sigma_max")),
)

DRUGS: dict[str, Drug] = {d.name: d for d in (PEGIFN, RIBAVIRIN, CELGOSIVIR)}


def get_drug(name: str) -> Drug:
    """The drug called ``name`` or one of its aliases (case-insensitive); ValueError names the unknown one."""
    key = str(name).strip().lower()
    for drug in DRUGS.values():
        if key == drug.name or key in drug.aliases:
            return drug
    known = ", ".join(f"{d.name} ({', '.join(d.aliases)})" for d in DRUGS.values())
    raise ValueError(f"unknown drug {name!r}; known drugs: {known}")
