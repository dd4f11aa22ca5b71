"""Viral-load table layouts (long, NONMEM, Monolix): which column holds what and in which unit, and one row read
into a sample or a patient's doses. The conventions are documented with the reader, :mod:`hcvdyn.estimate.data`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Mapping

from hcvdyn.estimate.delimited import Row, Table

__all__ = ["Layout", "Sample", "layout_of", "number", "written_half_unit", "CENSORED_WORDS", "TIME_FACTORS",
           "MAX_LOG10_VL", "SCALES"]

CENSORED_WORDS = {"tnd", "undetectable", "blq", "bloq", "not detected", "nd", "<lloq"}
TIME_FACTORS = {"day": 1.0, "days": 1.0, "week": 7.0, "weeks": 7.0, "hour": 1 / 24, "hours": 1 / 24}
SCALES = ("log10", "linear")

# No human HCV load reaches 10 log10 IU/mL: untreated chronic loads are 5-7 log10 (McHutchison et al. 2009,
# N Engl J Med 361:580), the assays quantify up to 8 log10 (1e8 IU/mL: Roche COBAS AmpliPrep/COBAS TaqMan HCV v2.0,
# Abbott RealTime HCV) and the models' baseline is bounded at 9 (log10_V0, model/kinetics.py). A larger number in a
# log10 column is a load (or a limit) written in IU/mL.
MAX_LOG10_VL = 10.0

LIMIT_COLUMNS = {"lloq": None, "lloq_iu_ml": "linear", "lloq_log10": "log10"}  # column -> its scale (None: declared)
TEND_COLUMNS = {"treatment_end_days": 1.0, "treatment_end_weeks": 7.0, "treatment_end_hours": 1 / 24, "tend": None}
EVENT_COLUMNS = ("mdv", "evid", "amt", "cmt", "rate", "ss", "ii", "addl")


def number(text: str, where: str) -> float:
    """A finite number, or ValueError naming ``where`` and the text."""
    if not text:
        raise ValueError(f"{where}: missing value")
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{where}: {text!r} is not finite")
    return v


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_DECIMAL = re.compile(r"[+-]?\d*(?:\.(\d*))?(?:[eE]([+-]?\d+))?")


def written_half_unit(text: str) -> float:
    """Half a unit of the last digit written in ``text`` (``1.1761``: 5e-5, ``15``: 0.5, ``1.2e3``: 50): a number
    equals a limit to the precision it is written in when it lies within this of it."""
    m = _DECIMAL.fullmatch(text.strip())
    if not m:
        return 0.0
    exponent = int(m.group(2) or 0) - len(m.group(1) or "")
    return 0.5 * 10.0 ** max(-300, min(300, exponent))


@dataclass(frozen=True)
class Sample:
    """One row of viral-load data, read and checked on its own."""

    pid: str
    t_days: float
    log10_vl: float  # the log10 limit when censored
    censored: bool
    lloq_log10: float  # -inf when the row gives no limit
    arm: str
    group: str
    treatment_end_days: float | None
    covariates: dict[str, float]
    categories: dict[str, str]


@dataclass(frozen=True)
class Layout:
    """Which column holds what, in which unit: read by :func:`layout_of` from a table's header and the reader's options."""

    kind: str  # "long", "nonmem" (observations in DV) or "monolix" (in Y)
    id_col: str
    t_col: str
    t_factor: float  # days per unit of the time column
    vl_col: str
    vl_scale: str  # "log10" or "linear"
    cens_col: str | None = None
    limit_col: str | None = None  # the censoring limit: lloq, lloq_iu_ml or lloq_log10
    limit_scale: str = "linear"
    interval_col: str | None = None  # Monolix's LIMIT: the other end of a censoring interval
    tend_col: str | None = None
    tend_factor: float = 1.0
    covariates: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    default_lloq: float | None = None

    def row_kind(self, row: Row) -> str:
        """"sample"; "dose" (NONMEM/Monolix: EVID 1 or 4, or without EVID a non-zero AMT); "skip" (other EVID, MDV 1)."""
        if self.kind == "long":
            return "sample"
        evid, amt = row["evid"], row["amt"]
        if evid in ("1", "4") or (not evid and amt and not (_is_number(amt) and float(amt) == 0.0)):
            return "dose"  # an AMT that is not a number too: doses() names the problem
        return "sample" if evid in ("", "0") and row["mdv"] in ("", "0") else "skip"

    def id_time(self, row: Row) -> tuple[str, float]:
        """The row's patient id and time in days."""
        pid = row[self.id_col]
        if not pid:
            raise ValueError(f"{row.at(self.id_col)}: empty patient id")
        t = number(row[self.t_col], row.at(self.t_col)) * self.t_factor
        if t < 0:
            raise ValueError(f"{row.at(self.t_col)}: negative time {row[self.t_col]}")
        if not math.isfinite(t):
            raise ValueError(f"{row.at(self.t_col)}: time {row[self.t_col]} is out of range")
        return pid, t

    def doses(self, row: Row, dose_cmt: Mapping[int, str]) -> tuple[str, str, list[tuple[float, float]]]:
        """A NONMEM dose row as (patient, drug, [(day, amount), ...]) with its ADDL repeats."""
        pid, t = self.id_time(row)
        for name in ("rate", "ss"):
            if row[name] and (not _is_number(row[name]) or float(row[name]) != 0.0):
                raise ValueError(f"{row.at(name.upper())}: {name.upper()} = {row[name]}: infusions and steady-state doses are not supported (give bolus doses)")
        if not row["cmt"]:
            raise ValueError(f"{row.at('CMT')}: a dose row needs its compartment (CMT) to know the drug")
        cmt = number(row["cmt"], row.at("CMT"))
        if cmt != int(cmt) or int(cmt) not in dose_cmt:
            raise ValueError(f"{row.at('CMT')}: compartment {row['cmt']} is not in dose_cmt {dict(sorted(dose_cmt.items()))}")
        amt = number(row["amt"], row.at("AMT"))
        if amt < 0:
            raise ValueError(f"{row.at('AMT')}: negative dose {row['amt']}")
        addl = number(row["addl"], row.at("ADDL")) if row["addl"] else 0.0
        if not (0 <= addl <= 100_000 and addl == int(addl)):
            raise ValueError(f"{row.at('ADDL')}: ADDL = {row['addl']} must be a whole number from 0 to 100000")
        ii = number(row["ii"], row.at("II")) * self.t_factor if row["ii"] else 0.0
        if addl > 0 and ii <= 0:
            raise ValueError(f"{row.at('II')}: ADDL = {int(addl)} further doses need an interval II > 0")
        return pid, dose_cmt[int(cmt)], [(t + k * ii, amt) for k in range(int(addl) + 1)]

    def sample(self, row: Row) -> Sample:
        """The row's sample: time in days, log10 load (or limit, when censored) and the patient's other columns."""
        pid, t = self.id_time(row)
        text, at = row[self.vl_col], row.at(self.vl_col)
        low = text.lower()
        censored = self._censoring_flag(row)
        limit = self._limit(row)  # (log10 IU/mL, half a unit of its last written digit on that scale)
        value = None
        if low.startswith("<"):  # "<15": a limit in IU/mL, whatever the scale of the column
            bound = number(text[1:].strip(), at)
            if bound <= 0:
                raise ValueError(f"{at}: limit {bound:g} must be > 0 IU/mL")
            limit, censored = (math.log10(bound), 0.0), True
        elif low in CENSORED_WORDS:
            censored = True
        elif text or not censored:
            value = self._value(text, at, censored)
        if not censored:
            y = math.log10(value) if self.vl_scale == "linear" else value
            return self._sample(row, pid, t, y, False, limit[0] if limit else -math.inf)
        if limit is None and value is not None and self.kind != "long":  # DV holds the limit (NONMEM, Monolix)
            log_value = value if self.vl_scale == "log10" else math.log10(value) if value > 0 else -math.inf
            if log_value <= 0:
                raise ValueError(f"{at}: censored sample {text} as its own limit is at or below 1 IU/mL, under any "
                                 "assay's; give the limit (an lloq column or default_lloq)")
            limit = (log_value, written_half_unit(text) if self.vl_scale == "log10" else 0.0)
        if limit is None:
            raise ValueError(f"{at}: censored sample {text!r} without a limit (give an lloq column or default_lloq)")
        if value is not None and self._above(text, value, *limit):
            shown = f"{10 ** limit[0]:g} IU/mL" if limit[0] < 300 else f"log10 {limit[0]:g}"
            raise ValueError(f"{at}: censored value {text} is above its limit {shown}")
        if self.interval_col:
            self._check_interval(row)
        return self._sample(row, pid, t, limit[0], True, limit[0])

    def _sample(self, row, pid, t, y, censored, lloq) -> Sample:
        tend = None
        if self.tend_col and row[self.tend_col]:
            tend = number(row[self.tend_col], row.at(self.tend_col)) * self.tend_factor
            if not 0 <= tend < math.inf:
                raise ValueError(f"{row.at(self.tend_col)}: treatment end {row[self.tend_col]} must be >= 0")
        return Sample(pid, t, y, censored, lloq, row["arm"], row["group"], tend,
                      {c: number(row[c], row.at(c)) for c in self.covariates if row[c]},
                      {c: row[c] for c in self.categories if row[c]})

    def _value(self, text: str, at: str, censored: bool) -> float:
        """The load as written (log10 or IU/mL), checked: positive, and below 10 when on the log10 scale."""
        v = number(text, at)
        if self.vl_scale == "linear":
            if v <= 0 and not censored:
                raise ValueError(f"{at}: viral load {v} IU/mL must be > 0 (mark values below the limit as censored)")
            if v > 10**MAX_LOG10_VL:
                raise ValueError(f"{at}: {text} IU/mL is above any human load (10^{MAX_LOG10_VL:g} IU/mL)")
            return v
        if v < 0 and not censored:
            raise ValueError(f"{at}: negative log10 viral load {v}")
        if v > MAX_LOG10_VL:
            hint = "name the column vl_iu_ml" if self.vl_col == "log10_vl" else "pass vl_scale='linear'"
            raise ValueError(f"{at}: {text} is not a log10 viral load (no human load reaches {MAX_LOG10_VL:g} log10 IU/mL); "
                             f"if it is in IU/mL, {hint}")
        return v

    def _above(self, text: str, value: float, limit_log10: float, limit_tol: float) -> bool:
        """Whether a censored value exceeds its limit by more than the precision both are written in."""
        tol = written_half_unit(text)
        if self.vl_scale == "log10":
            return value - tol > limit_log10 + limit_tol + 1e-9
        return value - tol > 0 and math.log10(value - tol) > limit_log10 + limit_tol + 1e-12

    def _censoring_flag(self, row: Row) -> bool:
        flag = row[self.cens_col] if self.cens_col else ""
        if flag == "-1":
            raise ValueError(f"{row.at(self.cens_col)}: CENS = -1 (above an upper limit of quantification): "
                             "right-censored samples are not supported")
        if flag not in ("", "0", "1"):
            raise ValueError(f"{row.at(self.cens_col)}: censoring flag {flag!r} must be 0 or 1")
        return flag == "1"

    def _limit(self, row: Row) -> tuple[float, float] | None:
        text = row[self.limit_col] if self.limit_col else ""
        if not text:
            return (math.log10(self.default_lloq), 0.0) if self.default_lloq else None
        at = row.at(self.limit_col)
        v = number(text, at)
        if self.limit_scale == "log10":
            if v > MAX_LOG10_VL:
                raise ValueError(f"{at}: {text} is not a log10 limit (above {MAX_LOG10_VL:g}); if it is in IU/mL, "
                                 "name the column lloq_iu_ml or pass limit_scale='linear'")
            return v, written_half_unit(text)
        if v <= 0:
            raise ValueError(f"{at}: limit {v} must be > 0 IU/mL")
        return math.log10(v), 0.0

    def _check_interval(self, row: Row) -> None:
        """Monolix's LIMIT on a censored row: the other end of the interval; only an open one (M3) is fitted."""
        text = row[self.interval_col]
        log10 = self.vl_scale == "log10"
        if not text or (log10 and text.lower() in ("-inf", "-infinity")) or (not log10 and _is_number(text) and float(text) == 0.0):
            return
        raise ValueError(
            f"{row.at(self.interval_col)}: LIMIT = {text} makes the sample interval-censored (LIMIT is the other end of "
            f"the censoring interval, Monolix's convention; the limit itself is in {self.vl_col.upper()}); only censoring "
            f"below the limit (M3) is fitted: leave LIMIT empty or write {'-inf' if log10 else '0'}"
        )


