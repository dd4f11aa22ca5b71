"""Files: where declared files are found (bundled in the package, or the user's), TOML reading with checks
that name the file and key, and file hashes.

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
from importlib import resources
from pathlib import Path
from typing import Mapping

__all__ = [
    "bundled_folder",
    "model_folders",
    "find_fit_spec",
    "find_model_file",
    "list_parameter_sets",
    "load_toml",
    "file_sha256",
]


def bundled_folder(kind: str) -> Path:
    """The folder of files that ship inside the package: ``"models"`` (parameter sets, trials, populations,
    scenarios) or ``"fits"`` (fit specifications with their data). In a source checkout these are the
    repository's top-level folders (linked from ``src/hcvdyn/bundled/``)."""
    if kind not in ("models", "fits"):
        raise ValueError(f"bundled_folder: kind = {kind!r} must be 'models' or 'fits'")
    return Path(str(resources.files("hcvdyn") / "bundled" / kind))


def model_folders() -> list[Path]:
    """Folders searched for ``NAME.toml``, the first match winning: each folder of $HCVDYN_MODELS
    (separated by the path separator), a ``models/`` folder in the working directory, the bundled sets."""
    env = os.environ.get("HCVDYN_MODELS", "")
    folders = [Path(f) for f in env.split(os.pathsep) if f] + [Path.cwd() / "models", bundled_folder("models")]
    unique = []
    for f in folders:
        if f.is_dir() and all(f.resolve() != u.resolve() for u in unique):
            unique.append(f)
    return unique


def find_model_file(name_or_path: str | os.PathLike) -> Path:
    """A parameter-set or trial file given by path or by name (``NAME`` or ``NAME.toml``, see :func:`model_folders`)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.is_file():
        return p
    stem = p.stem if p.suffix == ".toml" else p.name
    for folder in model_folders():
        if (folder / f"{stem}.toml").is_file():
            return folder / f"{stem}.toml"
    raise FileNotFoundError(f"no file {str(name_or_path)!r} and no {stem}.toml in {', '.join(map(str, model_folders()))}; "
                            f"available: {', '.join(list_parameter_sets())}")


def find_fit_spec(name_or_path: str | os.PathLike) -> Path:
    """A fit specification given by path, or by name: ``fits/NAME.toml`` in the working directory, else the bundled one."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    stem = p.stem if p.suffix == ".toml" else p.name
    for folder in (Path.cwd() / "fits", bundled_folder("fits")):
        if (folder / f"{stem}.toml").is_file():
            return folder / f"{stem}.toml"
    raise FileNotFoundError(f"{name_or_path}: no such fit specification (nor fits/{stem}.toml here or bundled)")


def list_parameter_sets() -> list[str]:
    """Names of the TOML files that :func:`find_model_file` can find (parameter sets, trials, populations, scenarios)."""
    return sorted({p.stem for folder in model_folders() for p in folder.glob("*.toml")})


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
