"""The optimiser around every fit: bounds checked once, seeded multi-start draws, patients padded to shared
shapes, the best of several lmfit least-squares runs.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np

from hcvdyn.model.hcv import HCVModel
from hcvdyn.solve.options import NumericalError, bucket_size, pad_last

__all__ = ["check_bounds", "draw_start", "draw_starts", "pad_patients", "best_of", "minimize_least_squares", "blas_threads"]


def check_bounds(model: HCVModel, free, bounds, starts, where: str) -> dict[str, tuple[float, float]]:
    """Validated narrowed bounds: only for free parameters, inside the declared range, containing the start.
    The one check of bounds, for fit specifications and for :class:`hcvdyn.estimate.design.FitDesign` alike."""
    bounds = dict(bounds or {})
    for k, (lo, hi) in bounds.items():
        at = f"{where}: [bounds] {k}"
        if k not in free:
            raise ValueError(f"{at}: {k!r} is not a free parameter")
        p = model.params[k]
        if not (p.lower <= lo < hi <= p.upper):
            raise ValueError(f"{at}: [{lo}, {hi}] must satisfy {p.lower} <= lower < upper <= {p.upper} ({p.unit})")
        if not (lo <= starts[k] <= hi):
            raise ValueError(f"{at}: start {starts[k]} outside [{lo}, {hi}]")
    return bounds



def draw_start(p, first: float, lo: float, hi: float, rng) -> float:
    """One start within [lo, hi]: log-uniform over first/10..first*10 (log-scale), else first +/- a quarter of the range."""
    if p.scale == "log":
        lo, hi = max(lo, first / 10), min(hi, first * 10)
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    width = 0.25 * (hi - lo)
    return float(np.clip(first + rng.uniform(-width, width), lo, hi))



def draw_starts(model: HCVModel, free: Sequence[str], first: Mapping[str, float], n: int, seed: int,
            bounds: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """First row = ``first``; the rest drawn within each parameter's bounds (see :func:`draw_start`)."""
    rng = np.random.default_rng(seed)
    bounds = bounds or {}
    rows = [[first[k] for k in free]]
    for _ in range(n - 1):
        rows.append([draw_start(model.params[k], first[k], *bounds.get(k, (model.params[k].lower, model.params[k].upper)), rng)
                     for k in free])
    return np.array(rows)



def pad_patients(dataset):
    """(t, y, censored, lloq, mask) arrays, shape (n_patients, n), n the :func:`~hcvdyn.solve.options.bucket_size`
    of the longest series (the solver's own padding of sample times): datasets whose longest series differ a little
    share compiled programs. Padded samples repeat the patient's last time, so no solve runs past its last sample,
    and are masked out."""
    n = bucket_size(max(p.n_obs for p in dataset))
    t, y, c, lq, mask = (np.zeros((len(dataset), n)) for _ in range(5))
    for i, p in enumerate(dataset):
        k = p.n_obs
        t[i] = pad_last(np.asarray(p.t_days, float), n)
        y[i, :k], c[i, :k], lq[i, :k], mask[i, :k] = p.log10_vl, p.censored, p.lloq_log10, 1
    return t, y, c.astype(bool), lq, mask.astype(bool)



def best_of(residual, jacobian, starts, max_nfev: int, where: str, polish=None):
    """Fit from each start (lmfit Parameters), then ``polish`` it if given; (best result, -2 log L per start).

    A start whose residuals turn non-finite (a failed solve) scores inf; RuntimeError when every start fails.
    """
    best, objectives, last_error = None, [], ""
    for start in starts:
        try:
            out = minimize_least_squares(residual, jacobian, start, max_nfev)
        except ValueError as e:
            objectives.append(math.inf)
            last_error = str(e)
            continue
        if polish is not None:
            out = polish(out)
        objectives.append(float(out.chisqr))
        if best is None or out.chisqr < best.chisqr:
            best = out
    if best is None:
        raise NumericalError(f"{where}: every start failed ({last_error}); try other starting values, narrower "
                             "[bounds] or a larger max_nfev")
    return best, objectives



def minimize_least_squares(residual, jacobian, pars, max_nfev, ftol: float = 1e-8):
    """One lmfit least-squares run (scipy trust-region reflective) with the exact Jacobian; it stops when an
    iteration lowers the sum of squares by less than ``ftol`` times it (scipy's default 1e-8).

    The trust region is in the parameters' own units (x_scale = 1), not scaled by the Jacobian's column norms
    ("jac"). With that scaling a parameter the data barely inform near its bound (the delta of a patient whose load
    hardly falls, bounded at 1e-3) got a region so wide that the reflective steps crept toward the bound for some
    50 iterations. Measured in docs/fitting.md ("The optimiser"): fewer evaluations to the same optima on the
    bundled trial and benchmarks/fit.py; parameters far from 1 (Tmax near 2e7, beta near 3e-7) fit as with "jac"
    (tests/test_fit.py).

    Its linear algebra (an SVD of the Jacobian per iteration, a few hundred columns) runs on ``$HCVDYN_BLAS_THREADS``
    BLAS threads, default one, for the whole process while the fit runs: on 2 cores OpenBLAS's threads made each
    SVD of the bundled trial's Jacobian 2.5 times slower alone and 5.5 times slower beside another busy process
    (benchmarks/blas_threads.py). Set the variable higher for Jacobians of thousands of columns on many cores."""
    import lmfit
    from threadpoolctl import threadpool_limits

    mini = lmfit.Minimizer(residual, pars, scale_covar=False, nan_policy="raise")
    with threadpool_limits(limits=blas_threads(), user_api="blas"):
        return mini.minimize(method="least_squares", jac=jacobian, x_scale=1.0, max_nfev=max_nfev, ftol=ftol)


def blas_threads() -> int:
    """BLAS threads for the least-squares fits: ``$HCVDYN_BLAS_THREADS`` (a positive integer), default 1."""
    raw = os.environ.get("HCVDYN_BLAS_THREADS", "1").strip()
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"HCVDYN_BLAS_THREADS = {raw!r}: give a positive integer (the BLAS threads of a least-squares fit)")
    return n
