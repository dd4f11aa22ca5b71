"""Solver options, the trajectory returned by every solver, and the checks shared by the solvers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import diffrax
import numpy as np

from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import check_values

__all__ = ["NumericalError", "bucket_size", "pad_last", "pad_doses", "SolverOptions", "Trajectory", "check_times", "full_params"]


class NumericalError(RuntimeError):
    """A solve, fit or covariance step failed for numerical reasons (not bad input); the message names the step and
    what to try. The command line exits with status 1 on it, and 2 on user errors."""


LN10 = math.log(10.0)


@dataclass(frozen=True)
class SolverOptions:
    """Options of the diffrax solve.

    rtol, atol: tolerances on the ln-scale states. On ln-states atol is the relative error of each original
        state, whatever its size (1e-8 on ln V is 4e-9 log10), so rtol defaults to 0: an rtol would be
        multiplied by |ln T| ~ 11 and let errors of the slow T and I equations accumulate over months.
    jump_ts: hand dose times (and the constant-efficacy onset t0 and end t_end) to the step-size controller.
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
        if self.solver not in SOLVERS:
            raise ValueError(f"SolverOptions.solver = {self.solver!r}; choose one of {sorted(SOLVERS)}")



SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8, "kvaerno5": diffrax.Kvaerno5}



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



def bucket_size(n: int) -> int:
    """The padded length for ``n`` sample times or doses: a power of two, at least 8. Arrays padded to these few
    sizes share compiled solvers, so a new sampling schedule or regimen rarely compiles again."""
    return max(8, 1 << (max(int(n), 1) - 1).bit_length())


def pad_last(x: np.ndarray, length: int, axis: int = -1) -> np.ndarray:
    """``x`` padded along ``axis`` to ``length`` by repeating its last entry (a repeated sample time or dose time)."""
    extra = length - x.shape[axis]
    if extra <= 0:
        return x
    last = np.take(x, [-1], axis=axis)
    return np.concatenate([x, np.repeat(last, extra, axis=axis)], axis=axis)


def pad_doses(doses):
    """Dose arrays (drug -> (times, amounts), last axis doses) padded to :func:`bucket_size` of their length:
    repeated last time, zero amount, which changes nothing."""
    out = {}
    for k, (t, a) in doses.items():
        n = np.shape(t)[-1]
        m = bucket_size(n)
        out[k] = (pad_last(np.asarray(t, float), m), np.concatenate([np.asarray(a, float), np.zeros((*np.shape(a)[:-1], m - n))], axis=-1))
    return out


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



def full_params(model: HCVModel, params: Mapping[str, float] | None, where: str) -> dict[str, float]:
    """All of ``model``'s parameters: its defaults updated by ``params``, validated against the table (``where`` names the caller)."""
    params = dict(params or {})
    check_values(model.params, params, where=where)
    full = {**model.params.defaults(), **{k: float(v) for k, v in params.items()}}
    model.check_steady_state(full, where=where)
    return full
