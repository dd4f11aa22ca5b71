"""Viral-load data: patient series with censoring, and the CSV reader that validates them.

Two layouts are read (one row per sample; header names are case-insensitive):

* **long**: ``id``, ``arm`` (optional), ``group`` (optional), a time column ``time_days`` /
  ``time_weeks`` / ``time_hours`` (or ``time`` with ``time_unit=``), a load column ``log10_vl``
  (log10 IU/mL) or ``vl_iu_ml`` (IU/mL) (or ``vl`` with ``vl_scale=``), and censoring either as a
  flag column ``cens`` (1 = below the limit) with ``lloq`` (IU/mL), or as text in the load column
  (``<15``, ``TND``, ``undetectable``, ``BLQ``) with the limit from ``lloq`` or ``default_lloq``.
  A limit written as ``<15`` is always in IU/mL, whatever the scale of the load column.
  Any other numeric column is kept as a covariate.
* **NONMEM**: ``ID``, ``TIME``, ``DV``, optional ``CENS``, ``LLOQ``, ``MDV``, ``EVID``, ``AMT``,
  ``CMT``, ``ADDL``, ``II``, ``RATE``, ``SS``. DV is log10 IU/mL unless ``vl_scale`` says otherwise;
  TIME (and II) are in ``time_unit`` (default days). Dose rows (``EVID`` 1 or 4; without an EVID
  column, a non-zero ``AMT``) become the patient's :class:`~hcvdyn.model.dosing.DoseRecord` s when
  ``dose_cmt`` maps each ``CMT`` to a drug: AMT is in the drug's dose unit (ug peginterferon, mg
  otherwise), ``ADDL`` further doses follow every ``II``; infusions (RATE) and steady-state doses
  (SS) are refused. Without ``dose_cmt`` dose rows are skipped and the fit uses the arms' regimens.
  Other rows with ``EVID`` != 0 or ``MDV`` = 1 are skipped.

Censored samples carry the log10 limit as their value and ``censored = True`` (M3 method, Beal 2001).
Lines starting with ``#`` before the header are comments (provenance). Every problem is reported as
``FILE:LINE: column COL: ...``.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from hcvdyn.model.dosing import DoseRecord

__all__ = ["PatientData", "Dataset", "read_viral_loads", "CENSORED_WORDS"]

CENSORED_WORDS = {"tnd", "undetectable", "blq", "bloq", "not detected", "nd", "<lloq"}
TIME_FACTORS = {"day": 1.0, "days": 1.0, "week": 7.0, "weeks": 7.0, "hour": 1 / 24, "hours": 1 / 24}


@dataclass(frozen=True)
class PatientData:
    """One patient's series. ``log10_vl`` holds the log10 limit where ``censored`` is True."""

    id: str
    arm: str
    t_days: np.ndarray
    log10_vl: np.ndarray
    censored: np.ndarray
    lloq_log10: np.ndarray
    group: str = ""
    covariates: Mapping[str, float] = field(default_factory=dict)
    doses: tuple[DoseRecord, ...] = ()  # doses as given (NONMEM dose rows); empty: the arm's regimens apply

    @property
    def n_obs(self) -> int:
        return int(self.t_days.size)


