"""Treatment outcomes from viral-load series: log10 drops, RVR / EVR / cEVR and the cure boundary.

Definitions (Ghany et al. 2009, Hepatology 49:1335-1374; every threshold is a field of :class:`OutcomeDefinitions`):

* log10 drop at week w: baseline log10 load minus the log10 load at day 7 w (positive = decline).
* undetectable: below the assay limit (``lloq_iu_ml``); a value exactly at the limit is quantifiable,
  so it is detectable. A censored sample ("<LLOQ") is undetectable.
* RVR: undetectable at week 4.  EVR: drop >= 2 log10 at week 12 (exactly 2 counts) or undetectable.
  cEVR: undetectable at week 12.
* cure boundary (Snoeck et al. 2010, Clin Pharmacol Ther 87:706-713): fewer than one infected cell in the
  whole extracellular fluid, I < 1 / volume cells/mL (-4.13 log10 for 13.5 L), and fewer than one infectious
  virion there, V_I < 1 / (volume x copies per IU) IU/mL (-4.56 log10 IU/mL at 2.7 copies/IU). Total RNA,
  mostly non-infectious under ribavirin or celgosivir, is not the criterion.

The functions are pure numpy and vectorised over patients.
"""


from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "OutcomeDefinitions",
    "classify",
    "cure_day",
    "patient_outcomes",
]


@dataclass(frozen=True)
class OutcomeDefinitions:
    """Thresholds of the response definitions (defaults: Ghany et al. 2009, Hepatology 49:1335-1374; assay limit of COBAS TaqMan)."""

    lloq_iu_ml: float = 15.0  # COBAS TaqMan detection limit 10-15 IU/mL
    evr_drop_log10: float = 2.0  # EVR: >= 2 log10 drop at week 12
    rvr_week: float = 4.0
    evr_week: float = 12.0
    drop_weeks: tuple[float, ...] = (4.0, 12.0, 24.0, 48.0)
    ecf_volume_ml: float = 13_500.0  # extracellular fluid, ~13.5 L
    copies_per_iu: float = 2.7  # Cobas Amplicor v2.0

    def __post_init__(self):
        for name in ("lloq_iu_ml", "ecf_volume_ml", "copies_per_iu", "rvr_week", "evr_week"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"OutcomeDefinitions.{name} = {v!r} must be a positive number")
        if not (math.isfinite(self.evr_drop_log10) and self.evr_drop_log10 > 0):
            raise ValueError(f"OutcomeDefinitions.evr_drop_log10 = {self.evr_drop_log10!r} must be positive")

    @property
    def lloq_log10(self) -> float:
        return math.log10(self.lloq_iu_ml)

    @property
    def cure_log10(self) -> float:
        """The infectious-virion cure boundary in log10 IU/mL (one virion in the extracellular fluid)."""
        return -math.log10(self.ecf_volume_ml * self.copies_per_iu)

    @property
    def cure_cells_log10(self) -> float:
        """The infected-cell cure boundary in log10 cells/mL (one infected cell in the extracellular fluid volume)."""
        return -math.log10(self.ecf_volume_ml)

    def to_dict(self) -> dict:
        return asdict(self)


def classify(baseline, at_rvr, at_evr, censored_rvr=False, censored_evr=False, defs: OutcomeDefinitions = OutcomeDefinitions()):
    """RVR, EVR, cEVR flags and the week-12 drop from log10 loads (arrays over patients).

    baseline, at_rvr, at_evr: log10 IU/mL at day 0, week 4 and week 12 (NaN = missing, e.g. dropped out:
    every flag is then False, i.e. a non-response, as in an intention-to-treat analysis).
    censored_*: True where the sample was reported below the limit (its value is the limit or ignored).
    """
    baseline, at_rvr, at_evr = (np.asarray(x, dtype=float) for x in (baseline, at_rvr, at_evr))
    und_rvr = np.asarray(censored_rvr, dtype=bool) | (at_rvr < defs.lloq_log10)
    und_evr = np.asarray(censored_evr, dtype=bool) | (at_evr < defs.lloq_log10)
    seen_rvr, seen_evr = np.isfinite(at_rvr) | np.asarray(censored_rvr, bool), np.isfinite(at_evr) | np.asarray(censored_evr, bool)
    value_evr = np.where(np.asarray(censored_evr, bool), defs.lloq_log10, at_evr)
    drop = baseline - value_evr  # a censored week-12 value counts at the limit: a lower bound of the drop
    return {
        "drop_evr": np.where(seen_evr, drop, np.nan),
        "rvr": seen_rvr & und_rvr,
        "evr": seen_evr & ((drop >= defs.evr_drop_log10) | und_evr),
        "cevr": seen_evr & und_evr,
    }


def cure_day(t_days, log10_infected, defs: OutcomeDefinitions = OutcomeDefinitions(), log10_vi=None):
    """First day both infected cells and infectious virions are below the cure boundary, NaN if never.

    t_days: (n,) increasing; log10_infected: (..., n) infected cells (log10 cells/mL); log10_vi: (..., n)
    infectious virions (log10 IU/mL), optional. The crossing is interpolated linearly in log10 and the later
    of the two crossings counts.
    """
    day = _first_crossing(t_days, log10_infected, defs.cure_cells_log10)
    if log10_vi is not None:
        day = np.maximum(day, _first_crossing(t_days, log10_vi, defs.cure_log10))  # NaN (never) wins
    return day


def _first_crossing(t_days, log10_x, boundary: float):
    t = np.asarray(t_days, dtype=float)
    v = np.asarray(log10_x, dtype=float)
    below = v < boundary
    first = np.argmax(below, axis=-1)
    hit = below.any(axis=-1)
    prev = np.maximum(first - 1, 0)
    v1 = np.take_along_axis(v, prev[..., None], -1)[..., 0]
    v2 = np.take_along_axis(v, first[..., None], -1)[..., 0]
    frac = np.where(v1 > v2, (v1 - boundary) / np.where(v1 > v2, v1 - v2, 1.0), 0.0)
    day = t[prev] + frac * (t[first] - t[prev])
    return np.where(hit & (first > 0), day, np.where(hit, t[0], np.nan))


def patient_outcomes(t_days, log10_vl, defs: OutcomeDefinitions = OutcomeDefinitions(), log10_infected=None, log10_vi=None) -> dict[str, np.ndarray]:
    """Outcomes of noise-free model trajectories (..., n) on a grid that contains every needed week.

    Returns drop_wW for each week in ``defs.drop_weeks`` within the grid, rvr, evr, cevr and, when infected
    cells (and optionally infectious virions) are given, cure_day (:func:`cure_day`).
    """
    t = np.asarray(t_days, dtype=float)
    v = np.asarray(log10_vl, dtype=float)

    def at(week):
        day = 7.0 * week
        if day > t[-1] + 1e-9:
            return np.full(v.shape[:-1], np.nan)
        return np.apply_along_axis(lambda row: np.interp(day, t, row), -1, v) if v.ndim > 1 else np.interp(day, t, v)

    out = {f"drop_w{w:g}": v[..., 0] - at(w) for w in defs.drop_weeks if 7.0 * w <= t[-1] + 1e-9}
    out.update(classify(v[..., 0], at(defs.rvr_week), at(defs.evr_week), defs=defs))
    out.pop("drop_evr")
    if log10_infected is not None:
        out["cure_day"] = cure_day(t, log10_infected, defs, log10_vi)
    return out


def roc_auc(score, label) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n1 n0)), ties counted one half; NaN without both classes."""
    score, label = np.asarray(score, float), np.asarray(label, bool)
    pos, neg = score[label], score[~label]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))

