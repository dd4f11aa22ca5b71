"""Diagnostics of a whole-trial fit: fitted curves with prediction bands, and a visual predictive check.

Prediction band (delta method). For patient i with local parameters theta_i (its own and the shared or
per-arm ones it uses) and their covariance Sigma_i (the block of the fit's covariance; fixed values have
none), the band of a new observation at time t is

    f(t) +/- z sqrt( J(t) Sigma_i J(t)^T + sigma^2 ),       J = d f / d theta_i  (jax.jacfwd, exact)

with f the model's log10 load and sigma the residual SD. It carries parameter uncertainty and residual
error. It is a linear approximation, fine where the Wald intervals are (compare the profile intervals); it
is too narrow where the first-order sensitivities cancel, e.g. when a load rebounds to its set point
(tests/test_diagnostics.py: day-84 SD 0.033 by the delta method vs 0.085 by Monte Carlo at SDs of 10-20%).

Visual predictive check (two-stage population). The individual estimates of each group (e.g.
non-responders, partial responders) are summarised by their mean and covariance on the scale on which the
parameter varies (log for positive parameters, identity for log10_V0 and parameters that can be negative);
shared and per-arm parameters are drawn from their estimates' covariance. Each replicate trial draws new
patients on the observed design (arm, group, sample times, assay limit), adds residual error, counts samples
below the limit at the limit (a drawn patient without a chronic steady state, R0 <= 1, is drawn again:
the population is conditioned on chronic infection), and computes the percentiles of each arm at each nominal time. The observed
percentiles are compared with the 95% range of the simulated ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hcvdyn.estimate.fit import TrialFit
from hcvdyn.model.dosing import Regimen, batch_dose_arrays, patient_regimens
from hcvdyn.model.hcv import HCVModel
from hcvdyn.solve.adaptive import log10_load
from hcvdyn.solve.options import NumericalError, SolverOptions

__all__ = ["summarize_vpc", "PatientBands", "prediction_bands", "VPC", "vpc"]


@lru_cache(maxsize=16)
def _curve_fns(model: HCVModel, names: tuple[str, ...], options: SolverOptions):
    """Jitted, vmapped log10 load and its Jacobian w.r.t. ``names``; one time grid for all patients."""

    def f(theta, fixed, doses, t):
        return log10_load(model, {**fixed, **dict(zip(names, theta))}, doses, t, options)

    axes = (0, 0, 0, None)
    return jax.jit(jax.vmap(f, in_axes=axes)), jax.jit(jax.vmap(jax.jacfwd(f), in_axes=axes))


def _design(model: HCVModel, fit: TrialFit, patients, regimens_by_arm, weight_kg: float):
    names = fit.local_names
    theta = np.array([[fit.patient_params[p.id][k] for k in names] for p in patients], dtype=float).reshape(len(patients), len(names))
    fixed = {k: np.array([fit.patient_params[p.id][k] for p in patients]) for k in model.params.names if k not in names}
    regs = {**{p.arm: () for p in patients}, **regimens_by_arm}  # an arm without regimens: no doses (constant mode)
    doses = batch_dose_arrays([patient_regimens(p, regs) for p in patients], model.pk_drugs, [weight_kg] * len(patients))
    return names, theta, fixed, doses


@dataclass(frozen=True)
class PatientBands:
    """Fitted log10 load (log10 IU/mL) on ``t_days`` per patient, with the prediction band at ``level``."""

    t_days: np.ndarray
    ids: tuple[str, ...]
    fitted: np.ndarray  # (n_patients, n_t)
    lower: np.ndarray
    upper: np.ndarray
    level: float

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """id -> (t, fitted, lower, upper), the form :func:`hcvdyn.results.plots_fit.plot_patient_fits` takes."""
        return {pid: (self.t_days, self.fitted[i], self.lower[i], self.upper[i]) for i, pid in enumerate(self.ids)}


def prediction_bands(
    model: HCVModel, fit: TrialFit, dataset, regimens_by_arm: Mapping[str, Sequence[Regimen]], t_days,
    weight_kg: float = 70.0, options: SolverOptions = SolverOptions(atol=1e-7), level: float = 0.95,
) -> PatientBands:
    """Fitted curves and delta-method prediction bands (module docstring) of every patient of a trial fit."""
    from scipy.stats import norm

    pats = list(dataset)
    t = np.asarray(t_days, dtype=float)
    names, theta, fixed, doses = _design(model, fit, pats, regimens_by_arm, weight_kg)
    f, jac = _curve_fns(model, names, options)
    pred = np.asarray(f(jnp.asarray(theta), fixed, doses, t))
    jmat = np.asarray(jac(jnp.asarray(theta), fixed, doses, t))  # (n, n_t, n_local)
    order = {n: i for i, n in enumerate(fit.values)}
    cov = np.nan_to_num(fit.covariance) if fit.covariance.size else np.zeros((len(order), len(order)))
    var = np.full(pred.shape, fit.sigma**2)
    for i, p in enumerate(pats):
        idx = [order.get(g, -1) for g in fit.patient_columns[p.id]]
        sub = np.zeros((len(idx), len(idx)))
        on = [k for k, j in enumerate(idx) if j >= 0]
        sub[np.ix_(on, on)] = cov[np.ix_([idx[k] for k in on], [idx[k] for k in on])]
        var[i] += np.einsum("tk,kl,tl->t", jmat[i], sub, jmat[i])
    z = norm.ppf(0.5 + level / 2)
    half = z * np.sqrt(var)
    return PatientBands(t, tuple(p.id for p in pats), pred, pred - half, pred + half, level)


@dataclass(frozen=True)
class VPC:
    """Observed and simulated percentiles per arm at the nominal sample times (log10 IU/mL)."""

    percentiles: tuple[float, ...]
    t_days: Mapping[str, np.ndarray]
    observed: Mapping[str, np.ndarray]  # arm -> (k, n_t)
    simulated: Mapping[str, np.ndarray]  # arm -> (k, 3, n_t): median, 2.5% and 97.5% over replicates
    n_replicates: int
    seed: int
    lloq_log10: float
    coverage: float  # fraction of observed percentiles inside their simulated 95% range
    redrawn: float  # fraction of simulated patients drawn again (no chronic steady state)

    def rows(self) -> list[dict]:
        out = []
        for arm, t in self.t_days.items():
            for k, q in enumerate(self.percentiles):
                for j, tj in enumerate(t):
                    s = self.simulated[arm][k, :, j]
                    out.append({"arm": arm, "day": float(tj), "percentile": q, "observed": float(self.observed[arm][k, j]),
                                "simulated_median": float(s[0]), "simulated_lo": float(s[1]), "simulated_hi": float(s[2])})
        return out


def _arm_percentiles(values, present, arms_of, arm, q):
    """(k, n_t) percentiles over the patients of ``arm`` with a sample at each time (NaN where none)."""
    rows = values[arms_of == arm]
    pres = present[arms_of == arm]
    out = np.full((len(q), values.shape[-1]), np.nan)
    for j in range(values.shape[-1]):
        if pres[:, j].any():
            out[:, j] = np.percentile(rows[pres[:, j], j], q)
    return out


def vpc(
    model: HCVModel, fit: TrialFit, dataset, regimens_by_arm: Mapping[str, Sequence[Regimen]], n_replicates: int = 200,
    seed: int = 0, percentiles=(10.0, 50.0, 90.0), weight_kg: float = 70.0, options: SolverOptions = SolverOptions(atol=1e-7),
) -> VPC:
    """Visual predictive check of a whole-trial fit (two-stage population, module docstring); seeded."""
    if n_replicates < 20:
        raise ValueError(f"vpc: n_replicates = {n_replicates}; at least 20 are needed for a 95% range")
    pats = list(dataset)
    names, theta, fixed, doses = _design(model, fit, pats, regimens_by_arm, weight_kg)
    times = np.unique(np.concatenate([p.t_days for p in pats]))
    present = np.array([np.isin(times, p.t_days) for p in pats])
    lloq = np.array([float(np.min(p.lloq_log10)) for p in pats])
    observed = np.full((len(pats), times.size), np.nan)
    for i, p in enumerate(pats):
        observed[i, np.searchsorted(times, p.t_days)] = p.log10_vl  # censored samples sit at their limit
    arms_of = np.array([p.arm for p in pats])
    groups = np.array([p.group for p in pats])
    rng = np.random.default_rng(seed)
    individual = [k for k in names if k in {e.name for e in fit.estimates.values() if e.kind == "individual"}]
    ind_idx = [names.index(k) for k in individual]
    declared = [model.params[k] for k in individual]  # each varies on its declared scale (Param.scale)
    group_stats = {}
    for g in dict.fromkeys(groups):
        est = np.column_stack([p.to_scale(theta[groups == g, j]) for j, p in zip(ind_idx, declared)])
        cov = np.cov(est, rowvar=False).reshape(len(individual), len(individual)) if est.shape[0] > 1 else np.zeros((len(individual),) * 2)
        group_stats[g] = (est.mean(0), cov)
    order = {n: i for i, n in enumerate(fit.values)}
    pop_names = [n for n in fit.values if fit.estimates[n].kind != "individual"]
    pop_idx = [order[n] for n in pop_names]
    pop_mean = np.array([fit.values[n] for n in pop_names])
    pop_cov = np.nan_to_num(fit.covariance[np.ix_(pop_idx, pop_idx)]) if pop_idx else np.zeros((0, 0))
    f, _ = _curve_fns(model, names, options)

    def draw(rows):
        """New parameters for the patients ``rows`` (bool mask): their group's distribution, shared draws."""
        th = theta.copy()
        for g, (mu, cov) in group_stats.items():
            sel = rows & (groups == g)
            if not sel.any():
                continue
            x = rng.multivariate_normal(mu, cov, size=int(sel.sum()), method="eigh")
            for c, (j, p) in enumerate(zip(ind_idx, declared)):
                th[sel, j] = np.clip(p.from_scale(x[:, c]), p.lower, p.upper)
        if pop_idx:
            g_draw = dict(zip(pop_names, rng.multivariate_normal(pop_mean, pop_cov, method="eigh")))
            for i in np.flatnonzero(rows):
                for j, gname in enumerate(fit.patient_columns[pats[i].id]):
                    if gname in g_draw:
                        th[i, j] = np.clip(g_draw[gname], model.params[names[j]].lower, model.params[names[j]].upper)
        return th

    sims = np.empty((n_replicates, len(pats), times.size))
    redrawn = 0
    for r in range(n_replicates):
        th = draw(np.ones(len(pats), bool))
        y = np.asarray(f(jnp.asarray(th), fixed, doses, times))
        for _ in range(50):  # no chronic steady state (R0 <= 1) or a failed solve: draw that patient again
            bad = ~np.all(np.isfinite(y), axis=1)
            if not bad.any():
                break
            redrawn += int(bad.sum())
            th[bad] = draw(bad)[bad]
            y = np.asarray(f(jnp.asarray(th), fixed, doses, times))
        else:
            raise NumericalError("vpc: simulated patients keep failing; the fitted population has no chronic steady state; "
                                 "check the fit's estimates (hcvdyn fit) before the VPC")
        y = y + fit.sigma * rng.standard_normal((len(pats), times.size))
        sims[r] = np.maximum(y, lloq[:, None])
    return summarize_vpc(observed, sims, present, arms_of, times, percentiles, seed, float(np.min(lloq)),
                         redrawn / (n_replicates * len(pats)))


