"""Declared parameter sets (``models/NAME.toml``): named values for a model, each with its source; unlisted
parameters take the model's defaults. Read and validated here, with errors that name the file and the parameter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from hcvdyn.files import check_keys, find_model_file, load_toml, require
from hcvdyn.model.catalog import get_model
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import check_values

__all__ = ["ParameterSet", "load_parameter_set"]


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
    check_keys(doc, {"name", "model", "description", "parameters"}, where)
    try:
        model = get_model(require(doc, "model", str, where))
    except ValueError as e:
        raise ValueError(f"{where}: {e}" if where not in str(e) else str(e)) from None
    values, sources = {}, {}
    for pname, entry in require(doc, "parameters", dict, where).items():
        pwhere = f"{where}: parameters.{pname}"
        if not isinstance(entry, dict):
            raise ValueError(f"{pwhere}: write {{ value = ..., source = \"...\" }} (every value needs its source)")
        check_keys(entry, {"value", "source"}, pwhere)
        values[pname] = require(entry, "value", (int, float), pwhere)
        sources[pname] = require(entry, "source", str, pwhere)
        if not sources[pname].strip():
            raise ValueError(f"{pwhere}: empty source")
    check_values(model.params, values, where=where)
    full = {**model.params.defaults(), **values}
    model.check_steady_state(full, where=where)
    return ParameterSet(
        name=doc.get("name", path.stem), model=model, values=values, sources=sources,
        description=doc.get("description", ""), path=str(path),
    )
