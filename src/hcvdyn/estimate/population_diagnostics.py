"""Diagnostics of a population fit: per-sample PRED, IPRED, CWRES and NPDE, and the visual predictive check
simulated from the fitted population (random effects drawn from Omega, residuals from sigma).

PRED: the prediction at eta = 0 (the typical patient of that arm and covariates); IPRED: at the empirical Bayes
estimate eta^. CWRES (Hooker, Staatz & Karlsson 2007, Pharm Res 24:2187): the model is linearised in eta at
eta^, E[y] ~ f(eta^) - A eta^ and Cov[y] ~ A Omega A' + sigma^2 I, and the observed samples' residuals are
decorrelated by the Cholesky factor of that covariance. NPDE (Brendel et al. 2006, Pharm Res 23:2036; Comets,
Brendel & Mentre 2008, Comput Methods Programs Biomed 90:154): each patient's observed samples and ``n_sim``
simulated replicates are decorrelated by the replicates' mean and covariance; the prediction discrepancy is the
fraction of replicates below the observation and NPDE its normal quantile. Censored samples get neither CWRES nor
NPDE (NaN): they enter the VPC at their limit.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri

from hcvdyn.estimate.diagnostics import VPC, summarize_vpc
from hcvdyn.solve.options import NumericalError

__all__ = ["sample_rows", "population_vpc", "curve_rows"]


def _x(fit) -> jnp.ndarray:
    return jnp.asarray([fit.x[v.label] for v in fit.values])


def _draw_predictions(fit, rng, n: int, what: str) -> np.ndarray:
    """(n, N, n_samples) predictions with eta drawn from N(0, Omega); a failed solve (no chronic steady state for
    that draw) is drawn again, up to 50 times."""
    problem = fit.problem
    x, arrays = _x(fit), problem.arrays
    chol = np.linalg.cholesky(fit.omega)
    n_pat, q = fit.eta.shape
    out = np.empty((n, n_pat, arrays.y.shape[1]))
    redrawn = 0
    for r in range(n):
        eta = rng.standard_normal((n_pat, q)) @ chol.T
        f = np.asarray(problem.engine.predict_batch(x, arrays, jnp.asarray(eta)))
        for _ in range(50):
            bad = ~np.all(np.isfinite(f), axis=1)
            if not bad.any():
                break
            redrawn += int(bad.sum())
            eta[bad] = rng.standard_normal((int(bad.sum()), q)) @ chol.T
            f = np.asarray(problem.engine.predict_batch(x, arrays, jnp.asarray(eta)))
        else:
            raise NumericalError(f"{what}: simulated patients keep failing (no chronic steady state at the drawn random effects)")
        out[r] = f
    return out, redrawn / (n * n_pat)


def sample_rows(fit, dataset, n_sim: int = 500, seed: int = 0) -> list[dict]:
    """One row per sample: id, arm, day, observed value, censored flag, PRED, IPRED, IWRES, CWRES, NPDE (module docstring)."""
    problem = fit.problem
    x, arrays = _x(fit), problem.arrays
    n_pat, q = fit.eta.shape
    pred = np.asarray(problem.engine.predict_batch(x, arrays, jnp.zeros((n_pat, q))))
    ipred, A = (np.asarray(a) for a in problem.engine.linearised(x, arrays, jnp.asarray(fit.eta)))
    sims, _ = _draw_predictions(fit, np.random.default_rng(seed), n_sim, "sample_rows")
    sims = sims + fit.sigma * np.random.default_rng(seed + 1).standard_normal(sims.shape)
    rows = []
    for i, p in enumerate(dataset):
        n = p.n_obs
        obs = ~p.censored
        cwres = np.full(n, math.nan)
        npde = np.full(n, math.nan)
        if obs.any():
            y = p.log10_vl[obs]
            a = A[i, :n][obs]
            mean = ipred[i, :n][obs] - a @ fit.eta[i]
            cov = a @ fit.omega @ a.T + fit.sigma**2 * np.eye(obs.sum())
            cwres[obs] = np.linalg.solve(np.linalg.cholesky(cov), y - mean)
            s = sims[:, i, :n][:, obs]
            m = s.mean(axis=0)
            c = np.atleast_2d(np.cov(s, rowvar=False))
            chol = np.linalg.cholesky(c + 1e-12 * np.eye(c.shape[0]))
            dec_obs = np.linalg.solve(chol, y - m)
            dec_sim = np.linalg.solve(chol, (s - m).T).T
            pde = (np.sum(dec_sim < dec_obs, axis=0) + 0.5) / (n_sim + 1)  # kept inside (0, 1)
            npde[obs] = ndtri(pde)
        for j in range(n):
            rows.append({"id": p.id, "arm": p.arm, "day": float(p.t_days[j]), "log10_vl": float(p.log10_vl[j]),
                         "censored": bool(p.censored[j]), "pred": float(pred[i, j]), "ipred": float(ipred[i, j]),
                         "iwres": float((p.log10_vl[j] - ipred[i, j]) / fit.sigma) if obs[j] else math.nan,
                         "cwres": float(cwres[j]), "npde": float(npde[j])})
    return rows


def population_vpc(fit, dataset, n_replicates: int = 200, seed: int = 0, percentiles=(10.0, 50.0, 90.0)) -> VPC:
    """Visual predictive check from the fitted population model: ``n_replicates`` trials of the same patients,
    designs and arms, eta ~ N(0, Omega), residuals N(0, sigma^2), censored at each sample's limit; seeded."""
    if n_replicates < 20:
        raise ValueError(f"population_vpc: n_replicates = {n_replicates}; at least 20 are needed for a 95% range")
    pats = list(dataset)
    times = np.unique(np.concatenate([p.t_days for p in pats]))
    present = np.array([np.isin(times, p.t_days) for p in pats])
    observed = np.full((len(pats), times.size), np.nan)
    rng = np.random.default_rng(seed)
    f, redrawn = _draw_predictions(fit, rng, n_replicates, "population_vpc")
    sims = np.full((n_replicates, len(pats), times.size), np.nan)
    for i, p in enumerate(pats):
        cols = np.searchsorted(times, p.t_days)
        observed[i, cols] = p.log10_vl
        y = f[:, i, : p.n_obs] + fit.sigma * rng.standard_normal((n_replicates, p.n_obs))
        sims[:, i, cols] = np.maximum(y, p.lloq_log10)
    arms_of = np.array([p.arm for p in pats])
    lloq = float(min(np.min(p.lloq_log10) for p in pats))
    return summarize_vpc(observed, sims, present, arms_of, times, percentiles, seed, lloq, redrawn)


