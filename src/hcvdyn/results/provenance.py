"""One provenance record for every results folder: the package version, the command, the model, the options, and
each input file with its SHA-256 and its path relative to the results folder, so that a folder moved together with
its inputs still finds them and a changed input is detected by its hash."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from hcvdyn.files import file_sha256
from hcvdyn.version import __version__

__all__ = ["input_record", "provenance", "input_path"]


def input_record(path, folder, **extra) -> dict:
    """``{**extra, "path": path relative to folder, "sha256": hex digest}`` of one input file."""
    path = Path(path).resolve()
    return {**extra, "path": os.path.relpath(path, Path(folder).resolve()), "sha256": file_sha256(path)}


def provenance(command: str, folder, inputs: Mapping[str, object], model: str | None = None,
               options: Mapping | None = None, **fields) -> dict:
    """The ``result.json``/``run.json`` record of a results folder.

    inputs: role -> path, or role -> (path, {extra fields such as name}); each becomes an :func:`input_record`.
    fields: further top-level entries (results, summaries), written after the provenance entries.
    """
    records = {}
    for role, entry in inputs.items():
        path, extra = entry if isinstance(entry, tuple) else (entry, {})
        records[role] = input_record(path, folder, **extra)
    return {"hcvdyn_version": __version__, "command": command, "inputs": records, "model": model,
            "options": dict(options or {}), **fields}


def input_path(folder, record: Mapping, role: str) -> Path:
    """The input ``role`` of a provenance ``record``, resolved against its results ``folder``; FileNotFoundError
    names the folder, the role and the path when the file is not there."""
    try:
        rel = record["inputs"][role]["path"]
    except KeyError:
        raise ValueError(f"{folder}: its result.json records no input {role!r}") from None
    path = (Path(folder) / rel).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: input {role!r} recorded at {rel} (relative to the folder) is not there: {path}")
    return path
