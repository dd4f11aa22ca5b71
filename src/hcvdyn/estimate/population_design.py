"""The population model of a nonlinear mixed-effects fit (:class:`PopulationDesign`, :class:`Covariate`) and its
problem on a dataset (:class:`PopulationProblem`): the outer values, their bounds and the per-patient arrays
of :mod:`hcvdyn.estimate.nlme`.

Every individual parameter varies on its declared scale (:attr:`hcvdyn.model.parameters.Param.scale`): log-normal
for rates and loads declared "log", logit-normal for fractions, normal for parameters declared "linear"
(log10_V0). Shared and per-arm drug effects are fixed effects, as in the whole-trial fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from hcvdyn.estimate.covariance import COVARIANCE_KINDS
from hcvdyn.estimate.design import FitDesign
from hcvdyn.estimate.nlme import METHODS, Layout, PopulationArrays, engine
from hcvdyn.estimate.problem import build_trial_problem
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import untransform
from hcvdyn.solve.adaptive import log10_load
from hcvdyn.solve.options import SolverOptions

__all__ = ["Covariate", "PopulationDesign", "PopulationProblem", "build_population_problem", "COVARIATE_FORMS"]

COVARIATE_FORMS = ("category", "power", "exponential", "linear")
OMEGA_START = 0.3  # SD of a random effect on its scale, where none is given (about 30% between-patient CV)


@dataclass(frozen=True)
class Covariate:
    """A covariate effect on one parameter, on the parameter's scale.

    column: "arm", "group" or a covariate column of the data. form: "category" (one shift per level other than
    ``reference``, the most frequent level by default), "power" (+ coef ln(x / reference): tv (x/ref)^coef for a
    log-scale parameter), "exponential" or "linear" (+ coef (x - reference)); reference defaults to the median.
    """

    parameter: str
    column: str
    form: str = "category"
    reference: float | str | None = None

    def __post_init__(self):
        if self.form not in COVARIATE_FORMS:
            raise ValueError(f"covariate {self.parameter}~{self.column}: form {self.form!r} is not one of {COVARIATE_FORMS}")


@dataclass(frozen=True, kw_only=True)
class PopulationDesign:
    """What a population fit estimates: ``fit.individual`` get random effects, ``fit.shared`` and ``fit.per_arm``
    are fixed effects as in :class:`FitDesign`, whose values, bounds, sigma (start when ``fit.estimate_sigma``),
    solver options and starts it also gives.

    omega: starting SD of each random effect on its parameter's scale (default 0.3). block: a full Omega
    (correlated random effects) instead of a diagonal one. method: "foce-i" or "laplace". covariance: the
    covariance step's matrix, "sandwich" (R^-1 S R^-1), "R" or "S" (:mod:`hcvdyn.estimate.covariance`).
    max_iter: outer iterations (BFGS).
    """

    fit: FitDesign
    omega: Mapping[str, float] = field(default_factory=dict)
    block: bool = False
    covariates: tuple[Covariate, ...] = ()
    method: str = "foce-i"
    covariance: str = "sandwich"
    max_iter: int = 200

    def __post_init__(self):
        object.__setattr__(self, "omega", dict(self.omega or {}))
        object.__setattr__(self, "covariates", tuple(self.covariates))
        if not self.fit.individual:
            raise ValueError("PopulationDesign: no parameter has a random effect (fit.individual is empty)")
        if self.method not in METHODS:
            raise ValueError(f"PopulationDesign: method {self.method!r} is not one of {METHODS}")
        if self.covariance not in COVARIANCE_KINDS:
            raise ValueError(f"PopulationDesign: covariance {self.covariance!r} is not one of {COVARIANCE_KINDS}")
        for k, v in self.omega.items():
            if k not in self.fit.individual:
                raise ValueError(f"PopulationDesign: omega given for {k!r}, which has no random effect ({list(self.fit.individual)})")
            if not (isinstance(v, (int, float)) and 0 < v < 5):
                raise ValueError(f"PopulationDesign: omega of {k!r} = {v!r} must be an SD in (0, 5) on its scale")
        for c in self.covariates:
            if c.parameter not in self.fit.individual:
                raise ValueError(f"PopulationDesign: covariate on {c.parameter!r}, which has no random effect ({list(self.fit.individual)})")


@dataclass(frozen=True)
class OuterValue:
    """One value of the outer vector x. kind: "typical" (on the parameter's scale), "shared", "per_arm" (on its
    scale), "covariate" (shift on the scale), "omega" (diagonal of Omega's Cholesky factor: the SD when Omega is
    diagonal), "cholesky" (below its diagonal) or "sigma" (residual SD, log10 IU/mL)."""

    label: str
    kind: str
    parameter: str  # the model parameter it belongs to ("" for sigma)
    scale: str  # "log", "logit" or "linear": how the value maps to the parameter ("linear" for the rest)
    start: float
    lower: float
    upper: float
    owner: str | None = None  # the arm of a per-arm drug effect


def _scaled_bounds(param, lo: float, hi: float) -> tuple[float, float]:
    with np.errstate(divide="ignore"):
        a, b = (float(v) for v in param.to_scale(np.array([lo, hi])))
    return (a if math.isfinite(a) and lo > (0 if param.scale != "linear" else -math.inf) else -math.inf,
            b if math.isfinite(b) and not (param.scale == "logit" and hi >= 1) else math.inf)


@lru_cache(maxsize=16)
def hcv_predictor(model: HCVModel, names: tuple[str, ...], scales: tuple[str, ...], options: SolverOptions):
    """predict(u, ctx) -> log10 loads: ``names`` from their scales (``outside`` where not given), the rest fixed."""

    def predict(u, ctx):
        values = jnp.where(ctx["given"], untransform(scales, u), ctx["outside"])
        params = {**ctx["fixed"], **{k: values[j] for j, k in enumerate(names)}}
        return log10_load(model, params, ctx["doses"], ctx["t"], options)

    return predict


@dataclass(frozen=True, eq=False)
class PopulationProblem:
    """A population fit's problem: outer values, per-patient arrays and the compiled :class:`~hcvdyn.estimate.nlme.Engine`."""

    model: HCVModel
    design: PopulationDesign
    ids: tuple[str, ...]
    arms: tuple[str, ...]
    names: tuple[str, ...]  # each patient's individual and drug-effect parameters (u's entries)
    random: tuple[str, ...]
    values: tuple[OuterValue, ...]
    arrays: PopulationArrays
    fixed: Mapping[str, np.ndarray]
    n_obs: int
    n_censored: int

    @cached_property
    def layout(self) -> Layout:
        kinds = [v.kind for v in self.values]
        return Layout(sum(k in ("typical", "shared", "per_arm", "covariate") for k in kinds), len(self.random),
                      self.design.block, self.design.fit.estimate_sigma)

    @cached_property
    def engine(self):
        scales = tuple(self.model.params[k].scale for k in self.names)
        predict = hcv_predictor(self.model, self.names, scales, self.design.fit.options)
        return engine(predict, self.layout, self.design.method, float(self.design.fit.sigma))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(v.label for v in self.values)

    @property
    def start(self) -> np.ndarray:
        return np.array([v.start for v in self.values])

    def individual_values(self, beta, eta) -> dict[str, np.ndarray]:
        """Each of ``names`` per patient, in its unit, at fixed effects ``beta`` and random effects ``eta`` (N, q);
        ``outside`` where the patient's arm does not receive the drug."""
        a = self.arrays
        u = (np.asarray(a.offset) + np.einsum("nmb,b->nm", np.asarray(a.design), np.asarray(beta))
             + np.einsum("nmq,nq->nm", np.asarray(a.effects), np.asarray(eta)))
        given, outside = np.asarray(a.context["given"]), np.asarray(a.context["outside"])
        return {k: np.where(given[:, j], self.model.params[k].from_scale(u[:, j]), outside[:, j]) for j, k in enumerate(self.names)}


