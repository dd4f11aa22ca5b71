"""Population fit: lmfit (BFGS) drives the outer problem of :mod:`hcvdyn.estimate.nlme` with its exact gradient,
from several seeded starts; then the covariance step (:mod:`hcvdyn.estimate.covariance`) and the empirical Bayes
estimates with their shrinkage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from hcvdyn.estimate.covariance import (
    CovarianceStep,
    covariance_step,
    hessian_from_gradient,
)
from hcvdyn.estimate.population_design import (
    OuterValue,
    PopulationDesign,
    PopulationProblem,
    build_population_problem,
)
from hcvdyn.estimate.population_objective import PopulationObjective
from hcvdyn.estimate.profile import satterthwaite_interval
from hcvdyn.solve.options import NumericalError

__all__ = ["PopulationFit", "fit_population", "PopulationObjective", "outer_minimizer", "start_inverse_hessian", "newton_decrease", "GRADIENT_TOL", "DECREASE_TOL"]

GRADIENT_TOL = 1e-3  # converged: no entry of lmfit's (internal) gradient of the OFV exceeds this, or
DECREASE_TOL = 1e-3  # the OFV lies less than this above the optimum by the Newton decrement (no estimate at a bound)
MODE_SWITCHES = 2  # refits from a patient's lower conditional mode, at most


def newton_decrease(R: np.ndarray, gradient: np.ndarray) -> float:
    """g' R^-1 g / 2: how far the OFV lies above the optimum of its quadratic model (R the Hessian of the OFV;
    Boyd & Vandenberghe 2004, Convex Optimization, section 9.5.1). Independent of the parameterisation, unlike a
    gradient tolerance: 1e-3 puts the estimate within about 0.05 SE of the optimum. NaN where R is not positive
    definite."""
    try:
        c = np.linalg.cholesky(0.5 * (R + R.T))
    except np.linalg.LinAlgError:
        return math.nan
    w = np.linalg.solve(c, gradient)
    return float(0.5 * w @ w)


@dataclass(frozen=True)
class PopulationFit:
    """Result of :func:`fit_population`. ``x`` holds every outer value (by label, as :class:`OuterValue` s in
    ``values``): typical values and drug effects on their parameters' scales, covariate shifts, Omega's Cholesky
    factor and sigma. ``ofv`` is -2 ln L by the method's approximation, all constants included."""

    model: str
    method: str
    values: tuple[OuterValue, ...]
    x: Mapping[str, float]
    ofv: float
    aic: float
    bic: float
    success: bool
    message: str
    covariance: CovarianceStep
    ids: tuple[str, ...]
    random: tuple[str, ...]
    eta: np.ndarray  # (N, q) empirical Bayes estimates (conditional modes)
    omega: np.ndarray  # (q, q) on the parameters' scales
    sigma: float
    shrinkage: Mapping[str, float]
    patient_params: Mapping[str, Mapping[str, float]]
    n_obs: int
    n_censored: int
    gradient: np.ndarray  # of the OFV at the estimate, in x's order
    start_objectives: tuple[float, ...] = ()
    evaluations: int = 0
    seconds: float = math.nan
    declared: Mapping[str, object] = field(default_factory=dict)  # parameter name -> Param
    problem: PopulationProblem | None = field(default=None, repr=False, compare=False)  # for diagnostics and simulation

    @property
    def objective(self) -> float:
        """-2 ln L (``ofv``), under the name :class:`~hcvdyn.estimate.fit.TrialFit` gives it."""
        return self.ofv

    @property
    def stderr(self) -> dict[str, float]:
        return dict(zip(self.x, map(float, self.covariance.stderr)))

    def natural(self, label: str, x: float | None = None) -> float:
        """``x`` (default ``x[label]``) in the parameter's unit for typical values and drug effects, which ``x`` holds
        on their declared scale; the others as they are."""
        v = next(o for o in self.values if o.label == label)
        x = self.x[label] if x is None else x
        return float(self.declared[v.parameter].from_scale(x)) if v.kind in ("typical", "shared", "per_arm") else float(x)

    def rows(self, level: float = 0.95) -> list[dict]:
        """One row per estimated value: estimate, SE, RSE%, and a 95% (``level``) interval.

        Typical values and drug effects: Wald on their parameter's declared scale, mapped back. Covariate shifts and
        Cholesky off-diagonals: Wald, linear. omega (the SDs, or the diagonal of Omega's Cholesky factor) and sigma:
        :func:`~hcvdyn.estimate.profile.satterthwaite_interval`, read from the variance (above 0, longer above than
        below, as the likelihood of an SD is). Over the 100 persisted recovery replicates it covered omega log10 V0
        more often than the log-scale Wald interval it replaced (docs/population.md, which also gives its check
        on fresh seeds)."""
        from scipy.stats import norm

        z = norm.ppf(0.5 + level / 2)
        out = []
        for v, se in zip(self.values, self.covariance.stderr):
            x = self.x[v.label]
            mapped = v.kind in ("typical", "shared", "per_arm")
            positive = v.kind in ("omega", "sigma") and x > 0
            back = (lambda y: float(self.declared[v.parameter].from_scale(y))) if mapped else float
            est = back(x)
            se_nat = abs(back(x + 1e-6) - back(x - 1e-6)) / 2e-6 * se if math.isfinite(se) else math.nan
            if positive:
                lower, upper = satterthwaite_interval(x, se, level)
            else:
                lower, upper = back(x - z * se), back(x + z * se)
            unit = (self.declared[v.parameter].unit if mapped else "log10 IU/mL (residual SD)" if v.kind == "sigma"
                    else "SD of eta (parameter's scale)" if v.kind in ("omega", "cholesky") else "shift (parameter's scale)")
            out.append({"name": v.label, "kind": v.kind, "parameter": v.parameter, "estimate": est, "unit": unit,
                        "scale": self.declared[v.parameter].scale if mapped else "variance (Satterthwaite)" if positive else "linear", "se": se_nat,
                        "rse_percent": 100 * se_nat / abs(est) if est else math.nan, "lower": lower, "upper": upper})
        return out


