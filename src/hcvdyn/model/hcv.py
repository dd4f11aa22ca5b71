"""HCV viral-kinetic models: one declaration gives the states, the right-hand side and the parameter table.

The composed model (any subset of peginterferon, ribavirin and celgosivir; optional proliferation):

    dT/dt   = s + r T (1 - (T+I)/Tmax) - d T - (1 - eta) beta V_I T                      (1)
    dI/dt   = (1 - eta) beta V_I T + r I (1 - (T+I)/Tmax) - delta I                       (2)
    dV_I/dt = (1 - rho)(1 - phi) (1 - eps)(1 - sigma) p I - c V_I                          (3)
    dV/dt   = (1 - eps)(1 - sigma) p I - c V,         V = V_I + V_NI (measured load)      (4)

(1)-(2) with r = 0 and (3) with rho = phi = sigma = 0: Neumann et al. 1998. rho: Dixit et al. 2004
(V_NI = V - V_I obeys dV_NI/dt = rho (1-eps) p I - c V_NI). r, Tmax: Dahari, Ribeiro & Perelson 2007.
phi (non-infectious fraction) and sigma (secretion block) of the alpha-glucosidase inhibitor are
hcvdyn's own formulation (no published in-vivo model; docs/models.md). Effects combine by Bliss
independence: survivals multiply.

Interaction (models with ``interaction = (drug A, drug B)``; parameter psi, 0 = Bliss independence).
Each drug's potency is shifted by the other's occupancy, the general pharmacodynamic interaction (GPDI)
model of Wicha et al. 2017 (Nat Commun 8:2129) with one symmetric parameter and an exponential shift:

    EC50_A' = EC50_A exp(-psi h_B),   EC50_B' = EC50_B exp(-psi h_A)                          (5)

h = C^n / (C^n + EC50^n) is the drug's own (unshifted) occupancy. On the odds scale, h' = h e / (1 - h + h e)
with e = exp(n psi h_other); constant-mode effects use the same form with n = 1 and h = the effect.
psi > 0 is synergy (each drug more potent in the other's presence), psi < 0 antagonism.

Homeostatic liver (``homeostatic=True``; Dahari, Lo, Ribeiro & Perelson 2007, J Theor Biol 247:371, with no
influx, s = 0): the liver is maintained by proliferation alone, and the pretreatment state is set by the
infected fraction f0 = I0 / (T0 + I0) instead of beta and p:

    beta V0 = f0 (delta - d),   N0 = T0 + I0 = Tmax (1 - (d + f0 (delta - d)) / r),   p = c V0 / (f0 N0)   (6)

Interferon refractoriness (PK mode): the liver's response to pegIFN wanes after the first injections
(Sarasin-Filipowicz et al. 2008, PNAS 105:7034), so interferon's maximal production block moves from
ifn_emax to ifn_emax_late:

    eps(t) = [ifn_emax_late + (ifn_emax - ifn_emax_late) exp(-ifn_k_ref t)] C^n / (C^n + EC50^n)       (7)

(ifn_emax_late = ifn_emax, the default, is the plain Hill link.)

States are integrated on the natural-log scale (ln T, ln I, ln V_I, ln V), so a 6-log10 decline
keeps full relative accuracy. Units: cells/mL, IU/mL, days.

Pretreatment steady state from the baseline load V0 (all effects zero):
    I0 = c V0 / p
    T0 = I0 (delta - r + r I0/Tmax) / (beta V0 - r I0/Tmax)       (= c delta / (beta p) when r = 0)
    s  = d T0 + beta V0 T0 - r T0 (1 - (T0 + I0)/Tmax)            (= d T0 + delta I0 when r = 0)
"""


from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import jax.numpy as jnp
import numpy as np

from hcvdyn.model import pk
from hcvdyn.model.drugs import EFFECTS, Drug, get_drug
from hcvdyn.model.kinetics import (
    F0_PARAM,
    KINETIC_PARAMS,
    MODES,
    PROLIFERATION_PARAMS,
    PSI_PARAM,
    R_HOMEOSTATIC,
    STATES,
    T0_PARAM,
    T_END_PARAM,
    shift_odds,
)
from hcvdyn.model.parameters import ParamTable, check_values

__all__ = ["HCVModel"]


