"""Solving the models: diffrax with 64-bit floats, jit and vmap over patients, exact forward-mode gradients.

The one numerical core is :func:`solve_log_states` (pure, traceable). The public functions validate
their inputs (names, values, times) at the boundary and call compiled versions cached per
(model, options), so a batch of patients with the same array shapes compiles once.
"""

from __future__ import annotations


import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from . import pk
from .dosing import Regimen, batch_dose_arrays, dose_arrays
from .drugs import get_drug
from .models import HCVModel
from .parameters import check_values

__all__ = [
    "SolverOptions",
    "Trajectory",
    "solve_log_states",
    "log10_load",
    "simulate",
    "simulate_batch",
    "prepare_batch",
    "batch_solver",
    "simulate_scipy",
    "check_times",
    "exposure",
    "solve_population",
    "population_solver",
    "grid_doses",
    "grid_schedule",
    "GridSchedule",
    "scheduled_doses",
    "LN10",
]

LN10 = math.log(10.0)


@dataclass(frozen=True)
class SolverOptions:
    """Options of the diffrax solve.

    rtol, atol: tolerances on the ln-scale states. On ln-states atol is the relative error of each original
        state, whatever its size (1e-8 on ln V is 4e-9 log10), so rtol defaults to 0: an rtol would be
        multiplied by |ln T| ~ 11 and let errors of the slow T and I equations accumulate over months.
    jump_ts: hand dose times (and the constant-efficacy onset t0) to the step-size controller.
    stability_cap: steps are capped at stability_cap / lambda days, lambda the fastest rate of the
        pretreatment state: the largest |diagonal entry| of the Jacobian of the right-hand side, which is c
        (virion clearance) unless target cells turn over faster (s/T0 = d + beta V0 grows with the load:
        7.6/day at log10 V0 7.9 with c = 6.2). Near equilibrium the right-hand side vanishes and an uncapped
        explicit solver grows its step until the fastest mode sits on the edge of Tsit5's stability region,
        where the error controller stalls; 2.5 keeps lambda*dt inside the region (boundary ~3.4 on the real
        axis).
    max_steps: step budget; a solve that exhausts it reports failure instead of a wrong answer.
    """

    rtol: float = 0.0
    atol: float = 1e-8
    dt0: float = 1e-3
    max_steps: int = 200_000
    jump_ts: bool = True
    stability_cap: float = 2.5
    solver: str = "tsit5"

    def __post_init__(self):
        for name in ("rtol", "atol", "dt0", "stability_cap"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or (name == "rtol" and v == 0))):
                raise ValueError(f"SolverOptions.{name} = {v!r} must be a positive finite number")
        if self.max_steps < 1:
            raise ValueError(f"SolverOptions.max_steps = {self.max_steps} must be >= 1")
        if self.solver not in _SOLVERS:
            raise ValueError(f"SolverOptions.solver = {self.solver!r}; choose one of {sorted(_SOLVERS)}")


_SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8, "kvaerno5": diffrax.Kvaerno5}


def solve_log_states(model: HCVModel, params, doses, t_obs, options: SolverOptions = SolverOptions()):
    """ln-scale states (ln T, ln I, ln V_I, ln V) at ``t_obs`` and a success flag. Pure and traceable.

    params: mapping name -> scalar (all of ``model.params``); doses: mapping PK-mode drug -> (times, amounts);
    t_obs: increasing times (days) >= 0, last > 0. Treatment (and the solve) starts at day 0 from the
    pretreatment steady state.
    """
    params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    t_obs = jnp.asarray(t_obs, dtype=jnp.float64)
    pk_data = model.pk_setup(params, {k: (jnp.asarray(t), jnp.asarray(a)) for k, (t, a) in doses.items()})
    _, _, s = model.steady_state(params)
    y0 = model.initial_log_state(params)

    args = (params, pk_data, s)
    fastest = jnp.max(jnp.abs(jnp.diag(jax.jacfwd(lambda y: model.rhs(0.0, y, args))(y0))))
    controller = diffrax.PIDController(rtol=options.rtol, atol=options.atol,
                                       dtmax=options.stability_cap / jnp.maximum(params["c"], fastest))
    if options.jump_ts:
        jumps = [jnp.asarray(doses[d][0], dtype=jnp.float64) for d in model.pk_drugs]
        if model.constant_drugs:
            jumps.append(jnp.reshape(params["t0"], (1,)))
        if jumps:
            controller = diffrax.ClipStepSizeController(controller, jump_ts=jnp.concatenate(jumps))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(model.rhs),
        _SOLVERS[options.solver](),
        t0=0.0,
        t1=t_obs[-1],
        dt0=options.dt0,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=t_obs),
        stepsize_controller=controller,
        adjoint=diffrax.ForwardMode(),
        max_steps=options.max_steps,
        throw=False,
    )
    ok = sol.result == diffrax.RESULTS.successful
    return sol.ys, ok, sol.stats["num_steps"]


