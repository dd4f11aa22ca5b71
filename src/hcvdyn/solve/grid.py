"""The fixed-grid population solver: thousands of patients in lockstep (Tsit5 steps on a fixed grid with virion
clearance integrated exactly, exact PK), the grid itself (:class:`DayMesh`, the same every day, graded after the
doses of drugs that wash out within a day) and the dose schedules on it.
"""

from __future__ import annotations

import dataclasses
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

__all__ = ["solve_population", "population_solver", "DayMesh", "day_mesh", "base_steps", "base_steps_per_day", "MAX_CLEARANCE_STEP", "GridSchedule", "grid_schedule", "grid_doses",
           "scheduled_doses", "DEFAULT_STEPS_PER_DAY", "GRADED_LEVELS"]


TSIT5_OFFSETS = np.concatenate([[0.0], np.asarray(diffrax.Tsit5.tableau.c, dtype=float)])
DEFAULT_STEPS_PER_DAY = 4  # 6 h base steps, at least (base_steps_per_day; docs/numerics.md)
MAX_CLEARANCE_STEP = 1.6  # largest c x h of a base step: the integrating factor's quadrature error grows fast above it
MAX_BASE_STEPS = 1024  # base steps a day: more means a clearance no model declares (c is in 1/day)
GRADED_LEVELS = 5  # the base step after a washing-out drug's dose is cut into h/32, h/32, h/16, h/8, h/4, h/2
NODE_TOL = 1e-9  # days: a dose time within this of a mesh node is on it


@dataclass(frozen=True)
class DayMesh:
    """The solver's steps within one day, repeated every day: lengths in days (summing to 1), all patients alike.

    ``DayMesh.uniform(8)`` is eight 3-hour steps. :func:`day_mesh` grades the step after each dose of a drug that
    washes out within a day (celgosivir), whose concentration climbs from its trough past EC50 within minutes.
    """

    steps: tuple[float, ...]

    def __post_init__(self):
        if not self.steps or min(self.steps) <= 0 or abs(sum(self.steps) - 1.0) > 1e-12:
            raise ValueError(f"DayMesh: step lengths must be positive and sum to one day, got {self.steps}")

    @classmethod
    def uniform(cls, steps_per_day: int) -> "DayMesh":
        if int(steps_per_day) != steps_per_day or steps_per_day < 1:
            raise ValueError(f"steps_per_day = {steps_per_day!r}: use a positive whole number")
        return cls((1.0 / steps_per_day,) * int(steps_per_day))

    @classmethod
    def of(cls, mesh: "DayMesh | int") -> "DayMesh":
        return mesh if isinstance(mesh, DayMesh) else cls.uniform(mesh)

    @property
    def size(self) -> int:
        return len(self.steps)

    @property
    def nodes(self) -> np.ndarray:
        """Start of each step within the day (days), shape (size,)."""
        return np.concatenate([[0.0], np.cumsum(self.steps)[:-1]])

    def step_of(self, t: np.ndarray) -> np.ndarray:
        """Index of the step that starts at each time ``t`` (days); -1 where ``t`` is not on a node."""
        t = np.asarray(t, dtype=float)
        day = np.floor(t + NODE_TOL)
        frac = t - day
        j = np.searchsorted(self.nodes, frac - NODE_TOL)
        j = np.minimum(j, self.size - 1)
        on = np.abs(self.nodes[j] - frac) <= NODE_TOL
        return np.where(on, day.astype(int) * self.size + j, -1)


def washes_out_within_a_day(drug, params: Mapping[str, float]) -> bool:
    """Whether ``drug``'s slowest disposition rate (ke, or beta of two compartments) exceeds 1/day at ``params``."""
    rates = pk.rate_constants(drug.pk_kind, {k.split("_", 1)[1]: params[k] for k in drug.pk_names})
    return float(rates[1] if drug.pk_kind == "1cpt" else rates[-1]) > 1.0


@lru_cache(maxsize=32)
def _washing_out(model: HCVModel) -> tuple[str, ...]:
    defaults = model.params.defaults()
    return tuple(d.name for d, mode in model.drug_objs if mode == "pk" and washes_out_within_a_day(d, defaults))


