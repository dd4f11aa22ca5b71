"""Results folders written all-or-nothing, CSV tables written and read back with their types.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping


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



import csv
import io as _io

import numpy as np

__all__ = ["write_results", "rows_csv", "read_csv"]


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    return f"{v:.8g}"



def rows_csv(rows: list[dict]) -> str:
    """CSV of dicts with the same keys (numbers to 8 significant digits)."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = list(rows[0]) if rows else []
    w.writerow(header)
    w.writerows([[_fmt(r[k]) for k in header] for r in rows])
    return buf.getvalue()



TEXT_COLUMNS = {"id", "arm", "name", "parameter", "kind", "patient_or_arm", "unit", "group", "scenario", "reference"}



def read_csv(path) -> list[dict]:
    """Rows of a results CSV; numeric cells as floats (text columns kept), empty cells as NaN."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            conv = {}
            for k, v in row.items():
                if k in TEXT_COLUMNS:
                    conv[k] = v
                    continue
                try:
                    conv[k] = float(v) if v != "" else math.nan
                except ValueError:
                    conv[k] = v
            out.append(conv)
    return out
