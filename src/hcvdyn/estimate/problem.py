"""The whole-trial least-squares problem: per-patient and shared (per-arm) parameters mapped to one residual
vector with a block Jacobian (:class:`TrialProblem`), and one patient's own problem with the rest held
(:class:`PatientProblem`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from hcvdyn.estimate.design import Estimate, FitDesign
from hcvdyn.estimate.likelihood import jacobian_and_residuals_fn, once_per_point
from hcvdyn.estimate.optimize import minimize_least_squares, pad_patients
from hcvdyn.model.dosing import Regimen, batch_dose_arrays, patient_regimens
from hcvdyn.model.drugs import EFFECTS
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import check_values
from hcvdyn.solve.options import SolverOptions

__all__ = ["PatientProblem", "TrialProblem", "build_trial_problem", "treatment_ends"]


@dataclass(frozen=True, eq=False)
class PatientProblem:
    """One patient's individual parameters ``names`` (trial labels ``labels``), every other parameter held:
    residuals (padded samples 0) and their Jacobian, solved once per point."""

    model: HCVModel
    names: tuple[str, ...]
    labels: tuple[str, ...]
    held: Mapping[str, jnp.ndarray]  # every other parameter, in its unit
    doses: Mapping[str, tuple[jnp.ndarray, jnp.ndarray]]
    data: tuple  # (t_days, log10_vl, censored, lloq_log10, mask, sigma) of this patient, padded
    options: SolverOptions
    _evaluate: Callable = field(init=False, repr=False)

    def __post_init__(self):
        fn = jacobian_and_residuals_fn(self.model, self.names, self.options, False)
        object.__setattr__(self, "_evaluate", once_per_point(lambda q: [q[k].value for k in self.names],
                                                             lambda theta: fn(theta, self.held, self.doses, *self.data)))

    def residual(self, pars) -> np.ndarray:
        """M3 residuals at lmfit ``pars`` (named by ``names``), a writable copy."""
        return self._evaluate(pars)[0].copy()

    def jacobian(self, pars) -> np.ndarray:
        """d residual / d ``names`` at ``pars``, a writable copy (lmfit rescales it in place)."""
        return self._evaluate(pars)[1].copy()

    def fit(self, first: Sequence[float], trial_pars, max_nfev: int):
        """lmfit result from ``first`` (clipped into the bounds the trial's ``trial_pars`` give), or None if the solve fails."""
        import lmfit

        sub = lmfit.Parameters()
        for label, k, v in zip(self.labels, self.names, first):
            lo, hi = trial_pars[label].min, trial_pars[label].max
            sub.add(k, value=float(np.clip(v, lo, hi)), min=lo, max=hi)
        try:
            return minimize_least_squares(self.residual, self.jacobian, sub, max_nfev)
        except ValueError:
            return None


@dataclass(frozen=True, eq=False)
class TrialProblem:
    """A whole-trial M3 problem (see :func:`hcvdyn.estimate.fit.fit_trial`), built by :func:`build_trial_problem`.

    estimates: every lmfit parameter in order, with its start, bounds and whether it varies. names: the model
    parameters each patient's theta holds (individual, shared, per-arm); columns[i, k]: the estimate that gives
    patient i its names[k]. fixed: every other parameter per patient. Padded (n_patients, n) sample arrays with
    ``mask`` marking real samples; sigma: the residual SD (log10 IU/mL).
    """

    model: HCVModel
    design: FitDesign  # checked against the model and the data's arms
    ids: tuple[str, ...]
    estimates: tuple[Estimate, ...]
    start: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    vary: tuple[bool, ...]
    names: tuple[str, ...]
    columns: np.ndarray
    fixed: Mapping[str, np.ndarray]
    doses: Mapping[str, tuple[np.ndarray, np.ndarray]]
    t: np.ndarray
    y: np.ndarray
    cens: np.ndarray
    lloq: np.ndarray
    mask: np.ndarray
    sigma: float
    _evaluate: Callable = field(init=False, repr=False)

    def __post_init__(self):
        fn = jacobian_and_residuals_fn(self.model, self.names, self.design.options, True)
        data = (*(jnp.asarray(a) for a in (self.t, self.y, self.cens, self.lloq, self.mask)), jnp.float64(self.sigma))
        object.__setattr__(self, "_evaluate", once_per_point(self.theta, lambda theta: fn(theta, self.fixed, self.doses, *data)))

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """lmfit name of each estimate."""
        return tuple(e.label for e in self.estimates)

    @cached_property
    def by_label(self) -> dict[str, Estimate]:
        """lmfit name -> :class:`Estimate`."""
        return dict(zip(self.labels, self.estimates))

    @property
    def n_obs(self) -> int:
        """Number of samples (observed and censored)."""
        return int(self.mask.sum())

    @property
    def censored(self) -> np.ndarray:
        """Whether each sample of the residual vector is censored."""
        return self.cens.ravel()[self.mask.ravel()]

    @cached_property
    def patient_columns(self) -> dict[str, tuple[str, ...]]:
        """Patient id -> lmfit name of each of its ``names``."""
        return {pid: tuple(self.labels[j] for j in self.columns[i]) for i, pid in enumerate(self.ids)}

    def with_sigma(self, sigma: float) -> TrialProblem:
        """The same problem at residual SD ``sigma`` (same shapes: nothing is compiled again)."""
        return replace(self, sigma=sigma)

    def parameters(self):
        """Fresh lmfit Parameters at the starting values."""
        import lmfit

        pars = lmfit.Parameters()
        for label, v, lo, hi, on in zip(self.labels, self.start, self.lower, self.upper, self.vary):
            pars.add(label, value=v, min=lo, max=hi, vary=on)
        return pars

    def theta(self, pars) -> np.ndarray:
        """(n_patients, len(names)) values of each patient's ``names`` at lmfit ``pars``."""
        return np.array([pars[n].value for n in self.labels])[self.columns]

    def residual(self, pars) -> np.ndarray:
        """The M3 residual vector of every sample (observed and censored) at ``pars``."""
        return self._evaluate(pars)[0].ravel()[self.mask.ravel()]

    def jacobian(self, pars) -> np.ndarray:
        """d residual / d varying parameters at ``pars``, in lmfit's ``var_names`` order."""
        blocks = self._evaluate(pars)[1]  # (n_pat, n_obs, n_local)
        n_pat, width = len(self.ids), len(self.labels)
        full = np.zeros((n_pat, self.t.shape[1], width))
        for i in range(n_pat):
            np.add.at(full[i], (slice(None), self.columns[i]), blocks[i])
        varying = [j for j, n in enumerate(self.labels) if pars[n].vary]  # read per call: profiling fixes parameters
        return full.reshape(-1, width)[self.mask.ravel()][:, varying]

    def patient_params(self, pars) -> dict[str, dict[str, float]]:
        """Every parameter of every patient at ``pars`` (patient id -> name -> value)."""
        theta = np.asarray(self.theta(pars))
        return {pid: {**{k: float(v[i]) for k, v in self.fixed.items()}, **dict(zip(self.names, map(float, theta[i])))}
                for i, pid in enumerate(self.ids)}

    def subproblem(self, i: int, pars) -> PatientProblem:
        """Patient ``i``'s individual parameters alone, its shared and per-arm values held at ``pars``."""
        n_ind = len(self.design.individual)
        theta = np.asarray(self.theta(pars))
        held = {**{k: jnp.float64(v[i]) for k, v in self.fixed.items()},
                **{k: jnp.float64(x) for k, x in zip(self.names[n_ind:], theta[i, n_ind:])}}
        doses = {k: (jnp.asarray(a[i]), jnp.asarray(b[i])) for k, (a, b) in self.doses.items()}
        data = (*(jnp.asarray(x[i]) for x in (self.t, self.y, self.cens, self.lloq, self.mask)), jnp.float64(self.sigma))
        labels = tuple(Estimate(k, "individual", self.ids[i]).label for k in self.design.individual)
        return PatientProblem(self.model, self.design.individual, labels, held, doses, data, self.design.options)

    def refine(self, pars, resid, level: float = 0.99, max_nfev: int = 100):
        """Refit, patient by patient, the per-patient values of patients that fit badly, others fixed at ``pars``
        (``resid``: the residual vector at ``pars``).

        A patient fits badly when its -2 log L exceeds the ``level`` quantile of chi-square with its number of
        samples. A trust-region step shared by a hundred parameters can stall with one patient far from its own
        optimum (the step radius is set by the others); the patient's own two-or-three-parameter problem
        (:meth:`subproblem`), started from ``pars`` and from the trial's starts, does not. Returns (Parameters,
        ids of patients improved).
        """
        from scipy.stats import chi2

        individual = self.design.individual
        if not individual:
            return pars, ()
        r = np.zeros(self.mask.shape)
        r[self.mask] = resid
        per = np.sum(r**2, axis=1)
        bad = np.flatnonzero(per > chi2.ppf(level, self.mask.sum(axis=1)))
        if bad.size == 0:
            return pars, ()
        theta = np.asarray(self.theta(pars))
        starts = self.design.start_values(self.model)
        out, improved = pars.copy(), []
        for i in bad:
            sub = self.subproblem(i, pars)
            best = per[i]
            for first in (theta[i, : len(individual)], [starts[k] for k in individual]):
                fit_i = sub.fit(first, pars, max_nfev)
                if fit_i is not None and fit_i.chisqr < best - 1e-6:
                    best = fit_i.chisqr
                    for label, k in zip(sub.labels, individual):
                        out[label].set(value=fit_i.params[k].value)
            if best < per[i] - 1e-6:
                improved.append(self.ids[i])
        return out, tuple(improved)


def build_trial_problem(model: HCVModel, dataset, regimens_by_arm: Mapping[str, Sequence[Regimen]], design: FitDesign) -> TrialProblem:
    """The whole-trial problem of ``dataset`` under ``design`` (checked here against the model and the data's arms).

    regimens_by_arm: each arm's regimens; a patient with dose records in its data is dosed by those instead.
    A patient whose data give its treatment end (``treatment_end_days``) has that as its fixed t_end.
    """
    pats = list(dataset)
    arms = tuple(dict.fromkeys(p.arm for p in pats))
    design = design.check(model, arms)
    missing = sorted({p.arm for p in pats if not p.doses and p.arm not in regimens_by_arm})
    if missing:
        raise ValueError(f"fit_trial: no regimens for arm(s) {missing} (and no dose records in the data); given: {sorted(regimens_by_arm)}")
    values = design.start_values(model)
    n_pat = len(pats)
    t, y, cens, lloq, mask = pad_patients(pats)
    doses = batch_dose_arrays([patient_regimens(p, regimens_by_arm, "fit_trial") for p in pats], model.pk_drugs,
                              [design.weight_kg] * n_pat)
    free = design.free
    by_arm = {a: design.arm_values(model, a) for a in arms}
    fixed = {k: np.array([by_arm[p.arm][k] for p in pats]) for k in values if k not in free}
    ends = treatment_ends(model, pats, values.get("t_end", math.inf), free, "fit_trial")
    if ends is not None:
        fixed["t_end"] = ends
    out_value = lambda k: float(design.outside.get(k, 0.0 if k in EFFECTS else values[k]))  # noqa: E731
    bound = lambda k: design.bounds.get(k, (model.params[k].lower, model.params[k].upper))  # noqa: E731
    rows: list[tuple[Estimate, float, float, float, bool]] = []
    for p in pats:
        rows += [(Estimate(k, "individual", p.id), values[k], *bound(k), True) for k in design.individual]
    for k, in_arms in design.shared.items():
        rows.append((Estimate(k, "shared"), values[k], *bound(k), True))
        if set(in_arms) != set(arms):
            rows.append((Estimate(k, "outside"), out_value(k), -np.inf, np.inf, False))
    for k, in_arms in design.per_arm.items():
        rows += [(Estimate(k, "per_arm", a), values[k] if a in in_arms else out_value(k), *bound(k), a in in_arms) for a in arms]
    index = {e: j for j, (e, *_) in enumerate(rows)}

    def used_by(p, k: str) -> Estimate:
        """The estimate that gives patient ``p`` its value of ``k``."""
        if k in design.per_arm:
            return Estimate(k, "per_arm", p.arm)
        if k in design.shared:
            return Estimate(k, "shared" if p.arm in design.shared[k] else "outside")
        return Estimate(k, "individual", p.id)

    cols = np.array([[index[used_by(p, k)] for k in free] for p in pats], dtype=int).reshape(n_pat, len(free))
    estimates, start, lower, upper, vary = (tuple(c) for c in zip(*rows)) if rows else ((),) * 5
    return TrialProblem(model, design, tuple(p.id for p in pats), estimates, start, lower, upper, vary, tuple(free), cols, fixed,
                        doses, t, y, cens, lloq, mask, design.sigma)


def treatment_ends(model: HCVModel, patients, default: float, free: Sequence[str], where: str) -> np.ndarray | None:
    """Each patient's ``t_end``: the end of treatment its data give (``treatment_end_days``), else ``default``; None
    when no patient's data give one.

    ValueError when the data give treatment ends the model cannot use (no constant-efficacy drug: PK-mode effects
    end with the regimens' doses), ends outside t_end's bounds, or ends for a t_end that the fit estimates.
    """
    given = [p for p in patients if math.isfinite(p.treatment_end_days)]
    if not given:
        return None
    first = f"patient {given[0].id}: day {given[0].treatment_end_days:g}"
    if "t_end" not in model.params:
        raise ValueError(f"{where}: the data give treatment ends ({first}) but model {model.name} has no constant-efficacy "
                         "drug for them to stop; its PK-mode effects end with the regimens' last doses")
    if "t_end" in free:
        raise ValueError(f"{where}: t_end is estimated, yet the data give treatment ends ({first}); fix t_end or drop the column")
    for p in given:
        check_values(model.params, {"t_end": p.treatment_end_days}, where=f"{where}: patient {p.id}: treatment end")
    return np.array([p.treatment_end_days if math.isfinite(p.treatment_end_days) else default for p in patients])