def _levels(values: Sequence[str], reference, where: str) -> tuple[str, list[str]]:
    counts = {v: values.count(v) for v in dict.fromkeys(values)}
    ref = max(counts, key=counts.get) if reference is None else str(reference)
    if ref not in counts:
        raise ValueError(f"{where}: reference level {ref!r} not in the data (levels: {sorted(counts)})")
    return ref, [v for v in counts if v != ref]


def _covariate_columns(cov: Covariate, patients, where: str) -> list[tuple[str, np.ndarray]]:
    """(label, value per patient) of each coefficient of ``cov``."""
    at = f"{where}: covariate {cov.parameter}~{cov.column}"
    if cov.form == "category":
        def level(p):
            if cov.column in ("arm", "group"):
                return getattr(p, cov.column)
            cats = getattr(p, "categories", {}) or {}
            if cov.column in cats:
                return str(cats[cov.column])
            if cov.column in p.covariates:
                return str(p.covariates[cov.column])
            raise ValueError(f"{at}: patient {p.id} has no value in column {cov.column!r}")
        vals = [level(p) for p in patients]
        ref, others = _levels(vals, cov.reference, at)
        return [(f"{cov.parameter}_{cov.column}_{lv}", np.array([float(v == lv) for v in vals])) for lv in others]
    x = []
    for p in patients:
        if cov.column not in p.covariates or not math.isfinite(p.covariates[cov.column]):
            raise ValueError(f"{at}: patient {p.id} has no numeric value in column {cov.column!r}")
        x.append(float(p.covariates[cov.column]))
    x = np.array(x)
    ref = float(np.median(x)) if cov.reference is None else float(cov.reference)
    if cov.form == "power":
        if np.any(x <= 0) or ref <= 0:
            raise ValueError(f"{at}: the power form needs positive values and reference")
        return [(f"{cov.parameter}_{cov.column}", np.log(x / ref))]
    return [(f"{cov.parameter}_{cov.column}", x - ref)]