def curve_rows(fit, dataset, regimens_by_arm, t_days) -> list[dict]:
    """curves.csv of a population fit: per patient, the individual (IPRED, at eta^) and population (PRED, eta = 0)
    predictions on the grid ``t_days``."""
    from hcvdyn.model.dosing import patient_regimens
    from hcvdyn.solve.adaptive import simulate_batch

    problem = fit.problem
    model = problem.model
    pats = list(dataset)
    beta = np.array([fit.x[v.label] for v in fit.values[: problem.layout.n_beta]])
    typical = problem.individual_values(beta, np.zeros_like(fit.eta))
    regs = [patient_regimens(p, regimens_by_arm, "curve_rows") for p in pats]
    opts = problem.design.fit.options
    weights = [problem.design.fit.weight_kg] * len(pats)
    individual = {k: np.array([fit.patient_params[p.id][k] for p in pats]) for k in fit.patient_params[pats[0].id]}
    ipred = simulate_batch(model, individual, regs, t_days, weights, opts).log10_vl
    pred = simulate_batch(model, {**individual, **typical}, regs, t_days, weights, opts).log10_vl
    return [{"id": p.id, "arm": p.arm, "day": float(t), "ipred": float(ipred[i, j]), "pred": float(pred[i, j])}
            for i, p in enumerate(pats) for j, t in enumerate(t_days)]
