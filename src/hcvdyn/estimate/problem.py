"""The whole-trial least-squares problem: per-patient and shared (per-arm) parameters mapped to one residual
vector with a block Jacobian.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from hcvdyn.estimate.likelihood import jacobian_and_residuals_fn, once_per_point
from hcvdyn.estimate.optimize import check_bounds, minimize_least_squares, pad_patients
from hcvdyn.model.dosing import Regimen
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import check_values
from hcvdyn.solve.options import SolverOptions

__all__ = ["build_trial_problem"]


def build_trial_problem(
    model: HCVModel,
    dataset,
    regimens_by_arm: Mapping[str, Sequence[Regimen]],
    individual: Sequence[str],
    shared: Sequence[str] | Mapping[str, Sequence[str]] = (),
    per_arm: Sequence[str] | Mapping[str, Sequence[str]] = (),
    params: Mapping[str, float] | None = None,
    sigma: float = 0.2,
    weight_kg: float = 70.0,
    options: SolverOptions = SolverOptions(atol=1e-7),
    outside: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
):
    """(Parameters, residual(pars), jacobian(pars), n_obs, local(pars)) of a whole-trial M3 problem (see :func:`fit_trial`).

    local(pars) gives every parameter of every patient (patient id -> name -> value).

    jacobian returns the derivatives for the varying parameters only, in lmfit's ``var_names`` order.
    """
    import lmfit

    arms = tuple(dict.fromkeys(p.arm for p in dataset))
    if isinstance(per_arm, Mapping):
        estimated_in = {k: tuple(v) for k, v in per_arm.items()}
    else:
        estimated_in = {k: arms for k in per_arm}
    for k, in_arms in estimated_in.items():
        unknown_arms = [a for a in in_arms if a not in arms]
        if unknown_arms:
            raise ValueError(f"fit_trial: per_arm {k!r} names arm(s) {unknown_arms} not in the data (arms: {list(arms)})")
    shared_in = {k: tuple(v) for k, v in shared.items()} if isinstance(shared, Mapping) else {k: arms for k in shared}
    for k, in_arms in shared_in.items():
        unknown_arms = [a for a in in_arms if a not in arms]
        if unknown_arms:
            raise ValueError(f"fit_trial: shared {k!r} names arm(s) {unknown_arms} not in the data (arms: {list(arms)})")
    individual, shared, per_arm = tuple(individual), tuple(shared_in), tuple(estimated_in)
    free = individual + shared + per_arm
    dup = {k for k in free if free.count(k) > 1}
    if dup:
        raise ValueError(f"fit_trial: parameter(s) {sorted(dup)} listed in more than one of individual/shared/per_arm")
    for k in free:
        if k not in model.params:
            check_values(model.params, {k: 0.0}, where="fit_trial")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"fit_trial: sigma = {sigma} must be a positive number (log10 IU/mL)")
    missing = sorted({p.arm for p in dataset if not p.doses and p.arm not in regimens_by_arm})
    if missing:
        raise ValueError(f"fit_trial: no regimens for arm(s) {missing} (and no dose records in the data); given: {sorted(regimens_by_arm)}")
    values = model.defaults(**(params or {}))
    model.check_steady_state(values, where="fit_trial")
    pats = list(dataset)
    n_pat = len(pats)
    t, y, cens, lloq, mask = pad_patients(pats)
    from hcvdyn.model.dosing import batch_dose_arrays, patient_regimens

    doses = batch_dose_arrays([patient_regimens(p, regimens_by_arm, "fit_trial") for p in pats], model.pk_drugs, [weight_kg] * n_pat)
    fixed = {k: np.full(n_pat, v) for k, v in values.items() if k not in free}
    local_shared = shared + per_arm
    blocks_and_residuals = jacobian_and_residuals_fn(model, individual + local_shared, options, True)

    from hcvdyn.model.drugs import EFFECTS

    outside = dict(outside or {})
    out_value = lambda k: float(outside.get(k, 0.0 if k in EFFECTS else values[k]))  # noqa: E731
    pars = lmfit.Parameters()
    narrowed = check_bounds(model, free, bounds, values, "fit_trial")
    bound = lambda k: narrowed.get(k, (model.params[k].lower, model.params[k].upper))  # noqa: E731
    for p in pats:
        for k in individual:
            pars.add(f"{k}__{p.id}", value=values[k], min=bound(k)[0], max=bound(k)[1])
    for k in shared:
        pars.add(k, value=values[k], min=bound(k)[0], max=bound(k)[1])
        if set(shared_in[k]) != set(arms):
            pars.add(f"{k}__fixed", value=out_value(k), vary=False)
    for k in per_arm:
        for a in arms:
            on = a in estimated_in[k]
            pars.add(f"{k}__{a}", value=values[k] if on else out_value(k), min=bound(k)[0], max=bound(k)[1], vary=on)
    names = list(pars)
    index = {n: i for i, n in enumerate(names)}
    # column of each patient's local parameter in the global vector
    cols = np.array(
        [[index[f"{k}__{p.id}"] for k in individual] + [index[k] if p.arm in shared_in[k] else index[f"{k}__fixed"] for k in shared] + [index[f"{k}__{p.arm}"] for k in per_arm] for p in pats],
        dtype=int,
    ).reshape(n_pat, len(individual) + len(local_shared))
    data = (jnp.asarray(t), jnp.asarray(y), jnp.asarray(cens), jnp.asarray(lloq), jnp.asarray(mask), jnp.float64(sigma))
    flat_mask = mask.ravel()

    def theta_of(pv):
        g = np.array([pv[n].value for n in names])
        return g[cols]

    evaluate = once_per_point(theta_of, lambda theta: blocks_and_residuals(theta, fixed, doses, *data))

    def residual(pv):
        return evaluate(pv)[0].ravel()[flat_mask]

    def jacobian(pv):
        blocks = evaluate(pv)[1]  # (n_pat, n_obs, n_local)
        full = np.zeros((n_pat, t.shape[1], len(names)))
        for i in range(n_pat):
            np.add.at(full[i], (slice(None), cols[i]), blocks[i])
        varying = [index[n] for n in names if pv[n].vary]  # read per call: profiling fixes parameters
        return full.reshape(-1, len(names))[flat_mask][:, varying]

    local_names = individual + shared + per_arm

    def local(pv):
        """Every parameter of every patient at the values ``pv``."""
        theta = np.asarray(theta_of(pv))
        return {
            p.id: {**{k: float(v[i]) for k, v in fixed.items()}, **dict(zip(local_names, map(float, theta[i])))}
            for i, p in enumerate(pats)
        }

    def refine(pv, resid, level: float = 0.99, max_nfev: int = 100):
        """Refit, patient by patient, the per-patient values of patients that fit badly, others fixed at ``pv``
        (``resid``: the residual vector at ``pv``).

        A patient fits badly when its -2 log L exceeds the ``level`` quantile of chi-square with its number of
        samples. A trust-region step shared by a hundred parameters can stall with one patient far from its own
        optimum (the step radius is set by the others); the patient's own two-or-three-parameter problem, started
        from ``pv`` and from the trial's starts, does not. Returns (Parameters, ids of patients improved).
        """
        from scipy.stats import chi2

        if not individual:
            return pv, ()
        r = np.zeros(mask.shape)
        r[mask] = resid
        per = np.sum(r**2, axis=1)
        bad = np.flatnonzero(per > chi2.ppf(level, mask.sum(axis=1)))
        if bad.size == 0:
            return pv, ()
        jac_and_res = jacobian_and_residuals_fn(model, individual, options, False)
        theta = np.asarray(theta_of(pv))
        out, improved = pv.copy(), []
        for i in bad:
            others = {**{k: jnp.float64(v[i]) for k, v in fixed.items()},
                      **{k: jnp.float64(x) for k, x in zip(local_shared, theta[i, len(individual):])}}
            dose_i = {k: (jnp.asarray(a[i]), jnp.asarray(b[i])) for k, (a, b) in doses.items()}
            data_i = tuple(jnp.asarray(x[i]) for x in (t, y, cens, lloq, mask)) + (jnp.float64(sigma),)
            keys = [f"{k}__{pats[i].id}" for k in individual]
            best = per[i]
            for first in (theta[i, : len(individual)], [values[k] for k in individual]):
                sub = lmfit.Parameters()
                for key, k, v in zip(keys, individual, first):
                    sub.add(k, value=float(np.clip(v, pv[key].min, pv[key].max)), min=pv[key].min, max=pv[key].max)
                evaluate = once_per_point(lambda q: [q[k].value for k in individual],
                                           lambda theta: jac_and_res(theta, others, dose_i, *data_i))
                try:
                    fit_i = minimize_least_squares(lambda q: evaluate(q)[0].copy(), lambda q: evaluate(q)[1].copy(), sub, max_nfev)
                except ValueError:
                    continue
                if fit_i.chisqr < best - 1e-6:
                    best = fit_i.chisqr
                    for key, k in zip(keys, individual):
                        out[key].set(value=fit_i.params[k].value)
            if best < per[i] - 1e-6:
                improved.append(pats[i].id)
        return out, tuple(improved)

    local.names = local_names
    local.censored = cens.ravel()[flat_mask]
    local.refine = refine
    local.shared_names = tuple(n for n in names if n not in {f"{k}__{p.id}" for k in individual for p in pats})
    local.columns = {p.id: tuple(names[j] for j in cols[i]) for i, p in enumerate(pats)}
    return pars, residual, jacobian, int(mask.sum()), local
