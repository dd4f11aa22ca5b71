"""Fit specifications (``fits/NAME.toml``; docs/fitting.md): data file, model, free parameters (individual,
shared, per arm), bounds, options and the report's inputs, validated once with errors that name the file and key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from hcvdyn.estimate.design import FitDesign
from hcvdyn.estimate.optimize import check_bounds
from hcvdyn.estimate.population_design import Covariate, PopulationDesign
from hcvdyn.files import check_keys, find_fit_spec, find_model_file, load_toml, require
from hcvdyn.model.catalog import get_model
from hcvdyn.model.dosing import Regimen
from hcvdyn.model.drugs import get_drug
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import check_values
from hcvdyn.model.trial_design import load_trial
from hcvdyn.solve.options import SolverOptions

__all__ = ["FitSpec", "load_fit_spec"]


@dataclass(frozen=True)
class FitSpec:
    """A whole-trial fit specification (``fits/NAME.toml``; see docs/fitting.md): its data, model, arms' regimens
    and the fit's :class:`FitDesign` (``[parameters]``, ``[arms.<arm>]``, ``[free]``, ``[outside]``, ``[bounds]``, ``[options]``)."""

    name: str
    path: str
    data_path: str
    model: HCVModel
    design: FitDesign
    regimens_by_arm: Mapping[str, tuple[Regimen, ...]]
    report: Mapping[str, str] = field(default_factory=dict)  # pk_trial, scenarios, truth (``hcvdyn report``)
    population: PopulationDesign | None = None  # ``[population]``: a nonlinear mixed-effects fit instead of fit_trial
    dose_cmt: Mapping[int, str] = field(default_factory=dict)  # NONMEM CMT -> drug: the data's dose rows dose the fit

    def regimens_for(self, data) -> Mapping[str, tuple[Regimen, ...]]:
        """The arms' regimens for :func:`hcvdyn.estimate.fit.fit_trial`; no doses in any arm for a constant-mode model."""
        return self.regimens_by_arm or {a: () for a in data.arms}

    def read_data(self):
        """The specification's data file (:func:`hcvdyn.estimate.data.read_viral_loads`, dose rows read by ``dose_cmt``)."""
        from hcvdyn.estimate.data import read_viral_loads

        return read_viral_loads(self.data_path, dose_cmt=self.dose_cmt or None)



REPORT_KEYS = {"pk_trial": "a trial file whose regimens the PK/efficacy figure shows",
               "scenarios": "a scenario file run as the report's what-if comparison",
               "truth": "the truth file of synthetic data (true values drawn in the forest plot)"}



def _report_options(doc: Mapping, path: Path, where: str) -> dict[str, str]:
    rep = dict(doc.get("report", {}))
    check_keys(rep, set(REPORT_KEYS), f"{where}: [report]")
    out = {}
    for k, v in rep.items():
        if not isinstance(v, str):
            raise ValueError(f"{where}: [report] {k} must be a name or path ({REPORT_KEYS[k]}), got {v!r}")
        if k == "truth":
            f = path.parent / v
            if not f.is_file():
                raise ValueError(f"{where}: [report] truth file {str(f)!r} not found")
            out[k] = str(f)
        else:
            try:
                out[k] = str(find_model_file(v))
            except (FileNotFoundError, ValueError) as e:
                raise ValueError(f"{where}: [report] {k}: {e}") from None
    return out



