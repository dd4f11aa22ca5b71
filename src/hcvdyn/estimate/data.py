"""Viral-load data: patient series with censoring, and the reader that validates them.

Files are comma-, tab- or whitespace-delimited text (the delimiter read from the header line), UTF-8 with or
without a byte-order mark; lines starting with ``#`` are comments (:mod:`hcvdyn.estimate.delimited`). Three
layouts are read, one row per sample; header names are case-insensitive:

* **long**: ``id``, ``arm`` (optional), ``group`` (optional), a time column ``time_days`` /
  ``time_weeks`` / ``time_hours`` (or ``time`` with ``time_unit=``), a load column ``log10_vl``
  (log10 IU/mL) or ``vl_iu_ml`` (IU/mL) (or ``vl`` with ``vl_scale=``), and censoring either as a
  flag column ``cens`` (1 = below the limit) with ``lloq`` (IU/mL), or as text in the load column
  (``<15``, ``TND``, ``undetectable``, ``BLQ``) with the limit from ``lloq`` or ``default_lloq``.
  A limit written as ``<15`` is always in IU/mL, whatever the scale of the load column.
* **NONMEM**: ``ID``, ``TIME``, ``DV``, optional ``CENS``, ``LLOQ``, ``MDV``, ``EVID``, ``AMT``,
  ``CMT``, ``ADDL``, ``II``, ``RATE``, ``SS``. DV is log10 IU/mL unless ``vl_scale`` says otherwise;
  TIME (and II) are in ``time_unit`` (default days). Dose rows (``EVID`` 1 or 4; without an EVID
  column, a non-zero ``AMT``) become the patient's :class:`~hcvdyn.model.dosing.DoseRecord` s when
  ``dose_cmt`` maps each ``CMT`` to a drug: AMT is in the drug's dose unit (ug peginterferon, mg
  otherwise), ``ADDL`` further doses follow every ``II``; infusions (RATE) and steady-state doses
  (SS) are refused. Without ``dose_cmt`` dose rows are skipped and the fit uses the arms' regimens.
  Other rows with ``EVID`` != 0 or ``MDV`` = 1 are skipped. ``.`` is an empty cell.
* **Monolix**: as NONMEM with the observation in ``Y``. ``CENS`` = 1 marks a left-censored sample whose
  ``Y`` (or ``DV``) holds the limit, Monolix's and nlmixr's convention; ``CENS`` = -1 (right-censored) is
  refused. ``LIMIT`` is the *other* end of the censoring interval (Monolix); the M3 likelihood censors
  below the limit with no lower end, so ``LIMIT`` must be empty, ``-inf`` (log10 scale) or ``0`` (IU/mL).

**The limit's unit.** ``lloq_iu_ml`` is in IU/mL and ``lloq_log10`` in log10 IU/mL in every layout. ``lloq`` is in
IU/mL in the long layout. Next to a NONMEM or Monolix log10 DV, where the field writes it either way, ``lloq`` is
on the scale ``limit_scale=`` declares ('linear' for IU/mL, or 'log10'); undeclared, the file must show it: a
limit above 10 can only be IU/mL, and a censored DV equal to the limit (to its written precision) or to its log10
says which. A file that shows neither, or both, is refused. Without any limit, a censored NONMEM or Monolix row's
own DV is its limit.

**Checks.** A censored value may exceed its limit by no more than the precision both are written in (DV = 1.1761
for log10 15 = 1.17609...; half a unit of the last written digit). A log10 load (or limit) above 10 is refused as
an IU/mL value in a log10 column (no human load reaches 10 log10 IU/mL; :data:`~hcvdyn.estimate.layouts.MAX_LOG10_VL`).

**Per patient.** ``treatment_end_days`` (or ``treatment_end_weeks``, ``treatment_end_hours``, or ``tend`` in the
time column's unit) is when a constant-efficacy treatment stopped (empty: not stopped); a fit sets the model's
``t_end`` from it. Any other column whose every cell is a number is a covariate (its first value per patient);
a column with text is a categorical covariate (``categories``), one value per patient. ``arm``, ``group``,
categories and the treatment end must not change within a patient.

Censored samples carry the log10 limit as their value and ``censored = True`` (M3 method, Beal 2001).
Every problem is reported as ``FILE:LINE: column COL: ...``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from hcvdyn.estimate.delimited import Row, read_table
from hcvdyn.estimate.layouts import CENSORED_WORDS, SCALES, TIME_FACTORS, Layout, Sample, layout_of
from hcvdyn.model.dosing import DoseRecord

__all__ = ["PatientData", "Dataset", "read_viral_loads", "CENSORED_WORDS"]


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
    categories: Mapping[str, str] = field(default_factory=dict)  # text covariates (e.g. sex, genotype)
    treatment_end_days: float = math.inf  # when constant-efficacy treatment stopped (inf: not stopped)

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


class _Series:
    """One patient's samples as they are read, with the checks across its rows."""

    def __init__(self, first: Sample):
        self.first = first
        self.t, self.y, self.c, self.l, self.lines = [], [], [], [], []
        self.covariates, self.categories, self.lines_of = {}, {}, {}
        self.tend, self.tend_line = None, 0

    def add(self, s: Sample, row: Row, layout: Layout) -> None:
        pid, at = s.pid, row.at
        if self.t:
            t_col, last = layout.t_col, self.lines[-1]
            if s.t_days == self.t[-1]:
                raise ValueError(f"{at(t_col)}: patient {pid}: duplicated time {row[t_col]} (also on line {last})")
            if s.t_days < self.t[-1]:
                raise ValueError(f"{at(t_col)}: patient {pid}: times not increasing ({row[t_col]} after line {last})")
        for name, value, first in (("arm", s.arm, self.first.arm), ("group", s.group, self.first.group)):
            if name in row.cells and value != first:
                raise ValueError(f"{at(name)}: patient {pid} changes {name} from {first!r} to {value!r}")
        for name, value in s.categories.items():
            before = self.categories.setdefault(name, value)
            if value != before:
                raise ValueError(f"{at(name)}: patient {pid} changes {name} from {before!r} (line {self.lines_of[name]}) to {value!r}")
            self.lines_of.setdefault(name, row.line)
        if s.treatment_end_days is not None:
            if self.tend is not None and s.treatment_end_days != self.tend:
                raise ValueError(f"{at(layout.tend_col)}: patient {pid} changes its treatment end from {self.tend:g} days "
                                 f"(line {self.tend_line}) to {s.treatment_end_days:g}")
            self.tend, self.tend_line = s.treatment_end_days, row.line
        for name, value in s.covariates.items():
            self.covariates.setdefault(name, value)
        self.t.append(s.t_days)
        self.y.append(s.log10_vl)
        self.c.append(s.censored)
        self.l.append(s.lloq_log10)
        self.lines.append(row.line)

    def patient(self, doses: Mapping[str, list]) -> PatientData:
        return PatientData(
            id=self.first.pid, arm=self.first.arm, group=self.first.group, t_days=np.array(self.t, dtype=np.float64),
            log10_vl=np.array(self.y, dtype=np.float64), censored=np.array(self.c, bool),
            lloq_log10=np.array(self.l, dtype=np.float64), covariates=self.covariates, categories=self.categories,
            doses=tuple(DoseRecord(drug, tuple(t for t, _ in ds), tuple(a for _, a in ds)) for drug, ds in doses.items()),
            treatment_end_days=math.inf if self.tend is None else self.tend,
        )


