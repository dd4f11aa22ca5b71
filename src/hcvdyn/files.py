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
import os
import tomllib
from pathlib import Path
from typing import Mapping

__all__ = [
    "models_dir",
    "find_model_file",
    "list_parameter_sets",
    "load_toml",
    "file_sha256",
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


def require(table: Mapping, key: str, kind, where: str):
    if key not in table:
        raise ValueError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise ValueError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def check_keys(table: Mapping, allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (recorded in every results folder)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()