def summarize_vpc(observed, sims, present, arms_of, times, percentiles, seed: int, lloq_log10: float, redrawn: float) -> VPC:
    """The :class:`VPC` of observed values (n_patients, n_t) and replicate simulations (n_rep, n_patients, n_t), both
    with censored samples at their limit; ``present`` marks each patient's sample times."""
    q = np.asarray(percentiles, float)
    n_replicates = sims.shape[0]
    obs_p, sim_p, t_by_arm = {}, {}, {}
    inside, total = 0, 0
    for arm in dict.fromkeys(arms_of):
        keep = present[arms_of == arm].any(0)
        t_by_arm[arm] = times[keep]
        obs_p[arm] = _arm_percentiles(observed, present, arms_of, arm, q)[:, keep]
        per_rep = np.stack([_arm_percentiles(sims[r], present, arms_of, arm, q)[:, keep] for r in range(n_replicates)])
        sim_p[arm] = np.stack([np.median(per_rep, 0), np.percentile(per_rep, 2.5, 0), np.percentile(per_rep, 97.5, 0)], axis=1)
        ok = (obs_p[arm] >= sim_p[arm][:, 1] - 1e-9) & (obs_p[arm] <= sim_p[arm][:, 2] + 1e-9)
        inside += int(ok.sum())
        total += ok.size
    return VPC(tuple(float(x) for x in q), t_by_arm, obs_p, sim_p, n_replicates, seed, lloq_log10, inside / max(total, 1), redrawn)
