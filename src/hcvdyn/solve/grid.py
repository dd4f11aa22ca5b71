"""The fixed-grid population solver: thousands of patients in lockstep (Tsit5 steps on a regular grid with virion
clearance integrated exactly, exact PK), and the dose schedules on that grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from hcvdyn.model import pk
from hcvdyn.model.dosing import Regimen, dose_arrays
from hcvdyn.model.drugs import get_drug
from hcvdyn.model.hcv import HCVModel

__all__ = ["solve_population", "population_solver", "GridSchedule", "grid_schedule", "grid_doses", "scheduled_doses",
           "DEFAULT_STEPS_PER_DAY"]


TSIT5_OFFSETS = np.concatenate([[0.0], np.asarray(diffrax.Tsit5.tableau.c, dtype=float)])
DEFAULT_STEPS_PER_DAY = 8  # 3 h steps: 7e-3 log10 or better against LSODA over 48 weeks (docs/numerics.md)


def solve_population(model: HCVModel, params, dose_index, dose_amounts, n_days: int, steps_per_day: int):
    """ln-states (ln T, ln I, ln V_I, ln V) at days 0, 1, ..., n_days, shape (n_days + 1, 4, N). Pure and traceable.

    The whole batch is one ODE state of shape (4, N) stepped by diffrax's Tsit5 on a fixed grid of
    ``steps_per_day`` steps per day (all patients in lockstep: no per-patient step control, so the vector
    width is the batch). Virion clearance is integrated exactly (an integrating-factor, or Lawson, scheme):
    within a step from t_n the solver carries (T, I, W_I, W) with W = V exp(c (t - t_n)), so that
    dW/dt = P exp(c (t - t_n)) with P the production of equation (4) (model.linear_rhs), and V = W exp(-c h)
    at the step's end. The drug-driven relaxation of ln V (rate c / (1 - phi), hundreds per day when
    saturating celgosivir wanes before the next dose), which made ln-state steps of 1/24 day unstable, then
    sets no step size; only the forcing must be resolved. Its sharpest part, the collapse of (1 - phi) within
    minutes of a dose, is what the first stage of the next step over-weights: the error falls as 1/steps_per_day
    (docs/numerics.md). No step costs a logarithm or exponential of the state; ln-states are taken once a day.
    PK is exact: each drug's compartment amounts are propagated analytically from step to step and doses are
    added to the depot on grid points; the central amount at Tsit5's stage times comes from propagation rows
    precomputed once per solve. Central concentrations are continuous at doses (every drug is absorbed from a
    depot), so the first stage of each step is the last one of the step before (first same as last).
    Accuracy against LSODA and the adaptive solver is measured in tests and benchmarks/trial.py.

    params: name -> (N,) arrays (every model parameter). dose_index: drug -> (n_days*steps_per_day,) int
    index into the columns of dose_amounts[drug] (N, K+1), whose last column is zero (no dose that step).
    """
    h = 1.0 / steps_per_day
    params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    n = next(iter(params.values())).shape[0]
    _, _, s = model.steady_state(params)
    y0 = jnp.exp(model.initial_log_state(params))
    offsets = jnp.asarray(TSIT5_OFFSETS)
    growth = jnp.exp(params["c"][None, :] * h * offsets[:, None])  # integrating factor at each stage, (stages, N)
    pk_drugs = [(d, d.pk_kind) for d, m in model.drug_objs if m == "pk"]
    rows, step_maps = {}, {}
    for drug, kind in pk_drugs:
        pkp = {k.split("_", 1)[1]: params[k] for k in drug.pk_names}
        r = pk.rate_constants(kind, pkp)
        eye = jnp.eye(pk.N_PK_STATES[kind])
        unit = [e[:, None] * jnp.ones(n) for e in eye]
        vol = params[drug.volume_name]
        # rows[i, j]: concentration at offset i*h from a unit amount in compartment j.
        rows[drug.name] = jnp.stack([jnp.stack([pk.propagate(kind, u, c * h, r)[1] / vol for u in unit]) for c in TSIT5_OFFSETS])
        step_maps[drug.name] = jnp.stack([pk.propagate(kind, u, h, r) for u in unit])

    def field(t, y, args):
        pk_state, t_start = args
        i = jnp.argmin(jnp.abs((t - t_start) / h - offsets))
        conc = {name: jnp.sum(rows[name][i] * pk_state[name], axis=0) for name in rows}
        eff = model.effects_from_concentrations(conc, model.constant_on(t, params), params, t)
        return jnp.stack(model.linear_rhs(y[0], y[1], y[2], params, s, eff, growth[i]))

    term = diffrax.ODETerm(field)
    solver = diffrax.Tsit5()
    pk0 = {d.name: jnp.zeros((pk.N_PK_STATES[k], n)) for d, k in pk_drugs}
    amounts = {name: jnp.asarray(a, dtype=jnp.float64) for name, a in dose_amounts.items()}
    ones = jnp.ones(n)
    to_next = jnp.stack([ones, ones, 1.0 / growth[-1], 1.0 / growth[-1]])  # frame of t_n -> frame of t_n + h

    def one_step(carry, idx):
        y, pk_state, (first, f1), t = carry  # Tsit5's state: (first step?, derivative at the last step's end)
        pk_state = {name: st.at[0].add(amounts[name][:, idx[name]]) for name, st in pk_state.items()}
        y1, _, _, (first, f1), _ = solver.step(term, t, t + h, y, (pk_state, t), (first, f1), made_jump=False)
        pk_next = {name: jnp.einsum("jsn,jn->sn", step_maps[name], st) for name, st in pk_state.items()}
        return (y1 * to_next, pk_next, (first, f1 * to_next), t + h), None  # both into the next step's frame

    def one_day(carry, idx_day):
        carry, _ = jax.lax.scan(one_step, carry, idx_day, length=steps_per_day)
        return carry, carry[0]

    sstate = solver.init(term, 0.0, h, y0, (pk0, 0.0))
    idx = {name: jnp.reshape(jnp.asarray(dose_index[name]), (n_days, steps_per_day)) for name in dose_amounts}
    _, ys = jax.lax.scan(one_day, (y0, pk0, sstate, jnp.float64(0.0)), idx, length=n_days)
    ys = jnp.concatenate([y0[None], ys])
    return jnp.log(ys)



@lru_cache(maxsize=32)
def population_solver(model: HCVModel, n_days: int, steps_per_day: int):
    """The jitted :func:`solve_population` for one model and grid, shared by all callers (compiled per batch shape).

    Constant efficacies that stop within the grid (t_end <= n_days) are refused: the switch is a jump of the
    right-hand side that the stages of a fixed step would straddle, and the first stage of the next step is
    taken from the step before; the adaptive solver (:func:`hcvdyn.solve.adaptive.simulate_batch`, used by
    every fit) stops at it.
    """
    solve = jax.jit(lambda params, dose_index, dose_amounts: solve_population(model, params, dose_index, dose_amounts, n_days, steps_per_day))
    if not model.constant_drugs:
        return solve

    def checked(params, dose_index, dose_amounts):
        t_end = float(np.min(params["t_end"]))
        if t_end <= n_days:
            raise ValueError(f"population solver ({model.name}): constant efficacies stop at t_end = {t_end:g} days, within "
                             f"the {n_days}-day grid, whose fixed steps do not stop at such a switch; simulate "
                             "such patients with the adaptive solver (hcvdyn.simulate_batch)")
        return solve(params, dose_index, dose_amounts)

    return checked



def _drug_doses(regimens: Sequence[Regimen], name: str):
    """Scheduled doses of one drug: (times, amount intercept, amount per kg); amounts are affine in body weight.

    For a drug with per-kg PK the affine part is the amount before the division by weight (see GridSchedule).
    """
    regs = [r for r in regimens if r.drug == name]
    if not regs:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    per_kg = get_drug(name).pk_per_kg
    t, a1 = dose_arrays(regs, [name], 1.0)[name]
    _, a2 = dose_arrays(regs, [name], 2.0)[name]
    a2 = a2 * 2.0 if per_kg else a2
    keep = (a1 != 0) | (a2 != 0)
    return t[keep], (2 * a1 - a2)[keep], (a2 - a1)[keep]



@dataclass(frozen=True)
class GridSchedule:
    """Doses of one arm on the solver grid, computed once and shared by every chunk of patients.

    index[drug]: (n_steps,) column of the dose given at each step (the last column, all zero, when none);
    column[drug], intercept[drug], slope[drug]: per scheduled dose, its column and amount = intercept + slope x kg.
    """

    index: Mapping[str, np.ndarray]
    column: Mapping[str, np.ndarray]
    intercept: Mapping[str, np.ndarray]
    slope: Mapping[str, np.ndarray]
    width: Mapping[str, int]

    def amounts(self, weights_kg, taken=None) -> dict[str, np.ndarray]:
        """Per-patient amounts (N, width) for body weights (N,) and an optional drug -> (N, K) ``taken`` mask."""
        weights = np.asarray(weights_kg, dtype=float)
        out = {}
        for name, col in self.column.items():
            per_patient = self.intercept[name][None, :] + self.slope[name][None, :] * weights[:, None]
            if get_drug(name).pk_per_kg:
                per_patient = per_patient / weights[:, None]
            if taken is not None and name in taken:
                per_patient = per_patient * np.asarray(taken[name], dtype=float)[:, : col.size]
            merged = np.zeros((weights.size, self.width[name]))
            np.add.at(merged, (slice(None), col), per_patient)  # several doses on one step are summed
            out[name] = merged
        return out



def grid_schedule(regimens: Sequence[Regimen], drugs: Sequence[str], n_days: int, steps_per_day: int, widths=None) -> GridSchedule:
    """The dose schedule of ``regimens`` on a grid of ``steps_per_day``; doses off the grid raise ValueError.

    widths: optional drug -> number of amount columns (>= K+1), so that arms with different regimens share
    one compiled solver.
    """
    n_steps = n_days * steps_per_day
    index, column, intercept, slope, width = {}, {}, {}, {}, {}
    for name in (get_drug(d).name for d in drugs):
        t, a0, a1 = _drug_doses(regimens, name)
        steps = np.rint(t * steps_per_day).astype(int)
        off = np.flatnonzero(np.abs(steps - t * steps_per_day) > 1e-6)
        if off.size:
            raise ValueError(
                f"{name}: dose at day {t[off[0]]:g} is not on the solver grid of {steps_per_day} steps per day; "
                f"choose steps_per_day so that every dose time is a multiple of 1/steps_per_day"
            )
        inside = steps < n_steps
        uniq, col = np.unique(steps[inside], return_inverse=True)
        idx = np.full(n_steps, uniq.size, dtype=np.int32)
        idx[uniq] = np.arange(uniq.size, dtype=np.int32)
        index[name], column[name], intercept[name], slope[name] = idx, col, a0[inside], a1[inside]
        width[name] = max(uniq.size + 1, (widths or {}).get(name, 0))
    return GridSchedule(index, column, intercept, slope, width)



def grid_doses(regimens: Sequence[Regimen], drugs: Sequence[str], n_days: int, steps_per_day: int, weights_kg, taken=None, widths=None):
    """Dose schedule on the solver grid: drug -> (step index array, per-patient amounts (N, K+1)).

    weights_kg: (N,) body weights (weight-based doses scale with them). taken: optional drug -> (N, K) bool,
    which scheduled doses each patient took (adherence, dropout). See :func:`grid_schedule`.
    """
    sched = grid_schedule(regimens, drugs, n_days, steps_per_day, widths)
    return sched.index, sched.amounts(weights_kg, taken)



def scheduled_doses(regimens: Sequence[Regimen], drug: str, n_days: int) -> np.ndarray:
    """Times (days) of the scheduled doses of ``drug`` before ``n_days``: the columns of a ``taken`` mask."""
    t = _drug_doses(regimens, get_drug(drug).name)[0]
    return t[t < n_days]