def log10_load(model: HCVModel, params, doses, t_obs, options: SolverOptions = SolverOptions()):
    """log10 of the measured load V = V_I + V_NI (IU/mL) at ``t_obs``; NaN where the solve failed."""
    ys, ok, _ = solve_log_states(model, params, doses, t_obs, options)
    return jnp.where(ok, ys[:, 3] / LN10, jnp.nan)


@lru_cache(maxsize=32)
def _jit_rhs(model: HCVModel):
    return jax.jit(model.rhs)


@lru_cache(maxsize=64)
def _compiled(model: HCVModel, options: SolverOptions, batched: bool):
    fn = lambda params, doses, t_obs: solve_log_states(model, params, doses, t_obs, options)  # noqa: E731
    if batched:
        fn = jax.vmap(fn, in_axes=(0, 0, None))
    return jax.jit(fn)


@dataclass(frozen=True)
class Trajectory:
    """Solution at the requested times. Loads in log10 IU/mL, cells in cells/mL, time in days."""

    t_days: np.ndarray
    log10_vl: np.ndarray  # measured load V = V_I + V_NI
    log10_vi: np.ndarray  # infectious virions
    target_cells: np.ndarray
    infected_cells: np.ndarray
    ok: np.ndarray | bool
    num_steps: np.ndarray | int

    @classmethod
    def from_log_states(cls, t, ys, ok, steps):
        ys = np.asarray(ys)
        return cls(
            t_days=np.asarray(t),
            log10_vl=ys[..., 3] / LN10,
            log10_vi=ys[..., 2] / LN10,
            target_cells=np.exp(ys[..., 0]),
            infected_cells=np.exp(ys[..., 1]),
            ok=np.asarray(ok),
            num_steps=np.asarray(steps),
        )


def check_times(t, name: str = "t_obs") -> np.ndarray:
    """Validated 1-D array of strictly increasing, finite, non-negative times with a positive last time."""
    arr = np.asarray(t, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of times (days)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]]} is not finite")
    if arr[0] < 0:
        raise ValueError(f"{name}[0] = {arr[0]} is negative; treatment starts at day 0")
    steps = np.flatnonzero(np.diff(arr) <= 0)
    if steps.size:
        i = steps[0] + 1
        raise ValueError(f"{name} must be strictly increasing: {name}[{i}] = {arr[i]} <= {name}[{i - 1}] = {arr[i - 1]}")
    if arr[-1] <= 0:
        raise ValueError(f"{name} must end after day 0")
    return arr


def _full_params(model: HCVModel, params: Mapping[str, float] | None, where: str) -> dict[str, float]:
    params = dict(params or {})
    check_values(model.params, params, where=where)
    full = {**model.params.defaults(), **{k: float(v) for k, v in params.items()}}
    model.check_steady_state(full, where=where)
    return full