def base_steps(clearance, at_least: int = DEFAULT_STEPS_PER_DAY) -> np.ndarray:
    """Base steps per day for each patient with virion clearance ``clearance`` (c, /day, an array): ``at_least``,
    doubled while c x h exceeds :data:`MAX_CLEARANCE_STEP` (doubling keeps every dose on the grid).

    Within a step the integrating factor turns the virions' production into a forcing P exp(c (t - t_n)), whose
    quadrature by Tsit5's stages has an error that grows like (c h)^6. On 20 patients of ``benchmarks/simulate.py``'s
    population (c log-normal around 6.2/day, SD 0.3), 48 weeks at 4 steps a day, the largest errors against the
    adaptive solver were 1.6e-3 log10 where c h <= 1.6 and 1.2e-2 at c h = 1.9 (docs/numerics.md).
    """
    c = np.atleast_1d(np.asarray(clearance, dtype=float))
    bad = np.flatnonzero(~np.isfinite(c) | (c <= 0))
    if bad.size:
        raise ValueError(f"base_steps: virion clearance c = {c[bad[0]]!r} /day (patient {bad[0]}) must be positive and finite")
    if int(at_least) != at_least or at_least < 1:
        raise ValueError(f"base_steps: at_least = {at_least!r} base steps a day must be a positive whole number")
    steps = np.full(c.shape, int(at_least))
    while np.any(coarse := c / steps > MAX_CLEARANCE_STEP):
        steps = np.where(coarse, 2 * steps, steps)
        if steps.max() > MAX_BASE_STEPS:
            raise ValueError(f"base_steps: virion clearance c = {c.max():g} /day needs more than {MAX_BASE_STEPS} base "
                             "steps a day; c is in 1/day (the declared range is in docs/models.md)")
    return steps


def base_steps_per_day(clearance, at_least: int = DEFAULT_STEPS_PER_DAY) -> int:
    """The base steps per day of :func:`base_steps` that every patient of ``clearance`` can share: the largest."""
    return int(np.max(base_steps(clearance, at_least)))


def day_mesh(model: HCVModel, regimens: Sequence[Regimen], steps_per_day: int = DEFAULT_STEPS_PER_DAY,
             levels: int = GRADED_LEVELS) -> DayMesh:
    """Uniform steps of 1/steps_per_day, with the step after each dose of a PK drug that washes out within a day (at
    the model's default PK) cut into ``levels`` + 1 pieces growing by 2: h/2^levels, h/2^levels, ..., h/2.

    Such a drug climbs from a trough far below EC50 to far above it within minutes of each dose, and 1 - effect
    collapses with it; Tsit5's first stage sits at the trough, so a uniform step over-weights it and the error is
    first order in the step (docs/numerics.md). Dose times must lie on the uniform grid (:func:`grid_schedule`).
    """
    base = DayMesh.uniform(steps_per_day)
    times = np.concatenate([_drug_doses(regimens, name)[0] for name in _washing_out(model)] or [np.zeros(0)])
    if levels <= 0 or times.size == 0:
        return base
    graded = {int(j) % base.size for j in base.step_of(times) if j >= 0}  # step within the day; off-grid: grid_schedule
    h = 1.0 / steps_per_day
    pieces = (h / 2**levels,) + tuple(h / 2**k for k in range(levels, 0, -1))
    steps = []
    for j in range(base.size):
        steps.extend(pieces if j in graded else (h,))
    return DayMesh(tuple(steps))