@dataclass(frozen=True)
class Dataset:
    patients: tuple[PatientData, ...]
    path: str = ""

    def __iter__(self):
        return iter(self.patients)

    def __len__(self):
        return len(self.patients)

    def by_id(self, pid: str) -> PatientData:
        for p in self.patients:
            if p.id == pid:
                return p
        raise KeyError(pid)

    @property
    def arms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.arm for p in self.patients))

    def rows(self) -> list[dict]:
        """One row per sample (id, arm, group, day, log10_vl, censored, lloq_log10): the ``observations.csv`` of a
        results folder, from which its figures are drawn (dose records and covariates are not part of it)."""
        return [{"id": p.id, "arm": p.arm, "group": p.group, "day": float(t), "log10_vl": float(y), "censored": bool(c),
                 "lloq_log10": float(q)}
                for p in self.patients for t, y, c, q in zip(p.t_days, p.log10_vl, p.censored, p.lloq_log10)]

    @classmethod
    def from_rows(cls, rows, path: str = "") -> "Dataset":
        """The inverse of :meth:`rows` (rows as read back by :func:`hcvdyn.results.writers.read_csv`)."""
        series: dict[str, list] = {}
        for r in rows:
            series.setdefault(str(r["id"]), []).append(r)
        return cls(tuple(
            PatientData(pid, str(rs[0]["arm"]), np.array([r["day"] for r in rs], float), np.array([r["log10_vl"] for r in rs], float),
                        np.array([bool(r["censored"]) for r in rs]), np.array([r["lloq_log10"] for r in rs], float), str(rs[0]["group"]))
            for pid, rs in series.items()), path)


class _Err(ValueError):
    pass