def simulate(
    model: HCVModel,
    params: Mapping[str, float] | None = None,
    regimens: Sequence[Regimen] = (),
    t_obs: Sequence[float] = (),
    weight_kg: float = 70.0,
    options: SolverOptions = SolverOptions(),
) -> Trajectory:
    """Simulate one patient: parameters (defaults for those not given), regimens and sampling times."""
    full = _full_params(model, params, where=f"simulate({model.name})")
    t = check_times(t_obs)
    doses = dose_arrays(regimens, model.pk_drugs, weight_kg)
    ys, ok, steps = _compiled(model, options, False)(full, doses, t)
    traj = Trajectory.from_log_states(t, ys, ok, steps)
    if not bool(traj.ok):
        raise RuntimeError(
            f"simulate({model.name}): the ODE solve failed (step budget {options.max_steps} exhausted or a "
            f"non-finite state); try a larger SolverOptions.max_steps, a smaller stability_cap or looser rtol/atol"
        )
    return traj


def prepare_batch(
    model: HCVModel,
    params: Mapping[str, Sequence[float] | float],
    regimens_per_patient: Sequence[Sequence[Regimen]] | Sequence[Regimen],
    t_obs: Sequence[float],
    weights_kg: Sequence[float] | None = None,
):
    """Validated arrays (params, doses, t) for the batched solver; see :func:`simulate_batch`."""
    sizes = {np.size(v) for v in params.values() if np.ndim(v) > 0}
    if regimens_per_patient and isinstance(regimens_per_patient[0], Regimen):
        shared = list(regimens_per_patient)
        regimens_per_patient = [shared] * (max(sizes) if sizes else 1)
    n = len(regimens_per_patient)
    if sizes - {n}:
        raise ValueError(f"simulate_batch: parameter arrays have lengths {sorted(sizes)} but there are {n} patients")
    unknown = sorted(set(params) - set(model.params.names))
    if unknown:
        check_values(model.params, {unknown[0]: 0.0}, where="simulate_batch")
    full = {}
    for p in model.params:
        v = np.broadcast_to(np.asarray(params.get(p.name, p.default), dtype=float), (n,)).copy()
        bad = np.flatnonzero(~np.isfinite(v) | (v < p.lower) | (v > p.upper))
        if bad.size:
            raise ValueError(
                f"simulate_batch: parameter {p.name!r} of patient {bad[0]} = {v[bad[0]]} outside "
                f"[{p.lower}, {p.upper}] ({p.unit}) or not finite"
            )
        full[p.name] = v
    t = check_times(t_obs)
    doses = batch_dose_arrays(regimens_per_patient, model.pk_drugs, weights_kg)
    return full, doses, t


def batch_solver(model: HCVModel, options: SolverOptions = SolverOptions()):
    """The jitted, vmapped solver (params, doses, t) -> (ln-states, ok, steps), shared by all callers."""
    return _compiled(model, options, True)


def simulate_batch(
    model: HCVModel,
    params: Mapping[str, Sequence[float] | float],
    regimens_per_patient: Sequence[Sequence[Regimen]] | Sequence[Regimen],
    t_obs: Sequence[float],
    weights_kg: Sequence[float] | None = None,
    options: SolverOptions = SolverOptions(),
) -> Trajectory:
    """Simulate many patients in one vmapped, jitted call (compiled once per array shape).

    params: name -> array of per-patient values or a scalar shared by all; missing names take defaults.
    regimens_per_patient: one list of regimens per patient, or a single list shared by all.
    Failed solves are reported per patient in ``Trajectory.ok`` (their values are NaN), never raised.
    """
    full, doses, t = prepare_batch(model, params, regimens_per_patient, t_obs, weights_kg)
    ys, ok, steps = batch_solver(model, options)(full, doses, t)
    ys = np.where(np.asarray(ok)[:, None, None], np.asarray(ys), np.nan)
    return Trajectory.from_log_states(t, ys, ok, steps)


