"""Dosing regimens as data, and their expansion into dose times and amounts.

A :class:`Regimen` is one drug given at a fixed interval between a start and a stop day, with an
optional loading dose, missed doses and dose changes; a :class:`DoseRecord` is the doses one patient
actually took (e.g. the dose rows of a NONMEM data file). :func:`dose_arrays` turns the regimens of one
patient into padded arrays ready for :func:`hcvdyn.model.pk.post_dose_states`, and :func:`batch_dose_arrays`
stacks many patients with a common length so that one compiled solver serves them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from hcvdyn.model.drugs import get_drug

__all__ = ["Regimen", "DoseRecord", "dose_arrays", "batch_dose_arrays", "regimen_from_dict", "patient_regimens"]

_TIME_TOL = 1e-9


def _finite(name: str, value, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} = {value!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{where}: {name} = {v} is not finite")
    return v


@dataclass(frozen=True)
class Regimen:
    """A dosing regimen of one drug.

    drug: drug name or alias (see :data:`hcvdyn.model.drugs.DRUGS`).
    dose: amount per administration of the administered compound, in ``unit``.
    unit: the drug's dose unit ("ug" for peginterferon, "mg" otherwise) or the same per kg ("ug/kg").
    interval_days: time between doses (days), > 0. 7 = weekly, 1 = daily, 0.5 = twice daily.
    start_day, stop_day: doses are given at start_day + k * interval_days < stop_day.
    route: "sc" or "oral"; defaults to the drug's route.
    loading_dose: amount of the first dose, if different from ``dose``.
    missed_days: scheduled dose times (days) that were not taken.
    changes: (day, new_dose) pairs: from that day on every dose is new_dose (0 allowed: interruption).
    """

    drug: str
    dose: float
    unit: str
    interval_days: float
    start_day: float = 0.0
    stop_day: float = 84.0
    route: str | None = None
    loading_dose: float | None = None
    missed_days: tuple[float, ...] = ()
    changes: tuple[tuple[float, float], ...] = field(default_factory=tuple)

    def __post_init__(self):
        drug = get_drug(self.drug)
        where = f"regimen of {drug.name}"
        object.__setattr__(self, "drug", drug.name)
        dose = _finite("dose", self.dose, where)
        if dose < 0:
            raise ValueError(f"{where}: dose = {dose} is negative")
        object.__setattr__(self, "dose", dose)
        allowed = (drug.dose_unit, f"{drug.dose_unit}/kg")
        if self.unit not in allowed:
            raise ValueError(f"{where}: unit {self.unit!r} not one of {allowed}")
        interval = _finite("interval_days", self.interval_days, where)
        if interval <= 0:
            raise ValueError(f"{where}: interval_days = {interval} must be > 0")
        object.__setattr__(self, "interval_days", interval)
        start = _finite("start_day", self.start_day, where)
        stop = _finite("stop_day", self.stop_day, where)
        if start < 0:
            raise ValueError(f"{where}: start_day = {start} is negative (treatment starts at day 0)")
        if stop <= start:
            raise ValueError(f"{where}: stop_day = {stop} must be after start_day = {start}")
        object.__setattr__(self, "start_day", start)
        object.__setattr__(self, "stop_day", stop)
        route = self.route if self.route is not None else drug.routes[0]
        if route not in drug.routes:
            raise ValueError(f"{where}: route {route!r} not supported; use one of {drug.routes}")
        object.__setattr__(self, "route", route)
        if self.loading_dose is not None:
            ld = _finite("loading_dose", self.loading_dose, where)
            if ld < 0:
                raise ValueError(f"{where}: loading_dose = {ld} is negative")
            object.__setattr__(self, "loading_dose", ld)
        missed = tuple(_finite("missed_days", m, where) for m in self.missed_days)
        object.__setattr__(self, "missed_days", missed)
        changes = []
        for item in self.changes:
            if len(item) != 2:
                raise ValueError(f"{where}: each change must be (day, dose), got {item!r}")
            day, new = _finite("change day", item[0], where), _finite("change dose", item[1], where)
            if new < 0:
                raise ValueError(f"{where}: changed dose {new} at day {day} is negative")
            changes.append((day, new))
        object.__setattr__(self, "changes", tuple(sorted(changes)))
        times = self._scheduled_times()
        for m in missed:
            if not np.any(np.abs(times - m) <= _TIME_TOL):
                raise ValueError(f"{where}: missed dose at day {m} is not a scheduled dose time")

    def _scheduled_times(self) -> np.ndarray:
        n = math.ceil((self.stop_day - self.start_day) / self.interval_days - _TIME_TOL)
        return self.start_day + self.interval_days * np.arange(max(n, 0), dtype=float)

    def doses(self, weight_kg: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
        """Dose times (days) and amounts of the active moiety (the drug's ``amount_unit``)."""
        drug = get_drug(self.drug)
        weight = _finite("weight_kg", weight_kg, f"regimen of {drug.name}")
        if weight <= 0:
            raise ValueError(f"regimen of {drug.name}: weight_kg = {weight} must be > 0")
        times = self._scheduled_times()
        amounts = np.full(times.shape, self.dose)
        if self.loading_dose is not None and times.size:
            amounts[0] = self.loading_dose
        for day, new in self.changes:
            amounts[times >= day - _TIME_TOL] = new
        keep = np.ones(times.shape, bool)
        for m in self.missed_days:
            keep &= np.abs(times - m) > _TIME_TOL
        return times[keep], amounts[keep] * self.amount_scale(weight)

    def amount_scale(self, weight_kg: float) -> float:
        """Factor from the regimen's dose to the PK amount: x weight for per-kg doses, x the prodrug factor,
        / weight for drugs whose PK is declared per kg (:attr:`hcvdyn.model.drugs.Drug.pk_per_kg`)."""
        drug = get_drug(self.drug)
        per_kg_dose = weight_kg if self.unit.endswith("/kg") else 1.0
        return per_kg_dose * drug.dose_factor / (weight_kg if drug.pk_per_kg else 1.0)

    def to_dict(self) -> dict:
        d = {
            "drug": self.drug,
            "dose": self.dose,
            "unit": self.unit,
            "interval_days": self.interval_days,
            "start_day": self.start_day,
            "stop_day": self.stop_day,
            "route": self.route,
        }
        if self.loading_dose is not None:
            d["loading_dose"] = self.loading_dose
        if self.missed_days:
            d["missed_days"] = list(self.missed_days)
        if self.changes:
            d["changes"] = [list(c) for c in self.changes]
        return d


@dataclass(frozen=True)
class DoseRecord:
    """Doses of one drug as given: times (days, >= 0) and amounts of the administered compound in the
    drug's ``dose_unit`` (ug peginterferon, mg otherwise; the unit of NONMEM's AMT). Sorted by time."""

    drug: str
    times: tuple[float, ...]
    amounts: tuple[float, ...]

    def __post_init__(self):
        drug = get_drug(self.drug)
        where = f"dose record of {drug.name}"
        object.__setattr__(self, "drug", drug.name)
        if len(self.times) != len(self.amounts):
            raise ValueError(f"{where}: {len(self.times)} times but {len(self.amounts)} amounts")
        t = np.array([_finite("dose time", x, where) for x in self.times], float)
        a = np.array([_finite("amount", x, where) for x in self.amounts], float)
        if np.any(t < 0):
            raise ValueError(f"{where}: dose time {t[t < 0][0]} is negative")
        if np.any(a < 0):
            raise ValueError(f"{where}: amount {a[a < 0][0]} is negative")
        order = np.argsort(t, kind="stable")
        object.__setattr__(self, "times", tuple(map(float, t[order])))
        object.__setattr__(self, "amounts", tuple(map(float, a[order])))

    def doses(self, weight_kg: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
        """Dose times (days) and amounts of the active moiety (the drug's ``amount_unit``)."""
        drug = get_drug(self.drug)
        return np.array(self.times), np.array(self.amounts) * drug.dose_factor / (weight_kg if drug.pk_per_kg else 1.0)


def patient_regimens(patient, regimens_by_arm: Mapping[str, Sequence[Regimen]], where: str = "fit"):
    """The dosing of one patient: its own dose records if its data file has them, else its arm's regimens."""
    if getattr(patient, "doses", ()):
        return tuple(patient.doses)
    if patient.arm not in regimens_by_arm:
        raise ValueError(f"{where}: no regimens for arm {patient.arm!r} of patient {patient.id} (and no dose records in its data); "
                         f"arms with regimens: {sorted(regimens_by_arm)}")
    return tuple(regimens_by_arm[patient.arm])


def regimen_from_dict(d: Mapping, where: str = "regimen") -> Regimen:
    """Build a Regimen from a TOML/JSON table; unknown keys raise ValueError naming them."""
    known = {"drug", "dose", "unit", "interval_days", "start_day", "stop_day", "route", "loading_dose", "missed_days", "changes"}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    missing = {"drug", "dose", "unit", "interval_days"} - set(d)
    if missing:
        raise ValueError(f"{where}: missing key(s) {sorted(missing)}")
    kw = dict(d)
    kw["missed_days"] = tuple(kw.get("missed_days", ()))
    kw["changes"] = tuple(tuple(c) for c in kw.get("changes", ()))
    try:
        return Regimen(**kw)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _merge(regimens: Iterable[Regimen], drug_name: str, weight_kg: float):
    ts, amts = [], []
    for r in regimens:
        if r.drug == drug_name:
            t, a = r.doses(weight_kg)
            ts.append(t)
            amts.append(a)
    if not ts:
        return np.zeros(0), np.zeros(0)
    t, a = np.concatenate(ts), np.concatenate(amts)
    order = np.argsort(t, kind="stable")
    return t[order], a[order]


def _pad(t: np.ndarray, a: np.ndarray, length: int):
    """Pad to ``length`` by repeating the last time with zero amount (no effect on the PK)."""
    if t.size > length:
        raise ValueError(f"{t.size} doses do not fit in padded length {length}")
    last = t[-1] if t.size else 0.0
    return (
        np.concatenate([t, np.full(length - t.size, last)]),
        np.concatenate([a, np.zeros(length - a.size)]),
    )


def dose_arrays(
    regimens: Sequence[Regimen], drugs: Sequence[str], weight_kg: float = 70.0, length: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Padded (times, amounts) per PK-mode drug of a model for one patient.

    Regimens of drugs not in ``drugs`` raise ValueError (a regimen for a drug the model does not
    model would otherwise be silently ignored).
    """
    drugs = tuple(get_drug(d).name for d in drugs)
    for r in regimens:
        if not isinstance(r, (Regimen, DoseRecord)):
            raise ValueError(f"expected Regimen or DoseRecord objects, got {type(r).__name__}")
        if r.drug not in drugs:
            kind = "regimen" if isinstance(r, Regimen) else "dose record"
            raise ValueError(f"{kind} of {r.drug} given, but the model has no PK-mode drug {r.drug!r} (it has {drugs})")
    out = {}
    for name in drugs:
        t, a = _merge(regimens, name, weight_kg)
        out[name] = _pad(t, a, max(length or 0, t.size, 1))
    return out


def batch_dose_arrays(
    regimens_per_patient: Sequence[Sequence[Regimen]], drugs: Sequence[str], weights_kg: Sequence[float] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Stacked padded dose arrays, shape (n_patients, L_drug), with one L per drug for all patients."""
    n = len(regimens_per_patient)
    weights = [70.0] * n if weights_kg is None else list(weights_kg)
    if len(weights) != n:
        raise ValueError(f"weights_kg has {len(weights)} entries for {n} patients")
    per = [dose_arrays(r, drugs, w) for r, w in zip(regimens_per_patient, weights)]
    out = {}
    for name in (get_drug(d).name for d in drugs):
        length = max(p[name][0].size for p in per)
        padded = [_pad(*p[name], length) for p in per]
        out[name] = (np.stack([x[0] for x in padded]), np.stack([x[1] for x in padded]))
    return out