def layout_of(table: Table, time_unit: str | None = None, vl_scale: str | None = None, limit_scale: str | None = None,
              default_lloq: float | None = None) -> Layout:
    """The table's layout from its header (the options are checked by the caller); ValueError names file and line."""
    cols = set(table.header)
    where = f"{table.path}:{table.header_line}"

    def need(*names):
        for n in names:
            if n in cols:
                return n
        hint = " (semicolon-delimited? use commas, tabs or spaces)" if any(";" in h for h in table.header) else ""
        raise ValueError(f"{where}: missing column: one of {', '.join(names)} (found {', '.join(table.header)}){hint}")

    id_col = need("id")
    obs = next((c for c in ("dv", "y") if c in cols), None) if not cols & {"log10_vl", "vl_iu_ml", "vl"} else None
    if obs:
        kind, t_col, t_factor = ("nonmem" if obs == "dv" else "monolix"), need("time"), TIME_FACTORS[time_unit or "day"]
        vl_col, scale = obs, vl_scale or "log10"
    else:
        kind, t_col = "long", need("time_days", "time_weeks", "time_hours", "time")
        if t_col == "time" and time_unit is None:
            raise ValueError(f"{where}: column 'time' needs a declared unit (time_unit = 'day', 'week' or 'hour'), or name it time_days/time_weeks/time_hours")
        t_factor = TIME_FACTORS[time_unit if t_col == "time" else t_col.split("_")[1]]
        vl_col = need("log10_vl", "vl_iu_ml", "vl")
        if vl_col == "vl" and vl_scale is None:
            raise ValueError(f"{where}: column 'vl' needs a declared scale (vl_scale = 'log10' or 'linear'), or name it log10_vl/vl_iu_ml")
        scale = {"log10_vl": "log10", "vl_iu_ml": "linear"}.get(vl_col, vl_scale)
    limit_cols = [c for c in LIMIT_COLUMNS if c in cols]
    tend_cols = [c for c in TEND_COLUMNS if c in cols]
    for found in (limit_cols, tend_cols):
        if len(found) > 1:
            raise ValueError(f"{where}: columns {' and '.join(found)} say the same thing: keep one")
    limit_col = limit_cols[0] if limit_cols else None
    if limit_col and LIMIT_COLUMNS[limit_col] and limit_scale not in (None, LIMIT_COLUMNS[limit_col]):
        raise ValueError(f"{where}: limit_scale = {limit_scale!r} contradicts the column name {limit_col}")
    tend_col = tend_cols[0] if tend_cols else None
    known = {id_col, t_col, vl_col, "arm", "group", "cens", "limit", *LIMIT_COLUMNS, *TEND_COLUMNS, *EVENT_COLUMNS}
    extra = [h for h in table.header if h and h not in known]
    categories = tuple(h for h in extra if not all(_is_number(v) for _, v in table.column(h)))
    layout = Layout(
        kind, id_col, t_col, t_factor, vl_col, scale, "cens" if "cens" in cols else None, limit_col,
        LIMIT_COLUMNS.get(limit_col) or limit_scale or ("linear" if kind == "long" or scale == "linear" else ""),
        "limit" if "limit" in cols else None, tend_col, TEND_COLUMNS.get(tend_col) or t_factor,
        tuple(h for h in extra if h not in categories), categories, default_lloq,
    )
    return layout if layout.limit_scale or not limit_col else replace(layout, limit_scale=_limit_scale(table, layout))


