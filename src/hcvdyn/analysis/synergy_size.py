"""Size (or power) of the synergy test over replicate trials: how often the likelihood-ratio test of psi = 0
rejects, how often psi's profile interval covers the true psi, whether the two decide alike, and whether the
psi-free fit ever ends above the psi = 0 fit it nests.

Replicates are simulated from a synthetic-data truth file (:func:`hcvdyn.estimate.sse.replicate_trials`). With a
``[population]`` specification each replicate is tested by the population fit
(:func:`~hcvdyn.analysis.population_synergy.estimate_population_synergy`) and, beside it, by the fixed-effects
whole-trial fit (:func:`~hcvdyn.analysis.synergy.estimate_synergy`). Simulated with psi = 0, the rejection rate is
the test's size (nominal 1 - level); with psi != 0 it is its power.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Sequence

from hcvdyn.estimate.sse import TRIAL_FIT, merged_replicates, replicate_trials, wilson_interval

__all__ = ["SynergyStudy", "synergy_study", "summarize_synergy", "combine_synergy_studies"]


@dataclass(frozen=True)
class SynergyStudy:
    """Per-replicate rows (columns ``METHOD.psi``, ``.lower``, ``.upper``, ``.lrt``, ``.p_value``, ``.rejects``,
    ``.covers_truth``, ``.covers_zero``, ``.agree``, ``.nested``, ``.converged``, ``.message``) and one summary row per method."""

    rows: tuple[dict, ...]
    summary: tuple[dict, ...]
    psi_true: float
    level: float
    seeds: tuple[int, ...]
    methods: tuple[str, ...]


def _test_replicate(run, method: str, level: float, psi_true: float, row: dict) -> None:
    from hcvdyn.solve.options import NumericalError

    key = f"{method}."
    try:
        res = run()
    except (NumericalError, RuntimeError, ValueError) as e:
        row.update({f"{key}converged": False, f"{key}message": str(e)})
        return
    lo, hi = res.psi_interval
    rejects = res.p_value < 1 - level
    row.update({f"{key}psi": res.psi, f"{key}lower": lo, f"{key}upper": hi, f"{key}lrt": res.lrt, f"{key}p_value": res.p_value,
                f"{key}rejects": bool(rejects), f"{key}covers_truth": bool(lo <= psi_true <= hi),
                f"{key}covers_zero": bool(lo <= 0.0 <= hi), f"{key}agree": bool(rejects != (lo <= 0.0 <= hi)),
                f"{key}nested": "nesting" not in res.notes, f"{key}converged": bool(res.full.success and res.null.success),
                f"{key}message": "; ".join(f"{k}: {v}" for k, v in res.notes.items()) or "converged"})


def summarize_synergy(rows: Sequence[dict], methods: Sequence[str], psi_true: float, level: float = 0.95) -> list[dict]:
    """Per method: replicates tested, rejection rate and coverage of the true psi (each with its Wilson interval),
    replicates where the test and the interval disagree, and nesting violations. A replicate counts when both its
    fits ran (``METHOD.psi`` present); ``converged`` counts those whose fits both converged."""
    out = []
    for m in methods:
        done = [r for r in rows if isinstance(r.get(f"{m}.psi"), float) and math.isfinite(r[f"{m}.psi"])]
        n = len(done)
        row = {"method": m, "psi_true": psi_true, "n_tested": n, "n_replicates": len(rows),
               "n_converged": sum(bool(r[f"{m}.converged"]) for r in done)}
        for name, col in (("rejection", "rejects"), ("coverage", "covers_truth")):
            k = sum(bool(r[f"{m}.{col}"]) for r in done)
            lo, hi = wilson_interval(k, n, level)
            row.update({f"{name}_rate": k / n if n else math.nan, f"{name}_low": lo, f"{name}_high": hi})
        row.update(disagreements=sum(not r[f"{m}.agree"] for r in done), nesting_violations=sum(not r[f"{m}.nested"] for r in done))
        out.append(row)
    return out


def synergy_study(spec_path, truth_path, n_replicates: int, seed: int = 1, level: float = 0.95, progress: bool = False,
                  compare: bool = True) -> SynergyStudy:
    """Simulate ``n_replicates`` trials from ``truth_path`` (seeds seed..seed+n-1) and test psi = 0 on each
    with the specification ``spec_path`` (module docstring). The specification's model needs an interaction pair;
    psi is neither free nor non-zero in it. The true psi is the truth file's (0, Bliss, when it gives none)."""
    from hcvdyn.analysis.population_synergy import estimate_population_synergy
    from hcvdyn.analysis.synergy import estimate_synergy
    from hcvdyn.estimate.fitspec import load_fit_spec
    from hcvdyn.estimate.synthetic import load_truth

    if not (isinstance(n_replicates, int) and n_replicates >= 2):
        raise ValueError(f"synergy_study: n_replicates = {n_replicates!r} must be an integer >= 2")
    spec, tr = load_fit_spec(spec_path), load_truth(truth_path)
    if spec.model.interaction is None:
        raise ValueError(f"synergy_study: {spec_path}: model {spec.model.name} has no interaction pair (psi)")
    psi_true = tr.shared_value("psi")
    psi_true = float(spec.model.params["psi"].default if psi_true is None else psi_true)
    population = spec.population is not None
    methods = ((spec.population.method,) if population else ()) + ((TRIAL_FIT,) if compare or not population else ())
    trial_design = spec.population.fit if population else spec.design
    seeds = tuple(range(seed, seed + n_replicates))
    rows = []
    for i, (s, data, error) in enumerate(replicate_trials(tr, seeds)):
        row = {"replicate": i + 1, "seed": s}
        regs = spec.regimens_for(data) if data is not None else {}
        for m in methods:
            if error:
                row.update({f"{m}.converged": False, f"{m}.message": error})
            elif m == TRIAL_FIT:
                _test_replicate(lambda: estimate_synergy(spec.model, data, regs, trial_design, level=level), m, level, psi_true, row)
            else:
                _test_replicate(lambda: estimate_population_synergy(spec.model, data, regs, spec.population, level=level),
                                m, level, psi_true, row)
        rows.append(row)
        if progress:
            shown = "; ".join(f"{m}: psi {row[f'{m}.psi']:+.3f} [{row[f'{m}.lower']:+.3f}, {row[f'{m}.upper']:+.3f}], "
                              f"LRT {row[f'{m}.lrt']:.2f}" if f"{m}.psi" in row else f"{m}: {row[f'{m}.message']}" for m in methods)
            print(f"replicate {i + 1}/{n_replicates} (seed {s}): {shown}", file=sys.stderr, flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k, math.nan) for k in keys} for r in rows]
    return SynergyStudy(tuple(rows), tuple(summarize_synergy(rows, methods, psi_true, level)), psi_true, level, seeds, methods)


def combine_synergy_studies(parts: Sequence[SynergyStudy]) -> SynergyStudy:
    """One study from chunks with disjoint seeds (as :func:`hcvdyn.estimate.sse.combine_studies`)."""
    if len(parts) < 2:
        raise ValueError(f"combine_synergy_studies: {len(parts)} part(s); give at least two")
    first = parts[0]
    for k, part in enumerate(parts):
        if (part.methods, part.psi_true, part.level) != (first.methods, first.psi_true, first.level):
            raise ValueError(f"combine_synergy_studies: part {k + 1} has other methods, true psi or level than part 1")
    rows, seeds = merged_replicates(parts, "combine_synergy_studies")
    return SynergyStudy(rows, tuple(summarize_synergy(rows, first.methods, first.psi_true, first.level)),
                        first.psi_true, first.level, seeds, first.methods)