def solve_population(model: HCVModel, params, dose_index, dose_amounts, n_days: int, mesh: DayMesh | int):
    """ln-states (ln T, ln I, ln V_I, ln V) at days 0, 1, ..., n_days, shape (n_days + 1, 4, N). Pure and traceable.

    The whole batch is one ODE state of shape (4, N) stepped by diffrax's Tsit5 on a fixed grid, ``mesh``
    (a :class:`DayMesh`, or a whole number of uniform steps per day), the same every day (all patients in
    lockstep: no per-patient step control, so the vector width is the batch). Virion clearance is integrated
    exactly (an integrating-factor, or Lawson, scheme): within a step from t_n the solver carries (T, I, W_I, W)
    with W = V exp(c (t - t_n)), so that dW/dt = P exp(c (t - t_n)) with P the production of equation (4)
    (model.linear_rhs), and V = W exp(-c h) at the step's end. The drug-driven relaxation of ln V (rate
    c / (1 - phi), hundreds per day when saturating celgosivir wanes before the next dose), which made ln-state
    steps of 1/24 day unstable, then sets no step size; only the forcing must be resolved. Its sharpest part, the
    collapse of (1 - phi) within minutes of a dose, is what the first stage of the step after a dose over-weights:
    on a uniform mesh the error falls only as 1/steps_per_day, and :func:`day_mesh` grades that step
    (docs/numerics.md). No step costs a logarithm or exponential of the state; ln-states are taken once a day.
    PK is exact: each drug's compartment amounts are propagated analytically from step to step and doses are
    added to the depot on mesh nodes; the central amount at Tsit5's stage times comes from propagation rows
    precomputed once per solve and step length. Central concentrations are continuous at doses (every drug is
    absorbed from a depot), so the first stage of each step is the last one of the step before (first same as
    last). Accuracy against LSODA and the adaptive solver is measured in tests and benchmarks.

    params: name -> (N,) arrays (every model parameter). dose_index: drug -> (n_days * mesh.size,) int index
    into the columns of dose_amounts[drug] (N, K+1), whose last column is zero (no dose that step).
    """
    mesh = DayMesh.of(mesh)
    lengths = sorted(set(mesh.steps))  # distinct step lengths: the per-step tables are built once for each
    kind_of = np.array([lengths.index(h) for h in mesh.steps], dtype=np.int32)
    hs = jnp.asarray(lengths)
    params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    n = next(iter(params.values())).shape[0]
    _, _, s = model.steady_state(params)
    y0 = jnp.exp(model.initial_log_state(params))
    offsets = jnp.asarray(TSIT5_OFFSETS)
    growth = jnp.exp(params["c"][None, None, :] * hs[:, None, None] * offsets[None, :, None])  # (lengths, stages, N)
    pk_drugs = [(d, d.pk_kind) for d, m in model.drug_objs if m == "pk"]
    rows, step_maps = {}, {}
    for drug, kind in pk_drugs:
        pkp = {k.split("_", 1)[1]: params[k] for k in drug.pk_names}
        r = pk.rate_constants(kind, pkp)
        unit = jnp.eye(pk.N_PK_STATES[kind])[:, :, None] * jnp.ones(n)  # (j, compartments, N): unit amount in j
        vol = params[drug.volume_name]
        amounts_after = jax.vmap(jax.vmap(lambda u, tau: pk.propagate(kind, u, tau, r), (0, None)), (None, 0))  # traced once
        taus = (hs[:, None] * offsets[None, :]).reshape(-1)
        # rows[m, i, j]: concentration at offset i * h_m from a unit amount in compartment j.
        rows[drug.name] = (amounts_after(unit, taus)[:, :, 1] / vol).reshape(len(lengths), offsets.size, unit.shape[0], n)
        step_maps[drug.name] = amounts_after(unit, hs)

    def field(t, y, args):
        pk_state, t_start, m = args
        i = jnp.argmin(jnp.abs((t - t_start) / hs[m] - offsets))
        conc = {name: jnp.sum(rows[name][m, i] * pk_state[name], axis=0) for name in rows}
        eff = model.effects_from_concentrations(conc, model.constant_on(t, params), params, t)
        return jnp.stack(model.linear_rhs(y[0], y[1], y[2], params, s, eff, growth[m, i]))

    term = diffrax.ODETerm(field)
    solver = diffrax.Tsit5()
    pk0 = {d.name: jnp.zeros((pk.N_PK_STATES[k], n)) for d, k in pk_drugs}
    amounts = {name: jnp.asarray(a, dtype=jnp.float64) for name, a in dose_amounts.items()}
    shrink = 1.0 / growth[:, -1]  # (lengths, N)
    to_next = jnp.stack([jnp.ones_like(shrink), jnp.ones_like(shrink), shrink, shrink], axis=1)  # frame t_n -> t_n + h

    def one_step(carry, x):
        idx, m = x
        y, pk_state, (first, f1), t = carry  # Tsit5's state: (first step?, derivative at the last step's end)
        pk_state = {name: st.at[0].add(amounts[name][:, idx[name]]) for name, st in pk_state.items()}
        y1, _, _, (first, f1), _ = solver.step(term, t, t + hs[m], y, (pk_state, t, m), (first, f1), made_jump=False)
        pk_next = {name: jnp.einsum("jsn,jn->sn", step_maps[name][m], st) for name, st in pk_state.items()}
        return (y1 * to_next[m], pk_next, (first, f1 * to_next[m]), t + hs[m]), None  # into the next step's frame

    kinds = jnp.asarray(kind_of)

    def one_day(carry, idx_day):
        carry, _ = jax.lax.scan(one_step, carry, (idx_day, kinds), length=mesh.size)
        return carry, carry[0]

    sstate = solver.init(term, 0.0, hs[0], y0, (pk0, 0.0, 0))
    idx = {name: jnp.reshape(jnp.asarray(dose_index[name]), (n_days, mesh.size)) for name in dose_amounts}
    _, ys = jax.lax.scan(one_day, (y0, pk0, sstate, jnp.float64(0.0)), idx, length=n_days)
    ys = jnp.concatenate([y0[None], ys])
    return jnp.log(ys)