def load_fit_spec(path: str | os.PathLike) -> FitSpec:
    """Read and validate a fit specification; errors name the file and the key."""
    path = find_fit_spec(path)
    doc = load_toml(path)
    where = str(path)
    check_keys(doc, {"name", "description", "data", "model", "trial", "parameters", "free", "outside", "bounds", "options", "report",
                      "dose_cmt", "population", "arms"}, where)
    data_path = path.parent / require(doc, "data", str, where)
    if not data_path.is_file():
        raise ValueError(f"{where}: data file {str(data_path)!r} not found")
    try:
        model = get_model(require(doc, "model", str, where))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    params = dict(doc.get("parameters", {}))
    check_values(model.params, params, where=f"{where}: [parameters]")
    free = require(doc, "free", dict, where)
    check_keys(free, {"individual", "shared", "per_arm"}, f"{where}: [free]")
    individual = tuple(free.get("individual", []))
    shared = {k: tuple(v) for k, v in free.get("shared", {}).items()}
    per_arm = {k: tuple(v) for k, v in free.get("per_arm", {}).items()}
    for k in (*individual, *shared, *per_arm):
        if k not in model.params:
            check_values(model.params, {k: 0.0}, where=f"{where}: [free]")
    outside = dict(doc.get("outside", {}))
    check_values(model.params, outside, where=f"{where}: [outside]")
    arm_params = {}
    for a, vals in dict(doc.get("arms", {})).items():
        if not isinstance(vals, dict):
            raise ValueError(f"{where}: [arms.{a}] must be a table of parameter values, got {vals!r}")
        check_values(model.params, vals, where=f"{where}: [arms.{a}]")
        arm_params[a] = vals
    bounds = {}
    for k, b in doc.get("bounds", {}).items():
        if not (isinstance(b, list) and len(b) == 2 and all(isinstance(x, (int, float)) for x in b)):
            raise ValueError(f"{where}: [bounds] {k}: write [lower, upper], got {b!r}")
        bounds[k] = (float(b[0]), float(b[1]))
    if k_unknown := [k for k in bounds if k not in model.params]:
        check_values(model.params, {k_unknown[0]: 0.0}, where=f"{where}: [bounds]")
    check_bounds(model, (*individual, *shared, *per_arm), bounds, model.defaults(**params), where)
    dose_cmt = {}
    for k, v in dict(doc.get("dose_cmt", {})).items():
        if not (k.isdigit() and isinstance(v, str)):
            raise ValueError(f"{where}: [dose_cmt] write compartment number = \"drug\", got {k} = {v!r}")
        try:
            dose_cmt[int(k)] = get_drug(v).name
        except ValueError as e:
            raise ValueError(f"{where}: [dose_cmt] {k}: {e}") from None
        if dose_cmt[int(k)] not in model.pk_drugs:
            raise ValueError(f"{where}: [dose_cmt] {k}: model {model.name} has no PK-mode drug {dose_cmt[int(k)]!r} (it has {model.pk_drugs})")
    regimens: dict[str, tuple[Regimen, ...]] = {}
    if "trial" in doc:
        trial = load_trial(doc["trial"])
        if trial.parameter_set.model != model and model.pk_drugs != trial.parameter_set.model.pk_drugs:
            raise ValueError(f"{where}: trial {trial.name!r} doses drugs {trial.parameter_set.model.pk_drugs}, model {model.name} has {model.pk_drugs}")
        regimens = dict(trial.arms)
    elif model.pk_drugs and not dose_cmt:
        raise ValueError(f"{where}: model {model.name} has PK-mode drugs {model.pk_drugs}: give a trial = \"...\" with the arms' regimens, "
                         "or a [dose_cmt] table to read the doses from the data's dose rows")
    opts = dict(doc.get("options", {}))
    check_keys(opts, {"residual_sd", "estimate_residual_sd", "atol", "max_nfev", "weight_kg", "n_starts", "seed"}, f"{where}: [options]")
    estimate_sigma = opts.get("estimate_residual_sd", False)
    if not isinstance(estimate_sigma, bool):
        raise ValueError(f"{where}: [options] estimate_residual_sd = {estimate_sigma!r} must be true or false")
    sigma = float(opts.get("residual_sd", 0.2))
    if not sigma > 0:
        raise ValueError(f"{where}: [options] residual_sd = {sigma} must be > 0 (log10 IU/mL)")
    for k, least in (("n_starts", 1), ("seed", 0), ("max_nfev", 1)):
        v = opts.get(k, least)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= least):
            raise ValueError(f"{where}: [options] {k} = {v!r} must be an integer >= {least}")
    try:
        design = FitDesign(individual=individual, shared=shared, per_arm=per_arm, params=params, sigma=sigma,
                           estimate_sigma=estimate_sigma, weight_kg=float(opts.get("weight_kg", 70.0)),
                           options=SolverOptions(atol=float(opts.get("atol", 1e-7))), outside=outside, bounds=bounds, arm_params=arm_params,
                           max_nfev=int(opts.get("max_nfev", 200)), n_starts=opts.get("n_starts", 1), seed=opts.get("seed", 0))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return FitSpec(name=doc.get("name", path.stem), path=str(path), data_path=str(data_path), model=model, design=design,
                   regimens_by_arm=regimens, report=_report_options(doc, path, where), dose_cmt=dose_cmt,
                   population=_population(doc, design, where) if "population" in doc else None)


def _population(doc: Mapping, design: FitDesign, where: str) -> PopulationDesign:
    """The ``[population]`` table: method, omega (starting SDs), block, covariates, covariance, max_iter."""
    pop = require(doc, "population", dict, where)
    at = f"{where}: [population]"
    check_keys(pop, {"method", "omega", "block", "covariates", "covariance", "max_iter"}, at)
    omega = dict(pop.get("omega", {}))
    covs = []
    for j, c in enumerate(pop.get("covariates", [])):
        if not isinstance(c, dict):
            raise ValueError(f"{at} covariates[{j}]: write {{ parameter = \"...\", column = \"...\" }}, got {c!r}")
        check_keys(c, {"parameter", "column", "form", "reference"}, f"{at} covariates[{j}]")
        covs.append(Covariate(require(c, "parameter", str, at), require(c, "column", str, at), c.get("form", "category"), c.get("reference")))
    block, max_iter = pop.get("block", False), pop.get("max_iter", 200)
    if not isinstance(block, bool):
        raise ValueError(f"{at} block = {block!r} must be true or false")
    if not (isinstance(max_iter, int) and not isinstance(max_iter, bool) and max_iter >= 1):
        raise ValueError(f"{at} max_iter = {max_iter!r} must be an integer >= 1")
    try:
        return PopulationDesign(fit=design, omega=omega, block=block, covariates=tuple(covs), method=pop.get("method", "foce-i"),
                                covariance=pop.get("covariance", "sandwich"), max_iter=max_iter)
    except ValueError as e:
        raise ValueError(f"{at}: {e}") from None