def _starts(problem: PopulationProblem, first: np.ndarray, n: int, seed: int):
    """The first start at ``first``; the others with fixed effects moved N(0, 0.3^2) on their scales."""
    rng = np.random.default_rng(seed)
    yield first
    lower = np.array([v.lower for v in problem.values])
    upper = np.array([v.upper for v in problem.values])
    inside = (lower + 1e-9 * np.nan_to_num(np.abs(lower), posinf=0.0),  # an infinite bound stays infinite
              upper - 1e-9 * np.nan_to_num(np.abs(upper), posinf=0.0))
    fixed = np.array([v.kind in ("typical", "shared", "per_arm") for v in problem.values])
    for _ in range(n - 1):
        x = first + fixed * rng.normal(0.0, 0.3, first.size)
        yield np.clip(x, *inside)


def outer_minimizer(objective: PopulationObjective, values: Sequence[OuterValue], x0, held=None):
    """(lmfit Minimizer of the OFV with its exact gradient, bounds from ``values``; pars -> x). held: a boolean
    mask of values kept at ``x0`` (profile points)."""
    import lmfit

    pars = lmfit.Parameters()
    for k, (v, x) in enumerate(zip(values, x0)):
        pars.add(v.label, value=float(x), min=v.lower, max=v.upper, vary=held is None or not held[k])
    vec = lambda p: np.array([p[v.label].value for v in values])  # noqa: E731
    return lmfit.Minimizer(lambda p: objective.value(vec(p)), pars, calc_covar=False, nan_policy="propagate"), vec


def start_inverse_hessian(scores: np.ndarray, internal_scale: np.ndarray) -> np.ndarray:
    """BFGS's first inverse Hessian, on lmfit's internal scale, from the per-patient gradients (N, p) at the start.

    For OFV = -2 ln L, R ~ S / 2 with S = sum_i g_i g_i' (the outer-product, BHHH, approximation). It costs no
    evaluation, is positive semi-definite away from the optimum, and gives each direction its own scale. BFGS's
    default (the identity) does not: its first line searches reach points such as a typical log10 V0 of 9 or an
    Omega SD of 5, where the stiff solves of every patient take minutes. Eigenvalues are floored at 1e-3 of the
    largest, so that a direction few patients inform is not stepped into without bound.
    """
    if not np.all(np.isfinite(scores)):
        return np.eye(len(internal_scale))
    H = 0.5 * scores.T @ scores * np.outer(internal_scale, internal_scale)
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    if not w[-1] > 0:
        return np.eye(len(internal_scale))
    w = np.maximum(w, 1e-3 * w[-1])
    inv = (V / w) @ V.T
    return 0.5 * (inv + inv.T)


def _internal_scale(params, values) -> np.ndarray:
    """d(external value)/d(lmfit's internal value) of each outer value: the chain-rule factor of bounded values."""
    return np.array([params[v.label].scale_gradient(params[v.label].setup_bounds()) for v in values])


def _minimize(objective: PopulationObjective, values, x0: np.ndarray, max_iter: int, held: np.ndarray):
    mini, vec = outer_minimizer(objective, values, x0, held)
    free = ~held
    scale = _internal_scale(mini.params, values)[free]
    scores = objective.evaluate(x0)[2][:, free]
    # BFGS stops where the fit's own criterion holds: a tighter gtol lies below the gradient's noise (the modes are
    # found to a tolerance), and its line searches then ran on to precision loss (35 of the bundled fit's 107 evaluations)
    out = mini.minimize(method="bfgs", jac=lambda p: objective.gradient(vec(p))[free].copy(),
                        options={"maxiter": max_iter, "gtol": GRADIENT_TOL,
                                 "hess_inv0": start_inverse_hessian(scores, scale)})
    return out, vec(out.params)


