"""The outer objective of a population fit: OFV(x) of :mod:`hcvdyn.estimate.nlme`, its exact gradient and the
conditional modes, evaluated once per point, with the modes warm-started, polished by exact Newton steps and
checked against a second mode."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

__all__ = ["PopulationObjective", "POLISH_TOL", "MODE_TOL"]

POLISH_TOL = 1e-5  # a mode is settled when the exact Newton step would lower g_i by less than this
POLISH_STEPS = 8  # exact Newton steps (or halvings) per evaluation, at most
MODE_TOL = 1e-4  # a second conditional mode counts when its g_i is lower by more than this
MODE_DISTINCT = 1e-3  # ... and is another mode when some random effect differs by more than this


class PopulationObjective:
    """OFV(x), its gradient and the modes, evaluated once per point; the modes of the best point so far warm-start
    the next. A point where some patient's mode cannot be found has OFV = inf, and ``failed`` names those patients.
    With the exact gradient the modes are settled by exact Newton steps (:meth:`settle`), so that the OFV and its
    gradient describe the same function; :meth:`second_modes` looks for a second mode from eta = 0.

    gradient: "exact" (JAX through the solver and the implicit derivative of the modes, :mod:`hcvdyn.estimate.nlme`)
    or "differences" (central differences of the OFV, modes found again at each point: the usual approach of
    other tools, kept for comparison; ``benchmarks/nlme.py``).
    """

    def __init__(self, engine, arrays, ids: tuple[str, ...], gradient: str = "exact"):
        if gradient not in ("exact", "differences"):
            raise ValueError(f"gradient {gradient!r}: use 'exact' or 'differences'")
        self.engine, self.arrays, self.ids, self.how = engine, arrays, tuple(ids), gradient
        self.best = (math.inf, np.zeros((len(self.ids), engine.layout.n_eta)))
        self.failed: tuple[str, ...] = ()
        self.unsettled: tuple[str, ...] = ()  # patients whose mode the last evaluation could not polish (settle)
        self.terms: tuple[np.ndarray, np.ndarray] | None = None  # (OFV_i, g_i) of the last point (exact gradient only)
        self._last: tuple[bytes, tuple, tuple, tuple | None] | None = None
        self.evaluations = 0

    def _modes(self, xj):
        eng, arrays = self.engine, self.arrays
        eta, ok, _ = (np.asarray(a) for a in eng.modes(xj, arrays, jnp.asarray(self.best[1])))
        if not ok.all():  # retry those patients from eta = 0
            eta0, ok0, _ = (np.asarray(a) for a in eng.modes(xj, arrays, jnp.zeros_like(jnp.asarray(eta))))
            eta = np.where((~ok & ok0)[:, None], eta0, eta)
            ok = ok | ok0
        return eta, ok

    def _per_patient(self, x) -> np.ndarray | None:
        """OFV_i at x without derivatives (None where a mode is not found)."""
        xj = jnp.asarray(x)
        eta, ok = self._modes(xj)
        return np.asarray(self.engine.conditional(xj, self.arrays, jnp.asarray(eta))[2]) if ok.all() else None

    def _objective(self, xj, eta) -> tuple[np.ndarray, ...]:
        """The engine's objective at modes ``eta``, flat, as numpy: OFV_i, dOFV_i/dx, Newton point, decrement, g_i."""
        per, grads, (point, dec, g, _, _) = self.engine.objective(xj, self.arrays, jnp.asarray(eta))
        return tuple(np.asarray(a) for a in (per, grads, point, dec, g))

    def settle(self, xj, eta) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(OFV_i, dOFV_i/dx, modes, g_i, unsettled) with each mode moved by exact Newton steps.

        Levenberg-Marquardt stops on the Gauss-Newton decrement. Where g_i's exact curvature along some direction
        is far below Gauss-Newton's (a poorly fitted patient whose residuals bend the surface), that mode can still
        lie well off the true one; the objective's own exact Newton step then moves it, the OFV and its gradient
        stop agreeing, and the outer fit stalls. Such modes are moved to the Newton point (the step halved while
        g_i rises or the Hessian there is not positive definite) until the exact decrement is below POLISH_TOL,
        for at most POLISH_STEPS steps or halvings; a step that lowers g_i by less than 1e-10 ends a patient's
        steps (the solver's noise). ``unsettled`` marks the patients left above POLISH_TOL.
        """
        per, grads, point, dec, g = self._objective(xj, eta)
        eta = np.array(eta)
        t = np.ones(len(eta))
        stalled = np.zeros(len(eta), bool)
        for _ in range(POLISH_STEPS):
            try_ = ~(dec < POLISH_TOL) & np.isfinite(dec) & ~stalled
            if not try_.any():
                break
            cand = np.where(try_[:, None], eta + t[:, None] * (point - eta), eta)
            per2, grads2, point2, dec2, g2 = self._objective(xj, cand)
            take = try_ & (g2 <= g + 1e-9) & np.isfinite(dec2)
            stalled |= take & (g - g2 < 1e-10)
            t = np.where(try_ & ~take, t / 2, 1.0)
            per, grads, eta = np.where(take, per2, per), np.where(take[:, None], grads2, grads), np.where(take[:, None], cand, eta)
            point, dec, g = np.where(take[:, None], point2, point), np.where(take, dec2, dec), np.where(take, g2, g)
        return per, grads, eta, g, ~(dec < POLISH_TOL)

    def evaluate(self, x) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(OFV, gradient, per-patient gradients (N, p), modes (N, q)) at x (lmfit's external values)."""
        x = np.asarray(x, dtype=float)
        if self._last is not None and self._last[0] == x.tobytes():
            self.unsettled, self.terms = self._last[2], self._last[3]
            return self._last[1]
        self.unsettled, self.terms = (), None
        xj = jnp.asarray(x)
        eta, ok = self._modes(xj)
        self.evaluations += 1
        if not ok.all():
            self.failed = tuple(pid for pid, good in zip(self.ids, ok) if not good)
            out = (math.inf, np.full(x.size, np.nan), np.full((len(ok), x.size), np.nan), eta)
        else:
            if self.how == "exact":
                per, grads, eta, g, unsettled = self.settle(xj, eta)
                self.unsettled = tuple(pid for pid, u in zip(self.ids, unsettled) if u)
                self.terms = (per, g)
            else:
                per = np.asarray(self.engine.conditional(xj, self.arrays, jnp.asarray(eta))[2])
                grads = np.full((len(ok), x.size), np.nan)
                for k in range(x.size):
                    h = 1e-4 * max(1.0, abs(x[k]))  # above the modes' noise (OFV_i to ~1e-6)
                    up, down = self._per_patient(x + h * np.eye(x.size)[k]), self._per_patient(x - h * np.eye(x.size)[k])
                    if up is not None and down is not None:
                        grads[:, k] = (up - down) / (2 * h)
            value = float(per.sum())
            out = (value if math.isfinite(value) else math.inf, grads.sum(axis=0), grads, eta)
            if value < self.best[0]:
                self.best = (value, eta)
        self._last = (x.tobytes(), out, self.unsettled, self.terms)
        return out

    def second_modes(self, x) -> tuple[np.ndarray, tuple[str, ...], dict[str, tuple[float, float]]]:
        """Each patient's mode found again from eta = 0, against the mode at x (a conditional density with two
        modes makes FOCE-I and Laplace follow whichever the warm starts found; the one with the lower g_i defines
        the objective). Returns (modes with the lower of the two put in, ids of the patients whose mode that
        changed, rivals): rivals maps each patient whose other mode is distinct but not lower to (g_i, OFV_i)
        there minus at x. Where a rival's g_i is close, the OFV jumps by about that OFV_i difference as x moves
        the two past each other."""
        xj = jnp.asarray(x)
        eta = self.evaluate(x)[3]
        per, g = self.terms if self.terms is not None else self._objective(xj, eta)[::4]
        eta0, ok0, _ = (np.asarray(a) for a in self.engine.modes(xj, self.arrays, jnp.zeros_like(jnp.asarray(eta))))
        per0, _, eta0, g0, unsettled0 = self.settle(xj, eta0)  # compared only where settled: a mode, not a way point
        ok0 = ok0 & ~unsettled0
        lower = ok0 & (g0 < g - MODE_TOL)
        other = ok0 & ~lower & (np.abs(eta0 - eta).max(axis=1) > MODE_DISTINCT)
        rivals = {pid: (float(g0[i] - g[i]), float(per0[i] - per[i])) for i, pid in enumerate(self.ids) if other[i]}
        return np.where(lower[:, None], eta0, eta), tuple(pid for pid, low in zip(self.ids, lower) if low), rivals

    def restart_modes(self, eta) -> None:
        """Warm-start the next evaluations from ``eta`` (forgetting the cached point)."""
        self.best, self._last = (math.inf, np.asarray(eta, dtype=float)), None

    def value(self, x) -> float:
        return self.evaluate(x)[0]

    def gradient(self, x) -> np.ndarray:
        return self.evaluate(x)[1]
