"""The design of a whole-trial fit: which parameters are estimated for whom and with which options
(:class:`FitDesign`, validated once), and who owns each estimated value (:class:`Estimate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from numbers import Integral
from typing import Mapping, Sequence

from hcvdyn.estimate.optimize import check_bounds
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import check_values
from hcvdyn.solve.options import SolverOptions

__all__ = ["Estimate", "ESTIMATE_KINDS", "FitDesign", "design_of"]

ESTIMATE_KINDS = ("individual", "shared", "per_arm", "outside")


@dataclass(frozen=True)
class Estimate:
    """One value of a whole-trial problem: model parameter ``name``, owned by a patient, an arm or the trial.

    kind: "individual" (``owner`` a patient id), "per_arm" (``owner`` an arm), "shared" (no owner: one value in
    the arms it applies in) or "outside" (no owner: the fixed value a shared parameter takes in the other arms).
    """

    name: str
    kind: str
    owner: str | None = None

    def __post_init__(self):
        if self.kind not in ESTIMATE_KINDS:
            raise ValueError(f"Estimate {self.name!r}: kind {self.kind!r} is not one of {ESTIMATE_KINDS}")
        if (self.owner is None) != (self.kind in ("shared", "outside")):
            raise ValueError(f"Estimate {self.name!r}: a {self.kind} value {'needs an' if self.owner is None else 'has no'} owner")

    @property
    def label(self) -> str:
        """The lmfit name, the key of ``TrialFit.values``: ``name`` (shared), ``name__fixed`` (outside), else ``name__owner``."""
        if self.kind == "shared":
            return self.name
        return f"{self.name}__{'fixed' if self.kind == 'outside' else self.owner}"


def _arms_by_name(spec, what: str) -> dict[str, tuple[str, ...] | None]:
    if isinstance(spec, str):
        raise ValueError(f"FitDesign: {what} = {spec!r} must be a list of names or a mapping name -> arms")
    if isinstance(spec, Mapping):
        return {k: None if v is None else _names(v, f"{what} {k!r}") for k, v in spec.items()}
    return {k: None for k in spec}


def _names(v, what: str) -> tuple[str, ...]:
    if isinstance(v, str):
        raise ValueError(f"FitDesign: {what} = {v!r} must be a list, not one string")
    return tuple(v)


def _bound_pair(k: str, b) -> tuple[float, float]:
    try:
        lo, hi = b
        return float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"FitDesign: bounds of {k!r} must be (lower, upper), got {b!r}") from None


@dataclass(frozen=True, kw_only=True)
class FitDesign:
    """What a whole-trial fit (:func:`hcvdyn.estimate.fit.fit_trial`) estimates, and how; checked on construction
    for what needs no model, by :meth:`check` against the model and the data's arms.

    individual: parameters estimated per patient (e.g. log10_V0, delta).
    shared: one value for all patients (e.g. a drug's EC50); as a mapping name -> arms in which that one value
        applies (None: every arm), fixed at ``outside`` in the other arms (e.g. ribavirin's rho where it is not given).
    per_arm: one value per arm (e.g. eps); as a mapping name -> arms in which it is estimated (None: every arm),
        fixed at ``outside`` in the others (e.g. celgosivir's phi = 0 under placebo).
    params: values of fixed parameters and starting values of free ones (model defaults otherwise).
    sigma: residual SD (log10 IU/mL); with ``estimate_sigma`` its starting value.
    weight_kg: body weight for weight-based doses (kg). options: the solver's options.
    outside: value of a shared or per-arm parameter in the arms where it is not estimated; default 0 for the
        constant-mode drug effects (eps, eta, rho, phi, sigma: a drug not given has no effect), else its start.
    bounds: name -> (lower, upper) narrowing the declared admissible range of a free parameter.
    arm_params: arm -> {name: value}, fixed values that differ between arms (e.g. ribavirin's rho from the
        literature in the arms that receive it, 0 in the other); they override ``params`` in those arms and may not
        be estimated.
    max_nfev: evaluations per least-squares run. n_starts, seed: starts of the multi-start fit (the first at
        ``params``, the others with the shared and per-arm values drawn in their bounds, seeded).
    """

    individual: tuple[str, ...] = ()
    shared: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)
    per_arm: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)
    params: Mapping[str, float] = field(default_factory=dict)
    sigma: float = 0.2
    estimate_sigma: bool = False
    weight_kg: float = 70.0
    options: SolverOptions = SolverOptions(atol=1e-7)
    outside: Mapping[str, float] = field(default_factory=dict)
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    arm_params: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    max_nfev: int = 200
    n_starts: int = 1
    seed: int = 0

    def __post_init__(self):
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        put("individual", _names(self.individual, "individual"))
        put("shared", _arms_by_name(self.shared, "shared"))
        put("per_arm", _arms_by_name(self.per_arm, "per_arm"))
        put("params", dict(self.params or {}))
        put("outside", dict(self.outside or {}))
        put("bounds", {k: _bound_pair(k, b) for k, b in (self.bounds or {}).items()})
        put("arm_params", {str(a): {str(k): float(v) for k, v in dict(vals).items()} for a, vals in (self.arm_params or {}).items()})
        free = self.free
        dup = {k for k in free if free.count(k) > 1}
        if dup:
            raise ValueError(f"FitDesign: parameter(s) {sorted(dup)} listed in more than one of individual/shared/per_arm")
        for a, vals in self.arm_params.items():
            if both := sorted(set(vals) & set(free)):
                raise ValueError(f"FitDesign: arm_params {a!r} fixes {both}, which the fit estimates")
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"FitDesign: sigma = {self.sigma} must be a positive number (log10 IU/mL)")
        for k, least in (("n_starts", 1), ("max_nfev", 1), ("seed", 0)):
            v = getattr(self, k)
            if not (isinstance(v, Integral) and not isinstance(v, bool) and v >= least):
                raise ValueError(f"FitDesign: {k} = {v!r} must be >= {least}" + ("" if isinstance(v, Integral) else " (an integer)"))
        if not (self.weight_kg > 0 and math.isfinite(self.weight_kg)):
            raise ValueError(f"FitDesign: weight_kg = {self.weight_kg} must be a positive number (kg)")
        if not isinstance(self.options, SolverOptions):
            raise ValueError(f"FitDesign: options must be a SolverOptions, got {type(self.options).__name__}")

    @property
    def free(self) -> tuple[str, ...]:
        """Every estimated parameter: individual, then shared, then per-arm ones."""
        return (*self.individual, *self.shared, *self.per_arm)

    def start_values(self, model: HCVModel) -> dict[str, float]:
        """Every parameter of ``model``: ``params`` over its defaults."""
        return model.defaults(**self.params)

    def arm_values(self, model: HCVModel, arm: str) -> dict[str, float]:
        """Every parameter of ``model`` in ``arm``: :meth:`start_values` with the arm's ``arm_params`` over them."""
        return self.start_values(model) | dict(self.arm_params.get(arm, {}))

    def check(self, model: HCVModel, arms: Sequence[str], where: str = "fit_trial") -> FitDesign:
        """This design checked against ``model`` and the data's ``arms`` (names, arms, values, bounds, steady
        state), with the arms of every shared and per-arm parameter made explicit."""
        arms = tuple(arms)
        for what, spec in (("per_arm", self.per_arm), ("shared", self.shared)):
            for k, in_arms in spec.items():
                unknown = [a for a in in_arms or () if a not in arms]
                if unknown:
                    raise ValueError(f"{where}: {what} {k!r} names arm(s) {unknown} not in the data (arms: {list(arms)})")
        if unknown := sorted(set(self.arm_params) - set(arms)):
            raise ValueError(f"{where}: arm_params names arm(s) {unknown} not in the data (arms: {list(arms)})")
        for a, vals in self.arm_params.items():
            check_values(model.params, vals, where=f"{where}: arm_params {a!r}")
            model.check_steady_state(self.arm_values(model, a), where=f"{where}: arm {a!r}")
        for k in self.free:
            if k not in model.params:
                check_values(model.params, {k: 0.0}, where=where)
        check_values(model.params, self.outside, where=f"{where}: outside")
        values = self.start_values(model)
        model.check_steady_state(values, where=where)
        check_bounds(model, self.free, self.bounds, values, where)
        explicit = lambda spec: {k: arms if v is None else v for k, v in spec.items()}  # noqa: E731
        return replace(self, shared=explicit(self.shared), per_arm=explicit(self.per_arm))

    def population_estimates(self, arms: Sequence[str]) -> tuple[Estimate, ...]:
        """The shared and per-arm estimates (not the per-patient ones), per-arm ones in the data's ``arms``
        where no arms are named."""
        return (*(Estimate(k, "shared") for k in self.shared),
                *(Estimate(k, "per_arm", a) for k, in_arms in self.per_arm.items() for a in (arms if in_arms is None else in_arms)))


FIELDS = frozenset(f.name for f in fields(FitDesign))


def design_of(design: FitDesign | None, design_fields: Mapping, where: str) -> FitDesign:
    """``design``, or a :class:`FitDesign` of ``design_fields`` (keyword arguments of ``where``) when it is None."""
    if design is None:
        unknown = sorted(set(design_fields) - FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown argument(s) {unknown}; the design's fields are {sorted(FIELDS)}")
        return FitDesign(**design_fields)
    if not isinstance(design, FitDesign):
        raise ValueError(f"{where}: design = {design!r} must be a FitDesign (the fit's free parameters and options)")
    if design_fields:
        raise ValueError(f"{where}: give a FitDesign or its fields {sorted(design_fields)}, not both")
    return design