def fit_population(model, dataset, regimens_by_arm: Mapping[str, Sequence], design: PopulationDesign, *,
                   gradient: str = "exact", start: Mapping[str, float] | None = None, start_eta: np.ndarray | None = None,
                   covariance: bool = True, hold: Mapping[str, float] | None = None) -> PopulationFit:
    """Nonlinear mixed-effects fit of ``dataset`` by ``design.method`` ("foce-i" or "laplace"), with
    ``design.fit.n_starts`` seeded starts and a covariance step (``design.covariance``: "sandwich", "R" or "S").

    Non-convergence, a failed covariance step and patients whose conditional mode could not be found are
    reported in ``message`` with ``success`` False; the numbers are never silently NaN. gradient: "exact" or
    "differences" (:class:`PopulationObjective`; the latter only to compare). start: outer values by label, as
    :attr:`PopulationFit.x`, for the first start (labels this problem lacks are ignored, so that one fit starts a
    nested one). start_eta: (N, q) conditional modes to start the inner solves from (a nested fit's), so that the
    first OFV is the other fit's and not that of another local mode. covariance: False skips the covariance step
    (profile points); ``success`` then does not depend on it. hold: outer values by label kept fixed at the value
    given (a profile point, e.g. ``{"omega_delta": 0.5}``); the covariance step is then skipped.
    """
    t_start = time.perf_counter()
    problem = build_population_problem(model, dataset, regimens_by_arm, design)
    hold = dict(hold or {})
    if unknown := sorted(set(hold) - set(problem.labels)):
        raise ValueError(f"fit_population: hold {unknown}: not an outer value of this problem; known: {', '.join(problem.labels)}")
    for v in problem.values:
        if v.label in hold and not v.lower <= hold[v.label] <= v.upper:
            raise ValueError(f"fit_population: hold {v.label} = {hold[v.label]:g} outside its range [{v.lower:g}, {v.upper:g}]")
    held = np.array([v.label in hold for v in problem.values])
    covariance = covariance and not hold
    objective = PopulationObjective(problem.engine, problem.arrays, problem.ids, gradient)
    if start_eta is not None:
        objective.best = (math.inf, np.asarray(start_eta, dtype=float).reshape(objective.best[1].shape))
    first = np.array([float(hold.get(v.label, (start or {}).get(v.label, v.start))) for v in problem.values])
    if not math.isfinite(objective.value(first)):
        raise NumericalError(f"fit_population: no conditional mode at the starting values for patient(s) {list(objective.failed)}; "
                             "check the starting values, or loosen SolverOptions")
    results = []
    for x0 in _starts(problem, first, design.fit.n_starts, design.fit.seed):
        x0 = np.where(held, first, x0)
        try:
            out, x = _minimize(objective, problem.values, x0, design.max_iter, held)
        except (ValueError, FloatingPointError) as err:  # a start whose line search left the model's range
            results.append((math.inf, None, None, str(err)))
            continue
        results.append((objective.value(x), out, x, out.message))
    best = min(range(len(results)), key=lambda k: results[k][0])
    ofv, out, x, note = results[best]
    if out is None:
        raise NumericalError(f"fit_population: every start failed ({note})")
    if not np.all(np.abs(objective.gradient(x) * _internal_scale(out.params, problem.values))[~held] < GRADIENT_TOL):
        # BFGS stops on "precision loss" when its Hessian has gone stale near the optimum: one restart from the
        # end point, with the outer-product Hessian there, usually finishes in a few evaluations
        try:
            out2, x2 = _minimize(objective, problem.values, x, design.max_iter, held)
        except (ValueError, FloatingPointError):
            pass
        else:
            if objective.value(x2) <= objective.value(x):
                out, x, note = out2, x2, f"{out2.message} (restarted once from the end point)"
    switched: list[str] = []
    for _ in range(MODE_SWITCHES):  # the fit must end on every patient's lowest mode that we can find
        eta_low, ids, rivals = objective.second_modes(x)
        if not ids:
            break
        switched += ids
        objective.restart_modes(eta_low)
        try:
            out2, x2 = _minimize(objective, problem.values, x, design.max_iter, held)
        except (ValueError, FloatingPointError) as err:
            note = f"{note}; the refit from the lower conditional mode of {ids} failed ({err})"
            break
        out, x, note = out2, x2, f"{out2.message} (refitted from the lower conditional mode of {sorted(set(switched))})"
    still, rivals = objective.second_modes(x)[1:] if switched else (ids, rivals)
    ofv, grad, scores, eta = objective.evaluate(x)
    unsettled = objective.unsettled  # at x (the covariance step evaluates elsewhere)
    largest = float(np.max(np.abs(grad * _internal_scale(out.params, problem.values))[~held], initial=0.0))
    at_bound = [v.label for v, xv in zip(problem.values, x) if v.label not in hold and (
                np.isfinite(v.lower) and abs(xv - v.lower) < 1e-6 * max(1, abs(v.lower))
                or np.isfinite(v.upper) and abs(xv - v.upper) < 1e-6 * max(1, abs(v.upper)))]
    if covariance:
        cov = covariance_step(hessian_from_gradient(objective.gradient, x), scores, problem.labels, design.covariance)
    else:
        n = len(x)
        cov = CovarianceStep(design.covariance, False, "covariance step not run (covariance=False)", problem.labels,
                             np.full((n, n), np.nan), scores.T @ scores, None, math.nan)
    R = cov.R if covariance else None
    if R is None and largest >= GRADIENT_TOL and not at_bound:  # the decrement needs R even without the covariance step
        R = hessian_from_gradient(objective.gradient, x)
    free = ~held
    decrease = newton_decrease(R[np.ix_(free, free)], grad[free]) if R is not None and not at_bound else math.nan
    if largest < GRADIENT_TOL:
        criterion = f"largest |gradient| {largest:.1e}"
    elif decrease < DECREASE_TOL:
        criterion = f"OFV within {decrease:.1e} of the optimum (Newton decrement; largest |gradient| {largest:.1e})"
    else:
        criterion = None
    messages = [] if criterion else [f"not converged: largest |gradient| {largest:.2g} (> {GRADIENT_TOL}), OFV "
                                     f"{decrease:.2g} above the optimum by the Newton decrement (> {DECREASE_TOL}); {note}"]
    if still:
        messages.append(f"patient(s) {list(still)} have a lower conditional mode than the one the fit ended on: their conditional "
                        "density has two modes here, so the objective switches between them and has no smooth optimum")
    if rivals and messages:  # what may have stopped the fit: a patient whose two modes swap nearby
        shown = ", ".join(f"{pid} (g_i {dg:+.3g}, OFV_i {dofv:+.3g})" for pid, (dg, dofv) in sorted(rivals.items(), key=lambda r: r[1][0])[:3])
        messages.append(f"patient(s) with a second conditional mode at the estimate, its g_i and OFV_i minus those of the mode used: "
                        f"{shown}; where g_i ties, FOCE-I's and Laplace's objective jumps, so a fit can stop there (the marginal "
                        "likelihood itself, which hcvdyn.estimate.marginal estimates, does not)")
    if unsettled:
        messages.append(f"the conditional modes of patient(s) {list(unsettled)} are not settled: exact Newton steps on "
                        "their g_i do not converge (its Hessian is not positive definite there, or the steps stall), so their "
                        "OFV terms and gradients are approximate")
    if at_bound:
        messages.append(f"estimate(s) at a bound: {at_bound}")
    if covariance and not cov.ok:
        messages.append(cov.message)
    lay = problem.layout
    beta, L, sigma = (np.asarray(a) for a in lay.split(jnp.asarray(x), design.fit.sigma))
    omega = L @ L.T
    sd_eta = eta.std(axis=0, ddof=0)
    shrink = {k: float(1 - sd_eta[j] / math.sqrt(omega[j, j])) for j, k in enumerate(problem.random)}
    values = problem.individual_values(beta, eta)
    params = {pid: {**{k: float(v[i]) for k, v in problem.fixed.items()}, **{k: float(v[i]) for k, v in values.items()}}
              for i, pid in enumerate(problem.ids)}
    n_par = int(np.sum(~held))  # held values are not estimated: they do not count in AIC and BIC
    return PopulationFit(
        model=model.name, method=design.method, values=problem.values, x=dict(zip(problem.labels, map(float, x))), ofv=ofv,
        aic=ofv + 2 * n_par, bic=ofv + n_par * math.log(problem.n_obs), success=not messages,
        message="; ".join(messages) if messages else
        f"converged: {criterion} (BFGS: {note}); {cov.message}", covariance=cov, ids=problem.ids,
        random=problem.random, eta=eta, omega=omega, sigma=float(sigma), shrinkage=shrink, patient_params=params,
        n_obs=problem.n_obs, n_censored=problem.n_censored, gradient=grad, start_objectives=tuple(r[0] for r in results),
        evaluations=objective.evaluations, seconds=time.perf_counter() - t_start,
        declared={k: model.params[k] for k in problem.names}, problem=problem,
    )
