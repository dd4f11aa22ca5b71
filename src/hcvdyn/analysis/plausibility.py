"""Biological red flags of a virtual population, checked the way a hepatologist would look at it.

:func:`red_flags` measures, per arm of a virtual trial, what a reader of HCV kinetics would refuse to believe
(each limit is a field of :class:`Limits`):

* week-12 declines beyond 6 log10 (more than ``max_share_deep`` of patients);
* patients above their baseline at week 12 under continuous therapy (more than ``max_share_above``);
* target cells above 1.5 T0 at any time (more than ``max_share_target``);
* infected-cell loss rates delta outside the published range 0.01-0.41 /day (Neumann et al. 1998,
  Science 282:103-107: infected-cell half-lives 1.7-70 days), more than ``max_share_delta`` of patients;
* a mean and median week-12 drop further apart than ``max_mean_median_gap`` (a two-peaked mixture);
* a median first-week peak of interferon's production block outside [0.4, 0.95] (a drug switched off, or
  first-phase declines that prior non-responders do not show);
* a median 0-48 h decline outside 0.3-1.2 log10 in arms with interferon (0.7 log10 in patients with the
  unfavourable IL28B genotypes, Scott et al. 2011, J Infect Dis 204:419-425);
* cEVR (undetectable at week 12) above 5% (prior non-responders rarely clear by week 12);
* for the typical patient of each arm (:func:`typical_patient_flags`): a load above baseline, or target cells
  above 1.5 T0, at any time of 48 weeks of continuous therapy.

The calibration, the ``trial`` command and the tests call it; ``hcvdyn trial --check`` prints the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Limits", "Flag", "red_flags", "typical_patient_flags", "format_flags"]


@dataclass(frozen=True)
class Limits:
    """Thresholds of the red flags (see the module docstring for their sources)."""

    deep_drop_log10: float = 6.0
    max_share_deep: float = 0.01
    max_share_above: float = 0.10
    target_ratio: float = 1.5
    max_share_target: float = 0.10
    delta_range: tuple[float, float] = (0.01, 0.41)
    max_share_delta: float = 0.10
    max_mean_median_gap: float = 0.6
    ifn_block_range: tuple[float, float] = (0.4, 0.95)
    first_phase_range: tuple[float, float] = (0.3, 1.2)
    max_pct_cevr: float = 5.0


@dataclass(frozen=True)
class Flag:
    """One check of one arm: the measured figure, its limit, and whether it passes."""

    arm: str
    check: str
    value: float
    limit: str
    ok: bool

    def message(self) -> str:
        return f"{self.arm}: {self.check} = {self.value:.3g} ({'ok' if self.ok else 'RED FLAG'}; limit {self.limit})"


def _ifn_peak_block(population, regimens, params) -> np.ndarray | None:
    """Per patient, interferon's production block at the peak concentration of the first week (None: no interferon)."""
    from hcvdyn.solve.adaptive import exposure

    model = population.model
    if "peginterferon_alfa2b" not in model.pk_drugs or not any(r.drug == "peginterferon_alfa2b" for r in regimens):
        return None
    typical = population.typical()
    t = np.linspace(0.0, 7.0, 7 * 96 + 1)
    ifn_regs = [r for r in regimens if r.drug == "peginterferon_alfa2b"]
    conc = exposure(model, typical, ifn_regs, t, population.weight_kg[0])["conc_peginterferon_alfa2b"]
    cmax, t_peak = float(np.max(conc)), float(t[np.argmax(conc)])
    n = params["ifn_n"]
    emax = model.max_effect("ifn_emax", params, t_peak)
    return np.asarray(emax) * cmax**n / (cmax**n + params["ifn_ec50"] ** n)