def simulate_scipy(
    model: HCVModel,
    params: Mapping[str, float] | None = None,
    regimens: Sequence[Regimen] = (),
    t_obs: Sequence[float] = (),
    weight_kg: float = 70.0,
    method: str = "LSODA",
    rtol: float = 1e-10,
    atol: float = 1e-10,
) -> Trajectory:
    """Reference solve of the same right-hand side with ``scipy.integrate.solve_ivp`` (for tests and benchmarks).

    The model equations are shared with the JAX path; only the integrator differs. The interval is
    split at every dose time and at t0, so that the reference integrator never steps across a kink.
    """
    from scipy.integrate import solve_ivp

    full = _full_params(model, params, where=f"simulate_scipy({model.name})")
    t = check_times(t_obs)
    doses = dose_arrays(regimens, model.pk_drugs, weight_kg)
    jparams = {k: jnp.float64(v) for k, v in full.items()}
    pk_data = model.pk_setup(jparams, {k: (jnp.asarray(a), jnp.asarray(b)) for k, (a, b) in doses.items()})
    _, _, s = model.steady_state(jparams)
    args = (jparams, pk_data, s)
    rhs = _jit_rhs(model)
    fun = lambda tt, y: np.asarray(rhs(tt, y, args))  # noqa: E731
    breaks = {0.0, float(t[-1])}
    for d in model.pk_drugs:
        breaks.update(float(x) for x in doses[d][0] if 0 < x < t[-1])
    if model.constant_drugs and 0 < full["t0"] < t[-1]:
        breaks.add(full["t0"])
    edges = sorted(breaks)
    y = np.asarray(model.initial_log_state(jparams))
    out = np.empty((t.size, 4))
    filled = t == 0.0
    out[filled] = y
    nfev = 0
    for a, b in zip(edges[:-1], edges[1:]):
        mask = (t > a) & (t <= b)
        t_eval = np.unique(np.append(t[mask], b))
        res = solve_ivp(fun, (a, b), y, method=method, rtol=rtol, atol=atol, t_eval=t_eval)
        if not res.success:
            raise RuntimeError(f"simulate_scipy({model.name}): solve_ivp failed on [{a}, {b}]: {res.message}")
        nfev += res.nfev
        out[mask] = res.y.T[: mask.sum()]
        y = res.y[:, -1]
    return Trajectory.from_log_states(t, out, True, nfev)


def exposure(
    model: HCVModel,
    params: Mapping[str, float] | None,
    regimens: Sequence[Regimen],
    t_days: Sequence[float],
    weight_kg: float = 70.0,
    pad_to: int | None = None,
) -> dict[str, np.ndarray]:
    """Concentrations (``conc_<drug>``, drug's conc_unit) and effects (eps, eta, rho, phi, sigma) over time.

    pad_to: pad every drug's dose list to this length, so that calls with different regimens share one
    compiled function (the padding changes nothing).
    """
    full = _full_params(model, params, where=f"exposure({model.name})")
    t = np.asarray(t_days, dtype=float)
    doses = dose_arrays(regimens, model.pk_drugs, weight_kg, length=pad_to)
    return {k: np.asarray(v) for k, v in _exposure_fn(model)(full, doses, t).items()}


@lru_cache(maxsize=32)
def _exposure_fn(model: HCVModel):
    def at(params, doses, t):
        params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
        pk_data = model.pk_setup(params, doses)

        def one(ti):
            eff = model.effects(ti, params, pk_data)
            out = {e: jnp.asarray(v, dtype=jnp.float64) for e, v in eff.items()}
            out.update({f"conc_{d}": c for d, c in model.concentrations(ti, pk_data).items()})
            return out

        return jax.vmap(one)(t)

    return jax.jit(at)


# ---- fixed-grid population solver (virtual trials) ---------------------------------------------

_TSIT5_OFFSETS = np.concatenate([[0.0], np.asarray(diffrax.Tsit5.tableau.c, dtype=float)])


