"""Files: parameter sets and trial specifications (TOML), and results folders written all-or-nothing.

A parameter set (``models/NAME.toml``) names a model and gives values, each with its source::

    name = "neumann1998_10MU"
    model = "neumann1998"
    description = "..."
    [parameters]
    eps = { value = 0.95, source = "Neumann et al. 1998: 95% block at 10 MU/day" }

A trial specification names a parameter set and lists arms with their regimens (see
``models/celgosivir_phase2.toml``). Every problem is reported with the file and, where TOML gives
one, the line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .dosing import Regimen, regimen_from_dict
from .drugs import get_drug
from .models import HCVModel, get_model
from .parameters import check_values

__all__ = [
    "ParameterSet",
    "TrialSpec",
    "models_dir",
    "find_model_file",
    "list_parameter_sets",
    "load_toml",
    "load_parameter_set",
    "load_trial",
    "file_sha256",
    "write_results",
    "FitSpec",
    "load_fit_spec",
]


def models_dir() -> Path:
    """The bundled ``models/`` folder: $HCVDYN_MODELS, else the repository's, else ./models."""
    env = os.environ.get("HCVDYN_MODELS")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "models", Path.cwd() / "models"]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"no models/ folder found; looked in {', '.join(map(str, candidates))}; set HCVDYN_MODELS")


def find_model_file(name_or_path: str | os.PathLike) -> Path:
    """A parameter-set or trial file given by path or by name (``models/NAME.toml``)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.is_file():
        return p
    candidate = models_dir() / f"{p.stem if p.suffix == '.toml' else p.name}.toml"
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"no file {str(name_or_path)!r} and no {candidate}; available: {', '.join(list_parameter_sets())}")


def list_parameter_sets() -> list[str]:
    """Names of the TOML files in models/ (parameter sets, trials, populations, scenarios)."""
    return sorted(p.stem for p in models_dir().glob("*.toml"))


def load_toml(path: str | os.PathLike) -> dict:
    """Parse a TOML file; a syntax error names the file and the line."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: invalid TOML: {e}") from None


def _require(table: Mapping, key: str, kind, where: str):
    if key not in table:
        raise ValueError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise ValueError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _check_keys(table: Mapping, allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


@dataclass(frozen=True)
class ParameterSet:
    """Named parameter values for a model, each with its source; unlisted parameters take model defaults."""

    name: str
    model: HCVModel
    values: Mapping[str, float]
    sources: Mapping[str, str]
    description: str = ""
    path: str = ""

    def params(self, **overrides) -> dict[str, float]:
        """All parameters of the model: defaults, then this set's values, then ``overrides``."""
        return self.model.defaults(**{**self.values, **overrides})

    def source_of(self, name: str) -> str:
        return self.sources.get(name) or self.model.params[name].source


def load_parameter_set(name_or_path: str | os.PathLike) -> ParameterSet:
    """Read and validate a parameter set (models/NAME.toml); errors name the file and the parameter."""
    path = find_model_file(name_or_path)
    doc = load_toml(path)
    where = str(path)
    _check_keys(doc, {"name", "model", "description", "parameters"}, where)
    try:
        model = get_model(_require(doc, "model", str, where))
    except ValueError as e:
        raise ValueError(f"{where}: {e}" if where not in str(e) else str(e)) from None
    values, sources = {}, {}
    for pname, entry in _require(doc, "parameters", dict, where).items():
        pwhere = f"{where}: parameters.{pname}"
        if not isinstance(entry, dict):
            raise ValueError(f"{pwhere}: write {{ value = ..., source = \"...\" }} (every value needs its source)")
        _check_keys(entry, {"value", "source"}, pwhere)
        values[pname] = _require(entry, "value", (int, float), pwhere)
        sources[pname] = _require(entry, "source", str, pwhere)
        if not sources[pname].strip():
            raise ValueError(f"{pwhere}: empty source")
    check_values(model.params, values, where=where)
    full = {**model.params.defaults(), **values}
    model.check_steady_state(full, where=where)
    return ParameterSet(
        name=doc.get("name", path.stem), model=model, values=values, sources=sources,
        description=doc.get("description", ""), path=str(path),
    )


@dataclass(frozen=True)
class ArmTarget:
    """A trial's reported summary of one arm: completers n, mean week-12 log10 drop and EVR count (None = not
    reported), with its source; ``day2_mean``/``day2_se`` hold a literature anchor of the 0-48 h decline."""

    arm: str
    n: int
    mean_drop: float | None = None
    evr_count: int | None = None
    note: str = ""
    day2_mean: float | None = None
    day2_se: float | None = None

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"reported arm {self.arm!r}: n = {self.n} must be >= 1")
        if self.evr_count is not None and not 0 <= self.evr_count <= self.n:
            raise ValueError(f"reported arm {self.arm!r}: evr_count = {self.evr_count} outside [0, {self.n}]")
        if self.day2_mean is not None and not (self.day2_se and self.day2_se > 0):
            raise ValueError(f"reported arm {self.arm!r}: day2_mean needs a positive day2_se")