def _limit_scale(table: Table, layout: Layout) -> str:
    """The scale of a NONMEM or Monolix ``lloq`` next to a log10 DV, when nothing declares it: IU/mL if a limit is
    above 10 (no log10 limit is); else as censored rows show it, their DV equal to the limit on one scale or the other."""
    evidence: dict[str, tuple[int, str]] = {}
    first = None
    for row in table.rows:
        text = row[layout.limit_col]
        if not (text and _is_number(text) and math.isfinite(float(text))) or layout.row_kind(row) != "sample":
            continue
        limit, dv = float(text), row[layout.vl_col]
        first = first or row
        if limit > MAX_LOG10_VL:
            evidence.setdefault("linear", (row.line, f"{text} is above {MAX_LOG10_VL:g}"))
        elif row[layout.cens_col or ""] == "1" and _is_number(dv) and math.isfinite(float(dv)):
            v, tol = float(dv), written_half_unit(dv)
            if abs(v - limit) <= tol + written_half_unit(text):
                evidence.setdefault("log10", (row.line, f"the censored {layout.vl_col.upper()} {dv} equals it"))
            elif limit > 0 and abs(v - math.log10(limit)) <= tol + 1e-12:
                evidence.setdefault("linear", (row.line, f"the censored {layout.vl_col.upper()} {dv} equals its log10"))
    name = f"column {layout.limit_col}"
    if len(evidence) == 2:
        (l1, why1), (l2, why2) = evidence["log10"], evidence["linear"]
        raise ValueError(f"{table.path}:{max(l1, l2)}: {name}: the limit reads as log10 IU/mL on line {l1} ({why1}) but "
                         f"as IU/mL on line {l2} ({why2}); name the column lloq_log10 or lloq_iu_ml")
    if evidence or first is None:
        return next(iter(evidence), "log10")
    raise ValueError(
        f"{first.at(layout.limit_col)}: is the limit {first[layout.limit_col]} in IU/mL or in log10 IU/mL like "
        f"{layout.vl_col.upper()}? Nothing in the file tells (no limit above {MAX_LOG10_VL:g}, no censored "
        f"{layout.vl_col.upper()} equal to one); name the column lloq_iu_ml or lloq_log10, or pass limit_scale='linear' or 'log10'"
    )