def solve_population(model: HCVModel, params, dose_index, dose_amounts, n_days: int, steps_per_day: int):
    """ln-states (ln T, ln I, ln V_I, ln V) at days 0, 1, ..., n_days, shape (n_days + 1, 4, N). Pure and traceable.

    The whole batch is one ODE state of shape (4, N) stepped by diffrax's Tsit5 on a fixed grid of
    ``steps_per_day`` steps per day (all patients in lockstep: no per-patient step control, so the vector
    width is the batch). PK is exact: each drug's compartment amounts are propagated analytically from
    step to step and doses are added to the depot on grid points; the central amount at Tsit5's stage
    times comes from propagation rows precomputed once per solve, so a stage costs no exponential for PK.
    Accuracy against the adaptive solver is measured in tests and benchmarks/trial.py.

    params: name -> (N,) arrays (every model parameter). dose_index: drug -> (n_days*steps_per_day,) int
    index into the columns of dose_amounts[drug] (N, K+1), whose last column is zero (no dose that step).
    """
    h = 1.0 / steps_per_day
    params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}
    n = next(iter(params.values())).shape[0]
    _, _, s = model.steady_state(params)
    y0 = model.initial_log_state(params)
    offsets = jnp.asarray(_TSIT5_OFFSETS)
    pk_drugs = [(d, d.pk_kind) for d, m in model.drug_objs if m == "pk"]
    rates, rows, step_maps = {}, {}, {}
    for drug, kind in pk_drugs:
        pkp = {k.split("_", 1)[1]: params[k] for k in drug.pk_names}
        r = pk.rate_constants(kind, pkp)
        ns = pk.N_PK_STATES[kind]
        eye = jnp.eye(ns)
        vol = params[drug.volume_name]
        # rows[i, j]: concentration at offset i*h from a unit amount in compartment j.
        rows[drug.name] = jnp.stack(
            [jnp.stack([pk.propagate(kind, eye[j][:, None] * jnp.ones(n), c * h, r)[1] / vol for j in range(ns)]) for c in _TSIT5_OFFSETS]
        )
        step_maps[drug.name] = jnp.stack([pk.propagate(kind, eye[j][:, None] * jnp.ones(n), h, r) for j in range(ns)])
        rates[drug.name] = r

    def field(t, y, args):
        pk_state, t_start = args
        i = jnp.argmin(jnp.abs((t - t_start) / h - offsets))
        conc = {name: jnp.sum(rows[name][i] * pk_state[name], axis=0) for name in rows}
        on = t >= params["t0"] if model.constant_drugs else True
        return model.log_rhs(y, params, s, model.effects_from_concentrations(conc, on, params, t))

    term = diffrax.ODETerm(field)
    solver = diffrax.Tsit5()
    pk0 = {d.name: jnp.zeros((pk.N_PK_STATES[k], n)) for d, k in pk_drugs}
    amounts = {name: jnp.asarray(a, dtype=jnp.float64) for name, a in dose_amounts.items()}

    def one_step(carry, idx):
        y, pk_state, sstate, t = carry
        pk_state = {name: st.at[0].add(amounts[name][:, idx[name]]) for name, st in pk_state.items()}
        y1, _, _, sstate, _ = solver.step(term, t, t + h, y, (pk_state, t), sstate, made_jump=False)
        pk_next = {name: jnp.einsum("jsn,jn->sn", step_maps[name], st) for name, st in pk_state.items()}
        return (y1, pk_next, sstate, t + h), None

    def one_day(carry, idx_day):
        carry, _ = jax.lax.scan(one_step, carry, idx_day, length=steps_per_day)
        return carry, carry[0]

    sstate = solver.init(term, 0.0, h, y0, (pk0, 0.0))
    idx = {name: jnp.reshape(jnp.asarray(dose_index[name]), (n_days, steps_per_day)) for name in dose_amounts}
    _, ys = jax.lax.scan(one_day, (y0, pk0, sstate, jnp.float64(0.0)), idx, length=n_days)
    return jnp.concatenate([y0[None], ys])


@lru_cache(maxsize=32)
def population_solver(model: HCVModel, n_days: int, steps_per_day: int):
    """The jitted :func:`solve_population` for one model and grid, shared by all callers (compiled per batch shape)."""
    return jax.jit(lambda params, dose_index, dose_amounts: solve_population(model, params, dose_index, dose_amounts, n_days, steps_per_day))


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
