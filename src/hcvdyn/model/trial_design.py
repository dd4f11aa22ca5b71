"""Trial designs (``models/NAME.toml``): arms with their regimens applied to a parameter set, sample days, the
assay limit and the trial's reported top line per arm. Every problem names the file and, where TOML gives one, the key.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Mapping

from hcvdyn.files import check_keys, find_model_file, load_toml, require
from hcvdyn.model.dosing import Regimen, regimen_from_dict
from hcvdyn.model.library import ParameterSet, load_parameter_set

__all__ = ["ArmTarget", "TrialSpec", "load_trial"]


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
    check_keys(
        doc,
        {"name", "description", "parameter_set", "population", "weight_kg", "duration_days", "sample_days", "lloq_iu_ml", "arms", "notes", "reported"},
        where,
    )
    try:
        pset = load_parameter_set(require(doc, "parameter_set", str, where))
    except FileNotFoundError as e:
        raise ValueError(f"{where}: parameter_set: {e}") from None
    duration = float(require(doc, "duration_days", (int, float), where))
    if duration <= 0:
        raise ValueError(f"{where}: duration_days = {duration} must be > 0")
    samples = tuple(float(x) for x in require(doc, "sample_days", list, where))
    if any(b <= a for a, b in zip(samples, samples[1:])) or any(s < 0 or s > duration for s in samples):
        raise ValueError(f"{where}: sample_days must increase strictly within [0, duration_days]: {list(samples)}")
    lloq = float(doc.get("lloq_iu_ml", 15.0))
    if lloq <= 0:
        raise ValueError(f"{where}: lloq_iu_ml = {lloq} must be > 0")
    arms, descriptions = {}, {}
    for i, arm in enumerate(require(doc, "arms", list, where)):
        awhere = f"{where}: arms[{i}]"
        check_keys(arm, {"name", "description", "regimens"}, awhere)
        name = require(arm, "name", str, awhere)
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
        check_keys(entry, {"n", "mean_drop", "evr_count", "source"}, rw)
        n = require(entry, "n", int, rw)
        mean = entry.get("mean_drop")
        if mean is not None and not (isinstance(mean, (int, float)) and math.isfinite(mean)):
            raise ValueError(f"{rw}: mean_drop = {mean!r} must be a number (log10)")
        evr = entry.get("evr_count")
        if evr is not None and not isinstance(evr, int):
            raise ValueError(f"{rw}: evr_count = {evr!r} must be a whole number")
        try:
            out[arm] = ArmTarget(arm, n, None if mean is None else float(mean), evr, require(entry, "source", str, rw))
        except ValueError as e:
            raise ValueError(f"{rw}: {e}") from None
    return out