def read_viral_loads(
    path: str | os.PathLike,
    time_unit: str | None = None,
    vl_scale: str | None = None,
    default_lloq: float | None = None,
    dose_cmt: Mapping[int, str] | None = None,
    limit_scale: str | None = None,
) -> Dataset:
    """Read and validate a viral-load table (module docstring); ValueError names file, line and column.

    dose_cmt: NONMEM compartment number -> drug name, to read dose rows as each patient's doses.
    limit_scale: the scale of an ``lloq`` column ('linear' = IU/mL, or 'log10'), where the layout leaves it open.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if time_unit is not None and time_unit not in TIME_FACTORS:
        raise ValueError(f"time_unit {time_unit!r}: use one of {sorted(set(TIME_FACTORS))}")
    for name, scale in (("vl_scale", vl_scale), ("limit_scale", limit_scale)):
        if scale not in (None, *SCALES):
            raise ValueError(f"{name} {scale!r}: use 'log10' or 'linear'")
    if default_lloq is not None and not (default_lloq > 0 and math.isfinite(default_lloq)):
        raise ValueError(f"default_lloq = {default_lloq} must be a positive number (IU/mL)")
    if dose_cmt is not None:
        from hcvdyn.model.drugs import get_drug

        dose_cmt = {int(k): get_drug(v).name for k, v in dose_cmt.items()}
    table = read_table(path)
    layout = layout_of(table, time_unit, vl_scale, limit_scale, default_lloq)
    series: dict[str, _Series] = {}
    dosed: dict[str, dict[str, list]] = {}  # patient id -> drug -> [(t, amount), ...]
    first_dose: dict[str, int] = {}
    for row in table.rows:
        kind = layout.row_kind(row)
        if kind == "dose" and dose_cmt is not None:
            pid, drug, doses = layout.doses(row, dose_cmt)
            first_dose.setdefault(pid, row.line)
            dosed.setdefault(pid, {}).setdefault(drug, []).extend(doses)
        if kind != "sample":
            continue
        s = layout.sample(row)
        if s.pid not in series:
            series[s.pid] = _Series(s)
        series[s.pid].add(s, row, layout)
    if not series:
        raise ValueError(f"{path}: no observation rows")
    for pid, line in first_dose.items():
        if pid not in series:
            raise ValueError(f"{path}:{line}: column {layout.id_col}: patient {pid} has dose rows but no observations")
    return Dataset(tuple(r.patient(dosed.get(pid, {})) for pid, r in series.items()), str(path))
