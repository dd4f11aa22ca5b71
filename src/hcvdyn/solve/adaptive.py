"""Solving the models: diffrax with 64-bit floats, jit and vmap over patients, exact forward-mode gradients.

The gradients are those of the solution on the steps the solver took: step sizes are chosen, not differentiated
(diffrax holds the error estimate out of differentiation, and :func:`solve_log_states` the step cap), as in
forward sensitivity analysis. Against central differences they agree to the solver's tolerance.

The one numerical core is :func:`solve_log_states` (pure, traceable). The public functions validate
their inputs (names, values, times) at the boundary and call compiled versions cached per
(model, options), so a batch of patients with the same array shapes compiles once.
"""


from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from hcvdyn.model.dosing import Regimen, batch_dose_arrays, dose_arrays
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import check_values
from hcvdyn.solve.options import (
    LN10,
    SOLVERS,
    NumericalError,
    SolverOptions,
    Trajectory,
    bucket_size,
    check_times,
    full_params,
    pad_doses,
    pad_last,
)

__all__ = [
    "SolverOptions",
    "Trajectory",
    "solve_log_states",
    "log10_load",
    "simulate",
    "simulate_batch",
    "prepare_batch",
    "batch_solver",
    "check_times",
    "exposure",
    "LN10",
]




class _NaNRejecting(diffrax.AbstractAdaptiveStepSizeController):
    """An adaptive controller whose steps with a NaN error estimate (or an infinite candidate state) are rejected and
    shrunk, as those with an infinite error are (diffrax's PID controller carries a NaN into its next step size and
    never recovers).

    An explicit step far beyond the stability limit can overflow: the first step after a potent constant efficacy
    stops (t_end), when ln V relaxes at rate c / (1 - eps) (124 /day at eps = 0.95) and the step size is still the
    one of the slow decline before it; or a step across the onset t0 when the jump times are not given
    (SolverOptions.jump_ts = False).
    """

    inner: diffrax.AbstractAdaptiveStepSizeController

    @property
    def rtol(self):
        return self.inner.rtol

    @property
    def atol(self):
        return self.inner.atol

    @property
    def norm(self):
        return self.inner.norm

    def wrap(self, direction):
        return _NaNRejecting(self.inner.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        return self.inner.init(terms, t0, t1, y0, dt0, args, func, error_order)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        y_error = jax.tree_util.tree_map(lambda e: jnp.where(jnp.isnan(e), jnp.inf, e), y_error)
        # an infinite candidate times rtol = 0 would make the error's scale NaN: scale by y0 there instead
        y1_candidate = jax.tree_util.tree_map(lambda a, b: jnp.where(jnp.isfinite(b), b, a), y0, y1_candidate)
        return self.inner.adapt_step_size(t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state)


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
    # the cap is a choice of steps, not a function to differentiate: without its derivative the step sizes and times
    # carry no tangents (diffrax stops them at the error estimate too), and derivatives of the solve compile smaller
    dtmax = jax.lax.stop_gradient(options.stability_cap / jnp.maximum(params["c"], fastest))
    controller = _NaNRejecting(diffrax.PIDController(rtol=options.rtol, atol=options.atol, dtmax=dtmax))
    if options.jump_ts:
        jumps = [jnp.asarray(doses[d][0], dtype=jnp.float64) for d in model.pk_drugs]
        if model.constant_drugs:
            jumps.append(jnp.stack([params["t0"], params["t_end"]]))
        if jumps:
            controller = diffrax.ClipStepSizeController(controller, jump_ts=jnp.concatenate(jumps))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(model.rhs),
        SOLVERS[options.solver](),
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
def jit_rhs(model: HCVModel):
    return jax.jit(model.rhs)


@lru_cache(maxsize=64)
def _compiled(model: HCVModel, options: SolverOptions, batched: bool):
    fn = lambda params, doses, t_obs: solve_log_states(model, params, doses, t_obs, options)  # noqa: E731
    if batched:
        fn = jax.vmap(fn, in_axes=(0, 0, None))
    return jax.jit(fn)


def simulate(
    model: HCVModel,
    params: Mapping[str, float] | None = None,
    regimens: Sequence[Regimen] = (),
    t_obs: Sequence[float] = (),
    weight_kg: float = 70.0,
    options: SolverOptions = SolverOptions(),
) -> Trajectory:
    """Simulate one patient: parameters (defaults for those not given), regimens and sampling times."""
    full = full_params(model, params, where=f"simulate({model.name})")
    t = check_times(t_obs)
    doses = pad_doses(dose_arrays(regimens, model.pk_drugs, weight_kg))  # bucketed shapes: few compilations
    ys, ok, steps = _compiled(model, options, False)(full, doses, pad_last(t, bucket_size(t.size)))
    traj = Trajectory.from_log_states(t, np.asarray(ys)[: t.size], ok, steps)
    if not bool(traj.ok):
        raise NumericalError(
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
    ys, ok, steps = batch_solver(model, options)(full, pad_doses(doses), pad_last(t, bucket_size(t.size)))
    ys = np.where(np.asarray(ok)[:, None, None], np.asarray(ys)[:, : t.size], np.nan)
    return Trajectory.from_log_states(t, ys, ok, steps)


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
    full = full_params(model, params, where=f"exposure({model.name})")
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