@dataclass(frozen=True)
class TrialSpec:
    """Arms with regimens, applied to one parameter set, sampled at ``sample_days``."""

    name: str
    parameter_set: ParameterSet
    arms: Mapping[str, tuple[Regimen, ...]]
    arm_descriptions: Mapping[str, str]
    sample_days: tuple[float, ...]
    duration_days: float
    weight_kg: float = 70.0
    lloq_log10: float = 1.176
    description: str = ""
    path: str = ""
    notes: Mapping[str, str] = field(default_factory=dict)
    population: str = ""  # the virtual population the trial is simulated on (models/NAME.toml)
    reported: Mapping[str, ArmTarget] = field(default_factory=dict)


def load_trial(name_or_path: str | os.PathLike) -> TrialSpec:
    """Read and validate a trial file: its parameter set, arms with regimens, sample days, assay limit."""
    path = find_model_file(name_or_path)
    doc = load_toml(path)
    where = str(path)
    _check_keys(
        doc,
        {"name", "description", "parameter_set", "population", "weight_kg", "duration_days", "sample_days", "lloq_iu_ml", "arms", "notes", "reported"},
        where,
    )
    try:
        pset = load_parameter_set(_require(doc, "parameter_set", str, where))
    except FileNotFoundError as e:
        raise ValueError(f"{where}: parameter_set: {e}") from None
    duration = float(_require(doc, "duration_days", (int, float), where))
    if duration <= 0:
        raise ValueError(f"{where}: duration_days = {duration} must be > 0")
    samples = tuple(float(x) for x in _require(doc, "sample_days", list, where))
    if any(b <= a for a, b in zip(samples, samples[1:])) or any(s < 0 or s > duration for s in samples):
        raise ValueError(f"{where}: sample_days must increase strictly within [0, duration_days]: {list(samples)}")
    lloq = float(doc.get("lloq_iu_ml", 15.0))
    if lloq <= 0:
        raise ValueError(f"{where}: lloq_iu_ml = {lloq} must be > 0")
    arms, descriptions = {}, {}
    for i, arm in enumerate(_require(doc, "arms", list, where)):
        awhere = f"{where}: arms[{i}]"
        _check_keys(arm, {"name", "description", "regimens"}, awhere)
        name = _require(arm, "name", str, awhere)
        if name in arms:
            raise ValueError(f"{awhere}: duplicate arm name {name!r}")
        regs = []
        for j, r in enumerate(arm.get("regimens", [])):
            reg = regimen_from_dict(r, where=f"{awhere} ({name}).regimens[{j}]")
            if reg.drug not in pset.model.pk_drugs:
                raise ValueError(f"{awhere} ({name}).regimens[{j}]: model {pset.model.name} has no PK-mode drug {reg.drug!r}")
            regs.append(reg)
        arms[name] = tuple(regs)
        descriptions[name] = arm.get("description", "")
    if not arms:
        raise ValueError(f"{where}: no arms")
    return TrialSpec(
        name=doc.get("name", path.stem), parameter_set=pset, arms=arms, arm_descriptions=descriptions,
        sample_days=samples, duration_days=duration, weight_kg=float(doc.get("weight_kg", 70.0)),
        lloq_log10=math.log10(lloq), description=doc.get("description", ""), path=str(path),
        notes=dict(doc.get("notes", {})), population=str(doc.get("population", "")),
        reported=_reported(doc.get("reported", {}), arms, where),
    )


