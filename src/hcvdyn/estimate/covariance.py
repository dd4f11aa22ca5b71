"""The covariance step of a population fit: the R matrix (Hessian of the OFV), the S matrix (sum of the
per-patient score outer products) and the covariance of the estimates they give.

With OFV = -2 ln L: R = d2 OFV / dx2 and S = sum_i (d OFV_i / dx)(d OFV_i / dx)'. The default covariance is the
sandwich R^-1 S R^-1, robust to a misspecified residual or random-effect model; "R" gives 2 R^-1 (the inverse
observed information) and "S" 4 S^-1, as NONMEM's $COVARIANCE MATRIX=R/S (Beal et al., NONMEM Users Guide
Part II). R is computed by central differences of the exact gradient (:mod:`hcvdyn.estimate.nlme`): the
gradient is exact, so the differences carry only the truncation error of the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["COVARIANCE_KINDS", "CovarianceStep", "covariance_step", "covariance_from", "hessian_from_gradient"]

COVARIANCE_KINDS = ("sandwich", "R", "S")


@dataclass(frozen=True)
class CovarianceStep:
    """The covariance step's outcome. ``ok`` False: ``covariance`` is None and ``message`` says which matrix
    failed and why; the standard errors are then NaN, never numbers as if it had worked."""

    kind: str
    ok: bool
    message: str
    labels: tuple[str, ...]
    R: np.ndarray
    S: np.ndarray
    covariance: np.ndarray | None
    condition_number: float  # of the correlation matrix of the estimates (largest / smallest eigenvalue)

    @property
    def stderr(self) -> np.ndarray:
        if self.covariance is None:
            return np.full(len(self.labels), math.nan)
        return np.sqrt(np.diag(self.covariance))

    @property
    def correlation(self) -> np.ndarray:
        if self.covariance is None:
            return np.full((len(self.labels),) * 2, math.nan)
        se = self.stderr
        return self.covariance / np.outer(se, se)

    def as_kind(self, kind: str) -> "CovarianceStep":
        """The same R and S matrices read as another kind of covariance ("sandwich", "R" or "S"), with no refit."""
        return covariance_from(self.R, self.S, self.labels, kind)


def hessian_from_gradient(gradient: Callable[[np.ndarray], np.ndarray], x: np.ndarray, rel_step: float = 1e-4) -> np.ndarray:
    """Symmetrised central differences of an exact gradient: step rel_step * max(|x_k|, 0.1) in entry k."""
    x = np.asarray(x, dtype=float)
    n = x.size
    out = np.zeros((n, n))
    for k in range(n):
        h = rel_step * max(abs(x[k]), 0.1)
        e = np.zeros(n)
        e[k] = h
        out[:, k] = (np.asarray(gradient(x + e)) - np.asarray(gradient(x - e))) / (2 * h)
    return 0.5 * (out + out.T)


def _explain(m: np.ndarray, labels, name: str) -> str | None:
    """Why ``m`` is not a usable positive-definite matrix, or None if it is."""
    if not np.all(np.isfinite(m)):
        bad = [labels[i] for i, row in enumerate(m) if not np.all(np.isfinite(row))]
        return f"{name} matrix has non-finite entries (rows {bad})"
    w, v = np.linalg.eigh(m)
    if w[0] <= 1e-12 * max(abs(w[-1]), 1e-300):
        worst = ", ".join(f"{labels[k]} ({v[k, 0]:+.2f})" for k in np.argsort(-np.abs(v[:, 0]))[:3])
        kind = "singular" if abs(w[0]) <= 1e-12 * abs(w[-1]) else "not positive definite"
        return f"{name} matrix is {kind} (smallest eigenvalue {w[0]:.3g}, largest {w[-1]:.3g}); the direction is mostly {worst}"
    return None


def covariance_step(R: np.ndarray, scores: np.ndarray, labels, kind: str = "sandwich") -> CovarianceStep:
    """Covariance of the estimates from R and the per-patient gradients ``scores`` (N, p) of the OFV."""
    scores = np.asarray(scores, dtype=float)
    return covariance_from(R, scores.T @ scores, labels, kind)


def covariance_from(R: np.ndarray, S: np.ndarray, labels, kind: str = "sandwich") -> CovarianceStep:
    """Covariance of the estimates from the R and S matrices (module docstring)."""
    if kind not in COVARIANCE_KINDS:
        raise ValueError(f"covariance: kind {kind!r} is not one of {COVARIANCE_KINDS}")
    labels = tuple(labels)
    R = np.asarray(R, dtype=float)
    S = np.asarray(S, dtype=float)
    fail = None
    if kind in ("sandwich", "R"):
        fail = _explain(R, labels, "R")
    if kind == "S":
        fail = _explain(S, labels, "S")
    if fail is not None:
        return CovarianceStep(kind, False, f"covariance step failed: {fail}", labels, R, S, None, math.nan)
    if kind == "S":
        cov = 4.0 * np.linalg.inv(S)
    else:
        r_inv = np.linalg.inv(R)
        cov = 2.0 * r_inv if kind == "R" else r_inv @ S @ r_inv
    cov = 0.5 * (cov + cov.T)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    if np.any(se <= 0):
        zero = [labels[i] for i in np.flatnonzero(se <= 0)]
        return CovarianceStep(kind, False, f"covariance step failed: zero variance for {zero}", labels, R, S, None, math.nan)
    w = np.linalg.eigvalsh(cov / np.outer(se, se))
    return CovarianceStep(kind, True, f"{kind} covariance", labels, R, S, cov, float(w[-1] / max(w[0], 1e-300)))