def population_solver(model: HCVModel, n_days: int, mesh: DayMesh | int):
    """:func:`solve_population` for one model and mesh (a :class:`DayMesh` or whole steps per day), compiled once
    per batch shape and shared by all callers: a function of concrete (numpy) arrays, which checks them before it
    calls the compiled solve.

    A batch in which every patient has psi = 0 is solved by the same model without its interaction term
    (equation 5 of :mod:`hcvdyn.model.hcv` is then exactly Bliss independence): the odds shift costs two
    exponentials and two divisions per right-hand side, about a quarter of a step's arithmetic.

    Constant efficacies that stop within the grid (t_end <= n_days) are refused: the switch is a jump of the
    right-hand side that the stages of a fixed step would straddle, and the first stage of the next step is
    taken from the step before; the adaptive solver (:func:`hcvdyn.solve.adaptive.simulate_batch`, used by
    every fit) stops at it.
    """
    return _checked_solver(model, int(n_days), DayMesh.of(mesh))


def _jitted_solver(model: HCVModel, n_days: int, mesh: DayMesh):
    return jax.jit(lambda params, dose_index, dose_amounts: solve_population(model, params, dose_index, dose_amounts, n_days, mesh))


@lru_cache(maxsize=32)
def _checked_solver(model: HCVModel, n_days: int, mesh: DayMesh):
    solve = _jitted_solver(model, n_days, mesh)  # both built here, once: callers run chunks on several threads
    bliss = None if model.interaction is None else _jitted_solver(dataclasses.replace(model, interaction=None), n_days, mesh)

    def checked(params, dose_index, dose_amounts):
        if model.constant_drugs:
            t_end = float(np.min(params["t_end"]))
            if t_end <= n_days:
                raise ValueError(f"population solver ({model.name}): constant efficacies stop at t_end = {t_end:g} days, "
                                 f"within the {n_days}-day grid, whose fixed steps do not stop at such a switch; simulate "
                                 "such patients with the adaptive solver (hcvdyn.simulate_batch)")
        if bliss is not None and "psi" in params and not np.any(np.asarray(params["psi"])):
            return bliss({k: v for k, v in params.items() if k != "psi"}, dose_index, dose_amounts)
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



def grid_schedule(regimens: Sequence[Regimen], drugs: Sequence[str], n_days: int, mesh: DayMesh | int, widths=None) -> GridSchedule:
    """The dose schedule of ``regimens`` on ``mesh`` (a :class:`DayMesh` or whole steps per day); doses off its
    nodes raise ValueError.

    widths: optional drug -> number of amount columns (>= K+1), so that arms with different regimens share
    one compiled solver.
    """
    mesh = DayMesh.of(mesh)
    n_steps = n_days * mesh.size
    index, column, intercept, slope, width = {}, {}, {}, {}, {}
    for name in (get_drug(d).name for d in drugs):
        t, a0, a1 = _drug_doses(regimens, name)
        steps = mesh.step_of(t)
        off = np.flatnonzero(steps < 0)
        if off.size:
            uniform = len(set(mesh.steps)) == 1
            raise ValueError(
                f"{name}: dose at day {t[off[0]]:g} is not on the solver grid of "
                + (f"{mesh.size} steps per day; choose steps_per_day so that every dose time is a multiple of "
                   f"1/steps_per_day" if uniform else f"the mesh's nodes (day fractions {np.round(mesh.nodes, 6).tolist()})")
            )
        inside = steps < n_steps
        uniq, col = np.unique(steps[inside], return_inverse=True)
        idx = np.full(n_steps, uniq.size, dtype=np.int32)
        idx[uniq] = np.arange(uniq.size, dtype=np.int32)
        index[name], column[name], intercept[name], slope[name] = idx, col, a0[inside], a1[inside]
        width[name] = max(uniq.size + 1, (widths or {}).get(name, 0))
    return GridSchedule(index, column, intercept, slope, width)



def grid_doses(regimens: Sequence[Regimen], drugs: Sequence[str], n_days: int, mesh: DayMesh | int, weights_kg, taken=None, widths=None):
    """Dose schedule on the solver grid: drug -> (step index array, per-patient amounts (N, K+1)).

    weights_kg: (N,) body weights (weight-based doses scale with them). taken: optional drug -> (N, K) bool,
    which scheduled doses each patient took (adherence, dropout). See :func:`grid_schedule`.
    """
    sched = grid_schedule(regimens, drugs, n_days, mesh, widths)
    return sched.index, sched.amounts(weights_kg, taken)



def scheduled_doses(regimens: Sequence[Regimen], drug: str, n_days: int) -> np.ndarray:
    """Times (days) of the scheduled doses of ``drug`` before ``n_days``: the columns of a ``taken`` mask."""
    t = _drug_doses(regimens, get_drug(drug).name)[0]
    return t[t < n_days]