def _reported(table: Mapping, arms: Mapping, where: str) -> dict[str, ArmTarget]:
    """The [reported.ARM] tables of a trial file: n, mean_drop, evr_count, source."""
    out = {}
    for arm, entry in table.items():
        rw = f"{where}: reported.{arm}"
        if arm not in arms:
            raise ValueError(f"{rw}: no arm {arm!r} in this trial ({', '.join(arms)})")
        _check_keys(entry, {"n", "mean_drop", "evr_count", "source"}, rw)
        n = _require(entry, "n", int, rw)
        mean = entry.get("mean_drop")
        if mean is not None and not (isinstance(mean, (int, float)) and math.isfinite(mean)):
            raise ValueError(f"{rw}: mean_drop = {mean!r} must be a number (log10)")
        evr = entry.get("evr_count")
        if evr is not None and not isinstance(evr, int):
            raise ValueError(f"{rw}: evr_count = {evr!r} must be a whole number")
        try:
            out[arm] = ArmTarget(arm, n, None if mean is None else float(mean), evr, _require(entry, "source", str, rw))
        except ValueError as e:
            raise ValueError(f"{rw}: {e}") from None
    return out


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (recorded in every results folder)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def write_results(folder: str | os.PathLike, writers: Mapping[str, object], force: bool = False) -> Path:
    """Write a results folder all-or-nothing.

    writers: file name -> str/bytes content, a JSON-able dict (for ``*.json``), or a callable taking the
    destination path (figures). Everything is written into a temporary sibling folder first; only when
    all files succeeded is it moved into place. An existing folder is refused unless ``force``, and is
    then replaced only after the new one is complete.
    """
    folder = Path(folder)
    if folder.exists() and not force:
        raise FileExistsError(f"{folder} already exists; use --force to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; results folders are ordinary folders
    try:
        for name, content in writers.items():
            dest = tmp / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if callable(content):
                content(dest)
            elif isinstance(content, bytes):
                dest.write_bytes(content)
            elif isinstance(content, str):
                dest.write_text(content)
            else:
                dest.write_text(json.dumps(content, indent=2, sort_keys=False, default=_json_default) + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


@dataclass(frozen=True)
class FitSpec:
    """A whole-trial fit specification (``fits/NAME.toml``); see docs/fitting.md."""

    name: str
    path: str
    data_path: str
    model: HCVModel
    params: Mapping[str, float]
    individual: tuple[str, ...]
    shared: Mapping[str, tuple[str, ...]]
    per_arm: Mapping[str, tuple[str, ...]]
    outside: Mapping[str, float]
    regimens_by_arm: Mapping[str, tuple[Regimen, ...]]
    sigma: float
    atol: float
    max_nfev: int
    weight_kg: float
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    report: Mapping[str, str] = field(default_factory=dict)  # pk_trial, scenarios, truth (``hcvdyn report``)
    n_starts: int = 1  # fit_trial's starts (the first from [parameters], the rest drawn with ``seed``)
    seed: int = 0
    dose_cmt: Mapping[int, str] = field(default_factory=dict)  # NONMEM CMT -> drug: the data's dose rows dose the fit
    estimate_sigma: bool = False  # [options] estimate_residual_sd: residual_sd is then the starting value

    def regimens_for(self, data) -> Mapping[str, tuple[Regimen, ...]]:
        """The arms' regimens for :func:`hcvdyn.fit.fit_trial`; no doses in any arm for a constant-mode model."""
        return self.regimens_by_arm or {a: () for a in data.arms}

    def fit_options(self) -> dict:
        """The keyword options of :func:`hcvdyn.fit.fit_trial` that this specification sets."""
        from .solve import SolverOptions

        return dict(sigma=self.sigma, weight_kg=self.weight_kg, options=SolverOptions(atol=self.atol), max_nfev=self.max_nfev,
                    outside=self.outside, bounds=self.bounds, n_starts=self.n_starts, seed=self.seed, estimate_sigma=self.estimate_sigma)

    def read_data(self):
        """The specification's data file (:func:`hcvdyn.data.read_viral_loads`, dose rows read by ``dose_cmt``)."""
        from .data import read_viral_loads

        return read_viral_loads(self.data_path, dose_cmt=self.dose_cmt or None)


REPORT_KEYS = {"pk_trial": "a trial file whose regimens the PK/efficacy figure shows",
               "scenarios": "a scenario file run as the report's what-if comparison",
               "truth": "the truth file of synthetic data (true values drawn in the forest plot)"}


def _report_options(doc: Mapping, path: Path, where: str) -> dict[str, str]:
    rep = dict(doc.get("report", {}))
    _check_keys(rep, set(REPORT_KEYS), f"{where}: [report]")
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
    path = Path(path)
    doc = load_toml(path)
    where = str(path)
    _check_keys(doc, {"name", "description", "data", "model", "trial", "parameters", "free", "outside", "bounds", "options", "report",
                      "dose_cmt"}, where)
    data_path = path.parent / _require(doc, "data", str, where)
    if not data_path.is_file():
        raise ValueError(f"{where}: data file {str(data_path)!r} not found")
    try:
        model = get_model(_require(doc, "model", str, where))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    params = dict(doc.get("parameters", {}))
    check_values(model.params, params, where=f"{where}: [parameters]")
    free = _require(doc, "free", dict, where)
    _check_keys(free, {"individual", "shared", "per_arm"}, f"{where}: [free]")
    individual = tuple(free.get("individual", []))
    shared = {k: tuple(v) for k, v in free.get("shared", {}).items()}
    per_arm = {k: tuple(v) for k, v in free.get("per_arm", {}).items()}
    for k in (*individual, *shared, *per_arm):
        if k not in model.params:
            check_values(model.params, {k: 0.0}, where=f"{where}: [free]")
    outside = dict(doc.get("outside", {}))
    check_values(model.params, outside, where=f"{where}: [outside]")
    bounds = {}
    for k, b in doc.get("bounds", {}).items():
        bwhere = f"{where}: [bounds] {k}"
        if k not in (*individual, *shared, *per_arm):
            raise ValueError(f"{bwhere}: {k!r} is not a free parameter")
        if not (isinstance(b, list) and len(b) == 2 and all(isinstance(x, (int, float)) for x in b)):
            raise ValueError(f"{bwhere}: write [lower, upper], got {b!r}")
        p = model.params[k]
        lo, hi = float(b[0]), float(b[1])
        if not (p.lower <= lo < hi <= p.upper):
            raise ValueError(f"{bwhere}: [{lo}, {hi}] must satisfy {p.lower} <= lower < upper <= {p.upper} ({p.unit})")
        start = params.get(k, p.default)
        if not lo <= start <= hi:
            raise ValueError(f"{bwhere}: start {start} outside [{lo}, {hi}]")
        bounds[k] = (lo, hi)
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
    _check_keys(opts, {"residual_sd", "estimate_residual_sd", "atol", "max_nfev", "weight_kg", "n_starts", "seed"}, f"{where}: [options]")
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
    return FitSpec(
        name=doc.get("name", path.stem), path=str(path), data_path=str(data_path), model=model, params=params,
        individual=individual, shared=shared, per_arm=per_arm, outside=outside, regimens_by_arm=regimens,
        sigma=sigma, atol=float(opts.get("atol", 1e-7)), max_nfev=int(opts.get("max_nfev", 200)),
        weight_kg=float(opts.get("weight_kg", 70.0)), bounds=bounds, report=_report_options(doc, path, where),
        n_starts=opts.get("n_starts", 1), seed=opts.get("seed", 0), dose_cmt=dose_cmt, estimate_sigma=estimate_sigma,
    )