def build_population_problem(model: HCVModel, dataset, regimens_by_arm: Mapping[str, Sequence], design: PopulationDesign) -> PopulationProblem:
    """The population problem of ``dataset``: built on the whole-trial problem of ``design.fit`` (same checks,
    arrays, doses and drug-effect estimates), its per-patient values replaced by typical values and random effects."""
    if not isinstance(design, PopulationDesign):
        raise ValueError(f"fit_population: design must be a PopulationDesign, got {type(design).__name__}")
    trial = build_trial_problem(model, dataset, regimens_by_arm, design.fit)
    pats = list(dataset)
    fd, names, random = trial.design, trial.names, trial.design.individual
    n_pat, m, q = len(pats), len(names), len(random)
    start = fd.start_values(model)
    values: list[OuterValue] = []
    index: dict = {}
    for k in random:
        p = model.params[k]
        lo, hi = _scaled_bounds(p, *fd.bounds.get(k, (p.lower, p.upper)))
        index[("typical", k)] = len(values)
        values.append(OuterValue(k, "typical", k, p.scale, float(p.to_scale(start[k])), lo, hi))
    for e, v0, lo, hi, vary in zip(trial.estimates, trial.start, trial.lower, trial.upper, trial.vary):
        if e.kind in ("shared", "per_arm") and vary:
            p = model.params[e.name]
            index[e] = len(values)
            values.append(OuterValue(e.label, e.kind, e.name, p.scale, float(p.to_scale(v0)), *_scaled_bounds(p, lo, hi), owner=e.owner))
    cov_x: list[tuple[int, int, np.ndarray]] = []  # (u index, value index, per-patient x)
    for cov in design.covariates:
        for label, x in _covariate_columns(cov, pats, "fit_population"):
            cov_x.append((names.index(cov.parameter), len(values), x))
            values.append(OuterValue(label, "covariate", cov.parameter, "linear", 0.0, -math.inf, math.inf))
    n_beta = len(values)
    for k in random:
        values.append(OuterValue(f"omega_{k}", "omega", k, "linear", float(design.omega.get(k, OMEGA_START)), 1e-3, 5.0))
    if design.block:
        rows, cols = np.tril_indices(q, -1)
        for r, c in zip(rows, cols):
            values.append(OuterValue(f"chol_{random[r]}_{random[c]}", "cholesky", random[r], "linear", 0.0, -5.0, 5.0))
    if fd.estimate_sigma:
        values.append(OuterValue("sigma_res", "sigma", "", "linear", float(fd.sigma), 1e-3, 5.0))

    design_m = np.zeros((n_pat, m, n_beta))
    given = np.ones((n_pat, m), bool)
    outside = np.zeros((n_pat, m))
    labels = trial.labels
    for i in range(n_pat):
        for j, k in enumerate(names):
            e = trial.by_label[labels[trial.columns[i, j]]]
            if e.kind == "individual":
                design_m[i, j, index[("typical", k)]] = 1.0
            elif e in index:
                design_m[i, j, index[e]] = 1.0
            else:
                given[i, j] = False
                outside[i, j] = trial.start[trial.columns[i, j]]
    for j, col, x in cov_x:
        design_m[:, j, col] = x
    effects = np.zeros((n_pat, m, q))
    for r, k in enumerate(random):
        effects[:, names.index(k), r] = 1.0
    ctx = {"given": jnp.asarray(given), "outside": jnp.asarray(outside), "t": jnp.asarray(trial.t),
           "fixed": {k: jnp.asarray(v) for k, v in trial.fixed.items()},
           "doses": {k: (jnp.asarray(a), jnp.asarray(b)) for k, (a, b) in trial.doses.items()}}
    arrays = PopulationArrays(jnp.zeros((n_pat, m)), jnp.asarray(design_m), jnp.asarray(effects), jnp.asarray(trial.y),
                              jnp.asarray(trial.cens), jnp.asarray(trial.lloq), jnp.asarray(trial.mask), ctx)
    return PopulationProblem(model, design, trial.ids, tuple(dict.fromkeys(p.arm for p in pats)), names, random,
                             tuple(values), arrays, trial.fixed, trial.n_obs, int(trial.censored.sum()))