def red_flags(vt, population, arms_regimens, limits: Limits | None = None) -> list[Flag]:
    """Red-flag checks of every arm of a :class:`~hcvdyn.analysis.virtual_trial.VirtualTrial` (flags with ok=False fail).

    limits: default the population's own (its [plausibility] table over the prior non-responder defaults).
    """
    limits = limits or Limits(**getattr(population, "limits", {}))
    flags = []
    for name, arm in vt.arms.items():
        td = arm.true_drop
        share_deep = float(np.mean(td > limits.deep_drop_log10))
        flags.append(Flag(name, f"share with week-12 drop > {limits.deep_drop_log10:g} log10", share_deep, f"<= {limits.max_share_deep:g}", share_deep <= limits.max_share_deep))
        above = float(np.mean(td < 0))
        flags.append(Flag(name, "share above baseline at week 12", above, f"<= {limits.max_share_above:g}", above <= limits.max_share_above))
        if arm.max_target_ratio is not None:
            high_t = float(np.mean(arm.max_target_ratio > limits.target_ratio))
            flags.append(Flag(name, f"share with target cells > {limits.target_ratio:g} T0", high_t, f"<= {limits.max_share_target:g}", high_t <= limits.max_share_target))
        if arm.params is not None and "delta" in arm.params:
            lo, hi = limits.delta_range
            d = arm.params["delta"]
            out = float(np.mean((d < lo) | (d > hi)))
            flags.append(Flag(name, f"share with delta outside {lo:g}-{hi:g} /day", out, f"<= {limits.max_share_delta:g}", out <= limits.max_share_delta))
        seen = np.isfinite(arm.drop)
        gap = abs(float(np.mean(arm.drop[seen]) - np.median(arm.drop[seen]))) if seen.any() else math.nan
        flags.append(Flag(name, "|mean - median| of the week-12 drop (log10)", gap, f"<= {limits.max_mean_median_gap:g}", gap <= limits.max_mean_median_gap))
        if arm.params is not None:
            block = _ifn_peak_block(population, arms_regimens[name], arm.params)
            if block is not None:
                med = float(np.median(block))
                lo, hi = limits.ifn_block_range
                flags.append(Flag(name, "median interferon production block at the first peak", med, f"in [{lo:g}, {hi:g}]", lo <= med <= hi))
                d2 = float(arm.quantiles[0, 2]) if arm.quantiles.shape[1] > 2 else math.nan
                lo, hi = limits.first_phase_range
                flags.append(Flag(name, "median 0-48 h decline (log10)", d2, f"in [{lo:g}, {hi:g}]", lo <= d2 <= hi))
        cevr = float(arm.table["pct_cevr"][0]) if "pct_cevr" in arm.table else math.nan
        if math.isfinite(cevr):
            flags.append(Flag(name, "cEVR (%)", cevr, f"<= {limits.max_pct_cevr:g}", cevr <= limits.max_pct_cevr))
    return flags


def typical_patient_flags(spec, weeks: float = 48.0, limits: Limits = Limits()) -> list[Flag]:
    """The typical patient of every arm under ``weeks`` of continuous therapy: never above baseline, T <= 1.5 T0."""
    import dataclasses

    from hcvdyn.analysis.arms import simulate_arms

    days = 7.0 * weeks
    arms = {a: tuple(dataclasses.replace(r, stop_day=days) for r in regs) for a, regs in spec.arms.items()}
    long = dataclasses.replace(spec, arms=arms, duration_days=days, sample_days=(0.0, days))
    sim = simulate_arms(long, points_per_day=4)
    flags = []
    for a, tr in sim.trajectories.items():
        rise = float(np.max(tr.log10_vl - tr.log10_vl[0]))
        flags.append(Flag(a, f"typical patient: highest load above baseline in {weeks:g} weeks (log10)", rise, "<= 0", rise <= 1e-9))
        t_ratio = float(np.max(tr.target_cells / tr.target_cells[0]))
        flags.append(Flag(a, f"typical patient: highest T / T0 in {weeks:g} weeks", t_ratio, f"<= {limits.target_ratio:g}", t_ratio <= limits.target_ratio))
    return flags


def format_flags(flags) -> str:
    """The checks as an aligned text table."""
    width = max(len(f.arm) for f in flags)
    cw = max(len(f.check) for f in flags)
    lines = [f"{f.arm:<{width}}  {f.check:<{cw}}  {f.value:>8.3g}  {'ok ' if f.ok else 'RED'}  (limit {f.limit})" for f in flags]
    return "\n".join(lines)