def _num(text: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise _Err(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise _Err(f"{where}: {text!r} is not finite")
    return v


def _nonzero(text: str) -> bool:
    try:
        return float(text) != 0.0
    except ValueError:
        return bool(text)  # not a number: read as a dose row, where _dose_row names the problem


def _id_time(cell, at, id_col, t_col, t_factor) -> tuple[str, float]:
    """A row's patient id and time in days; _Err for an empty id or a negative time."""
    pid = cell(id_col)
    if not pid:
        raise _Err(f"{at(id_col)}: empty patient id")
    t = _num(cell(t_col), at(t_col)) * t_factor
    if t < 0:
        raise _Err(f"{at(t_col)}: negative time {cell(t_col)}")
    return pid, t


def _dose_row(cell, col, at, dose_cmt, t_factor, dosed, lineno, id_col, t_col) -> None:
    """One NONMEM dose row (with its ADDL repeats) into ``dosed``; _Err names the line and column."""
    pid, t = _id_time(cell, at, id_col, t_col, t_factor)
    for name in ("rate", "ss"):
        if name in col and cell(name) and _nonzero(cell(name)):
            raise _Err(f"{at(name.upper())}: {name.upper()} = {cell(name)}: infusions and steady-state doses are not supported (give bolus doses)")
    if "cmt" not in col or not cell("cmt"):
        raise _Err(f"{at('CMT')}: a dose row needs its compartment (CMT) to know the drug")
    cmt = _num(cell("cmt"), at("CMT"))
    if cmt != int(cmt) or int(cmt) not in dose_cmt:
        raise _Err(f"{at('CMT')}: compartment {cell('cmt')} is not in dose_cmt {dict(sorted(dose_cmt.items()))}")
    amt = _num(cell("amt") if "amt" in col else "", at("AMT"))
    if amt < 0:
        raise _Err(f"{at('AMT')}: negative dose {cell('amt')}")
    addl = _num(cell("addl"), at("ADDL")) if "addl" in col and cell("addl") else 0.0
    if addl < 0 or addl != int(addl):
        raise _Err(f"{at('ADDL')}: ADDL = {cell('addl')} must be a whole number >= 0")
    ii = _num(cell("ii"), at("II")) * t_factor if "ii" in col and cell("ii") else 0.0
    if addl > 0 and ii <= 0:
        raise _Err(f"{at('II')}: ADDL = {int(addl)} further doses need an interval II > 0")
    rec = dosed.setdefault(pid, {"first": lineno})
    rec.setdefault(dose_cmt[int(cmt)], []).extend((t + k * ii, amt) for k in range(int(addl) + 1))


def read_viral_loads(
    path: str | os.PathLike,
    time_unit: str | None = None,
    vl_scale: str | None = None,
    default_lloq: float | None = None,
    dose_cmt: Mapping[int, str] | None = None,
) -> Dataset:
    """Read and validate a viral-load CSV (module docstring); ValueError names file, line and column.

    dose_cmt: NONMEM compartment number -> drug name, to read dose rows as each patient's doses.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if time_unit is not None and time_unit not in TIME_FACTORS:
        raise ValueError(f"time_unit {time_unit!r}: use one of {sorted(set(TIME_FACTORS))}")
    if vl_scale not in (None, "log10", "linear"):
        raise ValueError(f"vl_scale {vl_scale!r}: use 'log10' or 'linear'")
    if default_lloq is not None and not (default_lloq > 0 and math.isfinite(default_lloq)):
        raise ValueError(f"default_lloq = {default_lloq} must be a positive number (IU/mL)")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    skip = 0
    while skip < len(rows) and (not rows[skip] or rows[skip][0].lstrip().startswith("#")):
        skip += 1  # leading comment lines (provenance); line numbers below stay those of the file
    if skip == len(rows):
        raise ValueError(f"{path}: empty file")
    header_line = skip + 1
    header = [h.strip().lower() for h in rows[skip]]
    col = {h: i for i, h in enumerate(header)}
    nonmem = "dv" in col and "id" in col

    def need(*names):
        for n in names:
            if n in col:
                return n
        raise ValueError(f"{path}:{header_line}: missing column: one of {', '.join(names)} (found {', '.join(header)})")

    id_col = need("id")
    if nonmem:
        t_col, t_factor = need("time"), TIME_FACTORS[time_unit or "day"]
        vl_col, scale = "dv", vl_scale or "log10"
    else:
        t_col = need("time_days", "time_weeks", "time_hours", "time")
        if t_col == "time":
            if time_unit is None:
                raise ValueError(f"{path}:{header_line}: column 'time' needs a declared unit (time_unit = 'day', 'week' or 'hour'), or name it time_days/time_weeks/time_hours")
            t_factor = TIME_FACTORS[time_unit]
        else:
            t_factor = TIME_FACTORS[t_col.split("_")[1]]
        vl_col = need("log10_vl", "vl_iu_ml", "vl")
        if vl_col == "vl" and vl_scale is None:
            raise ValueError(f"{path}:{header_line}: column 'vl' needs a declared scale (vl_scale = 'log10' or 'linear'), or name it log10_vl/vl_iu_ml")
        scale = {"log10_vl": "log10", "vl_iu_ml": "linear"}.get(vl_col, vl_scale)
    cens_col = "cens" if "cens" in col else None
    lloq_col = "lloq" if "lloq" in col else None
    known = {id_col, t_col, vl_col, "arm", "group", "cens", "lloq", "mdv", "evid", "amt", "cmt", "rate", "ss", "ii", "addl"}
    cov_cols = [h for h in header if h not in known and h]

    if dose_cmt is not None:
        from hcvdyn.model.drugs import get_drug

        dose_cmt = {int(k): get_drug(v).name for k, v in dose_cmt.items()}
    series: dict[str, dict] = {}
    dosed: dict[str, dict] = {}  # patient id -> {"first": line, drug: [(t, amount), ...]}
    for lineno, row in enumerate(rows[skip + 1 :], start=header_line + 1):
        if not row or all(not c.strip() for c in row):
            continue
        try:
            if len(row) != len(header):
                raise _Err(f"{path}:{lineno}: {len(row)} fields, header has {len(header)}")
            cell = lambda name: row[col[name]].strip()  # noqa: E731
            at = lambda name: f"{path}:{lineno}: column {name}"  # noqa: E731
            if nonmem:
                evid = cell("evid") if "evid" in col else ""
                is_dose = evid in ("1", "4") or (not evid and "amt" in col and _nonzero(cell("amt")))
                if is_dose and dose_cmt is not None:
                    _dose_row(cell, col, at, dose_cmt, t_factor, dosed, lineno, id_col, t_col)
                    continue
                if evid not in ("", "0") or is_dose:
                    continue
                if "mdv" in col and cell("mdv") not in ("", "0"):
                    continue
            pid, t = _id_time(cell, at, id_col, t_col, t_factor)
            lloq = None
            if lloq_col and cell(lloq_col):
                lloq = _num(cell(lloq_col), at(lloq_col))
                if lloq <= 0:
                    raise _Err(f"{at(lloq_col)}: limit {lloq} must be > 0 IU/mL")
            lloq = lloq if lloq is not None else default_lloq
            raw = cell(vl_col)
            flag = False
            if cens_col and cell(cens_col):
                c = cell(cens_col)
                if c not in ("0", "1"):
                    raise _Err(f"{at(cens_col)}: censoring flag {c!r} must be 0 or 1")
                flag = c == "1"
            low = raw.lower()
            text_limit = None
            if low.startswith("<"):
                text_limit = _num(raw[1:].strip(), at(vl_col))
                flag = True
            elif low in CENSORED_WORDS:
                flag = True
            if flag:
                limit = text_limit if text_limit is not None else lloq
                if limit is None:
                    raise _Err(f"{at(vl_col)}: censored sample {raw!r} without a limit (give an lloq column or default_lloq)")
                if limit <= 0:
                    raise _Err(f"{at(vl_col)}: limit {limit} must be > 0 IU/mL")
                log_limit = math.log10(limit)
                if raw and not low.startswith("<") and low not in CENSORED_WORDS:
                    v = _num(raw, at(vl_col))
                    value = v if scale == "log10" else (math.log10(v) if v > 0 else -math.inf)
                    if value > log_limit + 1e-9:
                        raise _Err(f"{at(vl_col)}: censored value {raw} is above its limit {limit:g} IU/mL")
                y, cens = log_limit, True
            else:
                v = _num(raw, at(vl_col))
                if scale == "linear":
                    if v <= 0:
                        raise _Err(f"{at(vl_col)}: viral load {v} IU/mL must be > 0 (mark values below the limit as censored)")
                    y = math.log10(v)
                else:
                    if v < 0:
                        raise _Err(f"{at(vl_col)}: negative log10 viral load {v}")
                    y = v
                cens = False
                log_limit = math.log10(lloq) if lloq else -math.inf
            rec = series.setdefault(
                pid,
                {"arm": cell("arm") if "arm" in col else "", "group": cell("group") if "group" in col else "",
                 "t": [], "y": [], "c": [], "l": [], "lines": [], "cov": {}},
            )
            if rec["t"]:
                if t == rec["t"][-1]:
                    raise _Err(f"{at(t_col)}: patient {pid}: duplicated time {cell(t_col)} (also on line {rec['lines'][-1]})")
                if t < rec["t"][-1]:
                    raise _Err(f"{at(t_col)}: patient {pid}: times not increasing ({cell(t_col)} after line {rec['lines'][-1]})")
            if "arm" in col and cell("arm") != rec["arm"]:
                raise _Err(f"{path}:{lineno}: column arm: patient {pid} changes arm from {rec['arm']!r} to {cell('arm')!r}")
            for cname in cov_cols:
                if cell(cname):
                    rec["cov"].setdefault(cname, _num(cell(cname), at(cname)))
            rec["t"].append(t)
            rec["y"].append(y)
            rec["c"].append(cens)
            rec["l"].append(log_limit)
            rec["lines"].append(lineno)
        except _Err as e:
            raise ValueError(str(e)) from None
    if not series:
        raise ValueError(f"{path}: no observation rows")
    for pid, d in dosed.items():
        if pid not in series:
            raise ValueError(f"{path}:{d['first']}: column {id_col}: patient {pid} has dose rows but no observations")
    patients = tuple(
        PatientData(
            id=pid, arm=r["arm"], group=r["group"], t_days=np.array(r["t"]), log10_vl=np.array(r["y"]),
            censored=np.array(r["c"], bool), lloq_log10=np.array(r["l"]), covariates=r["cov"],
            doses=tuple(DoseRecord(drug, tuple(t for t, _ in ds), tuple(a for _, a in ds))
                        for drug, ds in dosed.get(pid, {}).items() if drug != "first"),
        )
        for pid, r in series.items()
    )
    return Dataset(patients, str(path))
