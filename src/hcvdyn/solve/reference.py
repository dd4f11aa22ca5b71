"""The scipy reference solver (LSODA with the integration split at every dose), independent of diffrax: the
cross-check of the JAX paths.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from hcvdyn.model.dosing import Regimen, dose_arrays
from hcvdyn.model.hcv import HCVModel
from hcvdyn.solve.adaptive import jit_rhs
from hcvdyn.solve.options import NumericalError, Trajectory, check_times, full_params

__all__ = ["simulate_scipy"]


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
    split at every dose time, at t0 and at t_end, so that the reference integrator never steps across a kink.
    """
    from scipy.integrate import solve_ivp

    full = full_params(model, params, where=f"simulate_scipy({model.name})")
    t = check_times(t_obs)
    doses = dose_arrays(regimens, model.pk_drugs, weight_kg)
    jparams = {k: jnp.float64(v) for k, v in full.items()}
    pk_data = model.pk_setup(jparams, {k: (jnp.asarray(a), jnp.asarray(b)) for k, (a, b) in doses.items()})
    _, _, s = model.steady_state(jparams)
    args = (jparams, pk_data, s)
    rhs = jit_rhs(model)
    fun = lambda tt, y: np.asarray(rhs(tt, y, args))  # noqa: E731
    breaks = {0.0, float(t[-1])}
    for d in model.pk_drugs:
        breaks.update(float(x) for x in doses[d][0] if 0 < x < t[-1])
    if model.constant_drugs:
        breaks.update(full[k] for k in ("t0", "t_end") if 0 < full[k] < t[-1])
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
            raise NumericalError(f"simulate_scipy({model.name}): solve_ivp failed on [{a}, {b}]: {res.message}")
        nfev += res.nfev
        out[mask] = res.y.T[: mask.sum()]
        y = res.y[:, -1]
    return Trajectory.from_log_states(t, out, True, nfev)