@dataclass(frozen=True)
class HCVModel:
    """A viral-kinetic model: which drugs act (and how) and whether hepatocytes proliferate.

    drugs: pairs (drug name, mode) with mode "constant" or "pk"; drugs not listed contribute nothing.
    proliferation: add the logistic proliferation of Dahari et al. 2007 (parameters r, Tmax).
    constant_target_cells: hold T at T0 (dT/dt = 0), the simplification Neumann et al. 1998 fitted with;
        V(t) then has the closed biphasic form.
    interaction: two of the model's drugs whose potencies interact through psi (equation 5); psi = 0 is
        exactly Bliss independence.
    homeostatic: proliferation with no influx (s = 0), parameterised by the pretreatment infected
        fraction f0 instead of beta and p (equation 6): the liver sits at its proliferative steady state.
    """

    name: str
    drugs: tuple[tuple[str, str], ...] = ()
    proliferation: bool = False
    constant_target_cells: bool = False
    homeostatic: bool = False
    description: str = ""
    reference: str = ""
    interaction: tuple[str, str] | None = None

    def __post_init__(self):
        canon = []
        for item in self.drugs:
            if len(item) != 2:
                raise ValueError(f"model {self.name!r}: drugs entries must be (drug, mode), got {item!r}")
            drug, mode = get_drug(item[0]), item[1]
            if mode not in MODES:
                raise ValueError(f"model {self.name!r}: mode {mode!r} of {drug.name} must be one of {MODES}")
            canon.append((drug.name, mode))
        names = [d for d, _ in canon]
        if len(set(names)) != len(names):
            raise ValueError(f"model {self.name!r}: a drug is listed twice: {names}")
        object.__setattr__(self, "drugs", tuple(canon))
        if self.homeostatic and not self.proliferation:
            raise ValueError(f"model {self.name!r}: a homeostatic liver needs proliferation")
        if self.proliferation and self.constant_target_cells:
            raise ValueError(f"model {self.name!r}: proliferation needs dynamic target cells")
        if self.interaction is not None:
            pair = tuple(get_drug(d).name for d in self.interaction)
            if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(names):
                raise ValueError(
                    f"model {self.name!r}: interaction must name two different drugs of the model {names}, got {self.interaction!r}"
                )
            object.__setattr__(self, "interaction", pair)

    states = STATES

    @cached_property
    def drug_objs(self) -> tuple[tuple[Drug, str], ...]:
        return tuple((get_drug(d), m) for d, m in self.drugs)

    @property
    def pk_drugs(self) -> tuple[str, ...]:
        """Names of the drugs driven by concentrations (need dosing regimens)."""
        return tuple(d for d, m in self.drugs if m == "pk")

    @property
    def constant_drugs(self) -> tuple[str, ...]:
        return tuple(d for d, m in self.drugs if m == "constant")

    @cached_property
    def params(self) -> ParamTable:
        rows = [p for p in KINETIC_PARAMS if not (self.homeostatic and p.name in ("beta", "p"))]
        if self.homeostatic:
            rows += [R_HOMEOSTATIC, PROLIFERATION_PARAMS[1], F0_PARAM]
        elif self.proliferation:
            rows += PROLIFERATION_PARAMS
        if self.constant_drugs:
            rows += [T0_PARAM, T_END_PARAM]
        for drug, mode in self.drug_objs:
            rows += drug.constant_params if mode == "constant" else drug.pk_params
        if self.interaction is not None:
            rows.append(PSI_PARAM)
        return ParamTable(rows)

    def defaults(self, **overrides) -> dict[str, float]:
        """Default parameter values, with ``overrides`` validated and applied."""
        check_values(self.params, overrides, where=f"model {self.name}")
        return {**self.params.defaults(), **{k: float(v) for k, v in overrides.items()}}

    # ---- numerics (pure, jit/vmap/jacfwd-safe) -------------------------------------------------
    def infection_rates(self, params):
        """(beta, p): parameters of the model, or derived from f0 in a homeostatic model (equation 6)."""
        if not self.homeostatic:
            return params["beta"], params["p"]
        v0 = 10.0 ** params["log10_V0"]
        f0, delta, d = params["f0"], params["delta"], params["d"]
        n0 = params["Tmax"] * (1.0 - (d + f0 * (delta - d)) / params["r"])
        return f0 * (delta - d) / v0, params["c"] * v0 / (f0 * n0)

    def steady_state(self, params):
        """Pretreatment (T0, I0, s) from V0 and the kinetic parameters (module docstring)."""
        if self.homeostatic:
            f0, delta, d = params["f0"], params["delta"], params["d"]
            n0 = params["Tmax"] * (1.0 - (d + f0 * (delta - d)) / params["r"])
            return (1.0 - f0) * n0, f0 * n0, 0.0 * n0
        v0 = 10.0 ** params["log10_V0"]
        i0 = params["c"] * v0 / params["p"]
        r = params["r"] if self.proliferation else 0.0
        tmax = params["Tmax"] if self.proliferation else 1.0
        t0 = i0 * (params["delta"] - r + r * i0 / tmax) / (params["beta"] * v0 - r * i0 / tmax)
        s = params["d"] * t0 + params["beta"] * v0 * t0 - r * t0 * (1.0 - (t0 + i0) / tmax)
        return t0, i0, s

    def initial_log_state(self, params):
        t0, i0, _ = self.steady_state(params)
        lv0 = params["log10_V0"] * jnp.log(10.0)
        return jnp.stack([jnp.log(t0), jnp.log(i0), lv0, lv0])

    def pk_setup(self, params, doses):
        """Per PK-mode drug: (dose_times, post-dose amounts, rate constants, volume). Computed once per solve."""
        out = {}
        for drug, mode in self.drug_objs:
            if mode != "pk":
                continue
            times, amounts = doses[drug.name]
            pkp = {k.split("_", 1)[1]: params[k] for k in drug.pk_names}
            rates = pk.rate_constants(drug.pk_kind, pkp)
            states = pk.post_dose_states(drug.pk_kind, times, amounts, rates)
            out[drug.name] = (times, states, rates, params[drug.volume_name])
        return out

    def concentrations(self, t, pk_data):
        """Concentration of each PK-mode drug's active moiety at time t (drug's conc_unit)."""
        return {
            drug.name: pk.concentration(drug.pk_kind, t, *pk_data[drug.name])
            for drug, mode in self.drug_objs
            if mode == "pk"
        }

    def effects(self, t, params, pk_data):
        """Each effect in :data:`EFFECTS` at time t (0 for effects no drug drives)."""
        return self.effects_from_concentrations(self.concentrations(t, pk_data), self.constant_on(t, params), params, t)

    def constant_on(self, t, params):
        """Whether constant-mode effects act at time t: from the delay t0 to the end of treatment, t0 <= t < t_end."""
        if not self.constant_drugs:
            return True
        return (t >= params["t0"]) & (t < params["t_end"])

    def occupancies(self, conc, on, params):
        """Per drug: (occupancy h in [0, 1], Hill n) before any interaction; constant mode: h = first effect, n = 1."""
        occ = {}
        for drug, mode in self.drug_objs:
            if mode == "constant":
                occ[drug.name] = (params[drug.effects[0]] * jnp.where(on, 1.0, 0.0), 1.0)
            else:
                n = params[f"{drug.prefix}_n"]
                occ[drug.name] = (pk.hill(conc[drug.name], params[f"{drug.prefix}_ec50"], n), n)
        return occ

    def effects_from_concentrations(self, conc, on, params, t=0.0):
        """Effects from PK-mode concentrations and the constant-mode switch ``on`` (t0 <= t < t_end), with equation (5).

        Interferon's maximal effect declines from ifn_emax to ifn_emax_late at rate ifn_k_ref from day 0
        (refractoriness, equation 7); t (days since the start of treatment) matters only for that.
        """
        occ = self.occupancies(conc, on, params)
        shift = {name: None for name in occ}
        if self.interaction is not None:
            a, b = self.interaction
            shift[a] = jnp.exp(occ[a][1] * params["psi"] * occ[b][0])
            shift[b] = jnp.exp(occ[b][1] * params["psi"] * occ[a][0])
        eff = {e: 0.0 for e in EFFECTS}
        for drug, mode in self.drug_objs:
            e_shift = shift[drug.name]
            if mode == "constant":
                on_f = jnp.where(on, 1.0, 0.0)
                for e in drug.effects:
                    eff[e] = shift_odds(params[e], e_shift) * on_f
            else:
                h = shift_odds(occ[drug.name][0], e_shift)
                for e, pmax in drug.effect_max:
                    eff[e] = self.max_effect(pmax, params, t) * h
        return eff

    @staticmethod
    def max_effect(pmax: str, params, t):
        """The maximal-effect parameter, with interferon's refractoriness (equation 7) applied to ifn_emax."""
        if pmax != "ifn_emax" or "ifn_emax_late" not in params:
            return params[pmax]
        late = params["ifn_emax_late"]
        return late + (params["ifn_emax"] - late) * jnp.exp(-params["ifn_k_ref"] * jnp.maximum(t, 0.0))

    @staticmethod
    def combine_effects(eff):
        """Bliss independence: (production factor, infectious fraction, infection factor)."""
        production = (1.0 - eff["eps"]) * (1.0 - eff["sigma"])
        infectious = (1.0 - eff["rho"]) * (1.0 - eff["phi"])
        return production, infectious, 1.0 - eff["eta"]

    def rhs(self, t, y, args):
        """d/dt of (ln T, ln I, ln V_I, ln V), equations (1)-(4) divided by each state."""
        params, pk_data, s = args
        return self.log_rhs(y, params, s, self.effects(t, params, pk_data))

    def log_rhs(self, y, params, s, eff):
        """Equations (1)-(4) on ln-states given the effects; y has shape (4, ...) and broadcasts over patients."""
        t_cells, i_cells, vi = jnp.exp(y[0]), jnp.exp(y[1]), jnp.exp(y[2])
        d_t, d_i, made_vi, made_v = self.linear_rhs(t_cells, i_cells, vi, params, s, eff)
        return jnp.stack([d_t / t_cells, d_i / i_cells, made_vi / vi - params["c"], made_v * jnp.exp(-y[3]) - params["c"]])

    def linear_rhs(self, t_cells, i_cells, w_i, params, s, eff, frame=1.0):
        """Equations (1)-(4) for integrators that treat virion clearance exactly (hcvdyn.solve.grid).

        From T, I (cells/mL) and W_I = frame x V_I (IU/mL): (dT/dt, dI/dt, frame x P_I, frame x P), where P_I and
        P (IU/mL/day) are the production terms of (3) and (4): dV_I/dt = P_I - c V_I, dV/dt = P - c V.
        frame: the integrating factor exp(c (t - t_n)) of a Lawson step from t_n, or 1.
        """
        production, infectious, infection = self.combine_effects(eff)
        beta, p = self.infection_rates(params)
        infections = infection * beta * w_i * t_cells / frame  # one division, last: as w_i / frame, XLA's CPU fusion ran the grid at half speed
        if self.proliferation:
            growth = params["r"] * (1.0 - (t_cells + i_cells) / params["Tmax"])
        else:
            growth = 0.0
        d_t = 0.0 * t_cells if self.constant_target_cells else s + (growth - params["d"]) * t_cells - infections
        made = production * p * i_cells * frame
        return d_t, infections + (growth - params["delta"]) * i_cells, infectious * made, made

    def check_steady_state(self, params, where: str = "") -> None:
        """ValueError when the parameters admit no positive, stable pretreatment steady state.

        Refused: T0 <= 0 or s < 0; with proliferation, T0 + I0 > Tmax (a liver above its carrying capacity);
        and a steady state that is unstable (an eigenvalue of the untreated system's Jacobian with a positive
        real part), from which any perturbation runs away. The message names the parameters to change.
        """
        params = {k: np.float64(v) for k, v in params.items()}
        t0, i0, s = (float(x) for x in self.steady_state(params))
        prefix = f"{where}: " if where else ""
        if self.homeostatic and not (params["delta"] > params["d"] and t0 > 0):
            raise ValueError(
                f"{prefix}model {self.name}: a homeostatic liver needs delta > d and r > d + f0 (delta - d) "
                f"(delta = {params['delta']:.4g}, d = {params['d']:.4g}, r = {params['r']:.4g}, f0 = {params['f0']:.4g} /day)"
            )
        if not (np.isfinite(t0) and t0 > 0 and np.isfinite(s) and s >= 0):
            raise ValueError(
                f"{prefix}model {self.name}: no positive pretreatment steady state for these parameters "
                f"(T0 = {t0:.3g} cells/mL, s = {s:.3g} cells/mL/day); with proliferation, lower r or p, or raise beta"
            )
        if self.proliferation and params["r"] > 0 and t0 + i0 > params["Tmax"] * (1.0 + 1e-9):
            raise ValueError(
                f"{prefix}model {self.name}: pretreatment T0 + I0 = {t0 + i0:.4g} cells/mL exceeds Tmax = "
                f"{params['Tmax']:.4g} (T0 = {t0:.3g}, I0 = c V0 / p = {i0:.3g}); raise Tmax or p, or lower beta or log10_V0"
            )
        lead = self.pretreatment_growth_rate(params)
        if not lead <= 1e-9 * float(params["c"]):  # 0 is neutral (held target cells), not a runaway
            raise ValueError(
                f"{prefix}model {self.name}: the pretreatment steady state is unstable (leading eigenvalue "
                f"{lead:.3g} /day >= 0; T0 = {t0:.3g}, I0 = {i0:.3g} cells/mL); lower r or raise delta or d"
            )

    def pretreatment_growth_rate(self, params) -> float:
        """Largest real part (1/day) of the eigenvalues of the untreated system's Jacobian at the steady state."""
        jac = np.asarray(_pretreatment_jacobian(self)({k: np.float64(v) for k, v in params.items()}))
        if self.constant_target_cells:  # T is held: its row of the Jacobian is zero by construction
            jac = jac[1:, 1:]
        return float(np.max(np.linalg.eigvals(jac).real))


@lru_cache(maxsize=None)
def _pretreatment_jacobian(model: HCVModel):
    """Jitted Jacobian of the untreated log-state field at the pretreatment steady state (one compile per model)."""
    import jax

    def jac(p):
        _, _, s = model.steady_state(p)
        zero = {e: 0.0 for e in EFFECTS}
        return jax.jacfwd(lambda y: model.log_rhs(y, p, s, zero))(model.initial_log_state(p))

    return jax.jit(jac)
