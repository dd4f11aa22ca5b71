"""Virtual trials: a population's patients drawn, dosed with each arm's regimens (adherence, weight, dropout),
solved on the fixed grid, measured with assay error, and summarised per arm with intervals over the calibration's
draws (or a bootstrap over patients); arm-to-arm comparisons.
"""


from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from hcvdyn.analysis.population import Population, load_population
from hcvdyn.model.trial_design import TrialSpec
from hcvdyn.solve.grid import DEFAULT_STEPS_PER_DAY

__all__ = [
    "Population",
    "load_population",
    "ArmResult",
    "VirtualTrial",
    "run_virtual_trial",
    "simulate_arm_patients",
    "chunk_sizes",
    "compare_arms",
]


@dataclass(frozen=True)
class ArmResult:
    """One arm of a virtual trial: per-patient outcomes (observed, with assay error) and the summary table.

    table[stat] = (value, lower, upper) with bootstrap percentile intervals (or intervals over calibration
    draws); stats: n, n_week12 (observed at week 12), mean_drop, sd_drop (week-12 log10 drop among those
    observed, censored values at the limit), mean_drop_w4 (the same at week 4),
    pct_rvr, pct_evr, pct_cevr (among the patients still on study at week 4 or 12, as trials report completers).
    """

    name: str
    table: Mapping[str, tuple[float, float, float]]
    drop: np.ndarray
    rvr: np.ndarray
    evr: np.ndarray
    cevr: np.ndarray
    true_drop: np.ndarray  # noise-free model drop at week 12
    quantiles: np.ndarray  # (3, days + 1): median, 5%, 95% of the noise-free log10 drop from baseline
    groups: np.ndarray
    max_target_ratio: np.ndarray | None = None  # per patient, max over days of T / T0 (noise-free)
    params: Mapping[str, np.ndarray] | None = None  # the sampled per-patient parameters
    draw: np.ndarray | None = None  # index of the calibrated-parameter draw of each patient (None: no draws)
    mean_drop_daily: np.ndarray | None = None  # (days + 1,) mean noise-free log10 drop from baseline


@dataclass(frozen=True)
class VirtualTrial:
    population: str
    trial: str
    seed: int
    n_per_arm: int
    days: int
    steps_per_day: int
    arms: Mapping[str, ArmResult]
    definitions: object

    def summary_rows(self) -> list[dict]:
        rows = []
        for a, r in self.arms.items():
            row = {"arm": a}
            for k, (v, lo, hi) in r.table.items():
                row[k], row[f"{k}_lo"], row[f"{k}_hi"] = v, lo, hi
            rows.append(row)
        return rows


def _resample_rows(rng, n: int, n_boot: int, block_bytes: int = 1 << 26):
    """Bootstrap index rows, n_boot of n each, drawn in blocks of about 64 MB: the same stream as one
    (n_boot, n) draw, without holding it (1,000 resamples of 100,000 patients would take 800 MB)."""
    per_block = max(1, block_bytes // (8 * max(n, 1)))
    for start in range(0, n_boot, per_block):
        yield from rng.integers(0, n, size=(min(per_block, n_boot - start), n))


def _bootstrap(stat, n: int, rng, n_boot: int, level: float = 0.95):
    if n_boot < 1:
        return (math.nan, math.nan)
    vals = np.array([stat(i) for i in _resample_rows(rng, n, n_boot)])
    a = (1 - level) / 2
    return tuple(float(x) for x in np.nanquantile(vals, [a, 1 - a]))


def _over_draws(stat, draw, level: float = 0.95):
    """Quantiles of a statistic computed within each calibrated-parameter draw (indices of its patients)."""
    import warnings

    with warnings.catch_warnings():  # a draw whose few patients all dropped out gives NaN, left out below
        warnings.simplefilter("ignore", RuntimeWarning)
        vals = np.array([stat(np.flatnonzero(draw == k)) for k in range(int(draw.max()) + 1)])
    a = (1 - level) / 2
    return tuple(float(x) for x in np.nanquantile(vals, [a, 1 - a]))


def _progress(label: str, done: int, total: int, enabled: bool) -> None:
    import sys

    if enabled:
        width = 30
        k = int(width * done / max(total, 1))
        sys.stderr.write(f"\r{label:<12} [{'#' * k}{'.' * (width - k)}] {done}/{total} patients")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def chunk_sizes(n: int, chunk: int, workers: int) -> tuple[int, int]:
    """(patients per chunk, number of chunks) for ``n`` patients: at most ``chunk`` per chunk, at least one chunk
    per worker once there are 128 patients for each, and sizes rounded up to a multiple of 64, so that nearby
    trial sizes share one compiled solver and the padding of the last chunk stays small."""
    k = max(-(-n // chunk), min(workers, n // 128), 1)
    size = -(-n // k)
    size = min(max(chunk, 1), -(-size // 64) * 64)
    return size, -(-n // size)


def simulate_arm_patients(model, params, weights, taken, regimens, days: int, steps_per_day: int, chunk: int, label="", progress=False, widths=None, states=False, target_peak=False):
    """Noise-free daily log10 loads (n, days + 1) for patients given per-patient parameters and doses taken.

    states=True returns the daily natural-log states instead, shape (n, 4, days + 1) (ln T, ln I, ln V_I, ln V).
    target_peak=True returns (log10 loads, largest T / T0 over the days per patient), without the states.
    steps_per_day: base steps a day, at least; each patient gets as many as its virion clearance needs
    (:func:`hcvdyn.solve.grid.base_steps`), and the patients needing the same are solved together on one mesh.
    Each such group is solved in chunks of at most ``chunk`` (:func:`chunk_sizes`, rounded up to a power of two when
    there are several groups; the last chunk of a group padded), so calls share compiled solvers and memory beyond
    the outputs stays bounded; chunks run on one thread per CPU core (the compiled solver releases Python's lock).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from hcvdyn.solve.grid import base_steps, day_mesh, grid_schedule, population_solver
    from hcvdyn.solve.options import pad_last

    n = next(iter(params.values())).size
    need = base_steps(params["c"], steps_per_day)
    workers = os.cpu_count() or 1
    bases = np.unique(need)
    tasks = []  # (solver, schedule, patients of the chunk, the chunk's padded size)
    for base in bases:
        group = np.flatnonzero(need == base)
        mesh = day_mesh(model, regimens, int(base))
        solver, sched = population_solver(model, days, mesh), grid_schedule(regimens, model.pk_drugs, days, mesh, widths)
        size, _ = chunk_sizes(group.size, chunk, workers)
        if bases.size > 1:  # group sizes vary from draw to draw: powers of two keep the compiled shapes few
            size = min(max(chunk, 1), 1 << (size - 1).bit_length())
        tasks.extend((solver, sched, group[start : start + size], size) for start in range(0, group.size, size))

    def solve_chunk(task):
        solver, sched, members, size = task
        idx = pad_last(members, size)  # the last chunk of a group repeats its last patient
        p = {k: np.asarray(v)[idx] for k, v in params.items()}
        tk = {d: np.asarray(v)[idx] for d, v in taken.items()}
        ys = np.asarray(solver(p, sched.index, sched.amounts(np.asarray(weights)[idx], tk)))[:, :, : members.size]
        return members, ys

    out = np.empty((n, 4, days + 1)) if states else np.empty((n, days + 1))
    peak = np.empty(n)
    done = 0
    with ThreadPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        for members, ys in pool.map(solve_chunk, tasks):  # ys: (days + 1, 4, patients) ln-states
            if states:
                out[members] = np.transpose(ys, (2, 1, 0))
            else:
                out[members] = ys[:, 3].T / np.log(10.0)
            peak[members] = np.exp(np.max(ys[:, 0] - ys[:1, 0], axis=0))
            done += members.size
            _progress(label, done, n, progress)
    return (out, peak) if target_peak else out


def run_virtual_trial(
    population: Population, spec: TrialSpec, n_per_arm: int, seed: int, days: int | None = None,
    steps_per_day: int = DEFAULT_STEPS_PER_DAY, n_boot: int = 1000, chunk: int = 1024, progress: bool = False, defs=None,
    arms: Mapping[str, tuple] | None = None, param_overrides: Mapping[str, Mapping[str, float]] | None = None,
    adherence: Mapping[str, float] | None = None, common_patients: bool = False, n_draws: int = 20,
) -> VirtualTrial:
    """Simulate a virtual trial: ``n_per_arm`` patients per arm drawn from ``population`` (seeded per arm).

    Each patient is solved on the fixed grid (:func:`hcvdyn.solve.grid.solve_population`) with at least
    ``steps_per_day`` base steps a day, more for patients whose virion clearance needs them
    (:func:`hcvdyn.solve.grid.base_steps`; the result records the requested value, from which the meshes follow),
    sampled at the trial's
    sample days plus weeks 4 and 12 with N(0, sigma) assay error, censored below the trial's limit, and
    censored at dropout. arms: override the spec's arms (name -> regimens); param_overrides: arm -> parameter
    values fixed for every patient of that arm; adherence: arm -> mean adherence replacing the population's.
    common_patients: every arm gets the same virtual patients (parameters, weights, adherence propensity,
    dropout times and assay errors), as in what-if comparisons; otherwise each arm draws its own.
    n_draws: when the population carries its calibration's uncertainty (``knob_cov``), that many sets of
    calibrated values are drawn once (shared by all arms) and patient i of every arm takes set i mod n_draws;
    intervals in the table are then the 2.5-97.5% quantiles of the statistic over the sets, so they carry the
    calibration's uncertainty as well as the patients' (0: typical values as given, bootstrap intervals).
    """
    from hcvdyn.analysis.outcomes import OutcomeDefinitions, classify

    if n_per_arm < 1:
        raise ValueError(f"n_per_arm = {n_per_arm} must be >= 1")
    days = int(round(spec.duration_days)) if days is None else int(days)
    defs = defs or OutcomeDefinitions(lloq_iu_ml=10 ** spec.lloq_log10)
    if days < 7 * defs.evr_week:
        raise ValueError(f"days = {days}: the trial must run to week {defs.evr_week:g} for EVR")
    model = population.model
    arms = dict(spec.arms if arms is None else arms)
    from hcvdyn.solve.grid import scheduled_doses

    widths = {d: 1 + max(scheduled_doses(r, d, days).size for r in arms.values()) for d in model.pk_drugs}
    draws = population.draw_typical(n_draws, np.random.default_rng([seed, 3]))
    results = {}
    for ai, (arm, regimens) in enumerate(arms.items()):
        rng = np.random.default_rng([seed, 0 if common_patients else ai])
        pop = population
        if adherence and arm in adherence:
            pop = dataclasses.replace(population, adherence=(adherence[arm], population.adherence[1]))
        params, labels, weights, adh = pop.sample(n_per_arm, rng, (param_overrides or {}).get(arm), draws)
        draw = np.arange(n_per_arm) % len(draws) if draws else None
        unit = rng.random(n_per_arm)
        drop_out = -np.log1p(-unit) * 7.0 / pop.dropout_per_week if pop.dropout_per_week > 0 else np.full(n_per_arm, np.inf)
        noise = pop.sigma_log10 * rng.standard_normal((n_per_arm, 3))
        drng = np.random.default_rng([seed, ai, 2])
        taken = {d: drng.random((n_per_arm, scheduled_doses(regimens, d, days).size)) < adh[:, None] for d in model.pk_drugs}
        v, max_t = simulate_arm_patients(model, params, weights, taken, regimens, days, steps_per_day, chunk, arm, progress, widths,
                                         target_peak=True)
        w_rvr, w_evr = int(round(7 * defs.rvr_week)), int(round(7 * defs.evr_week))
        obs = v[:, [0, w_rvr, w_evr]] + noise
        seen = np.stack([np.ones(n_per_arm, bool), drop_out > w_rvr, drop_out > w_evr], axis=1)
        cens = obs < defs.lloq_log10
        obs = np.where(seen, np.where(cens, defs.lloq_log10, obs), np.nan)
        cens &= seen
        flags = classify(obs[:, 0], obs[:, 1], obs[:, 2], cens[:, 1], cens[:, 2], defs)
        drop = flags["drop_evr"]
        drop4 = np.where(seen[:, 1], obs[:, 0] - obs[:, 1], np.nan)  # censored week-4 values count at the limit
        true_drop = v[:, 0] - v[:, w_evr]
        n = n_per_arm
        brng = np.random.default_rng([seed, ai, 1])
        interval = (lambda stat: _over_draws(stat, draw)) if draw is not None else (lambda stat: _bootstrap(stat, n, brng, n_boot))
        table = {
            "n": (float(n), math.nan, math.nan),
            "n_week12": (float(np.isfinite(drop).sum()), math.nan, math.nan),
            "mean_drop": (float(np.nanmean(drop)), *interval(lambda i: np.nanmean(drop[i]))),
            "sd_drop": (float(np.nanstd(drop, ddof=1)), *interval(lambda i: np.nanstd(drop[i], ddof=1))),
            "mean_drop_w4": (float(np.nanmean(drop4)), *interval(lambda i: np.nanmean(drop4[i]))),
        }
        for k, week_seen in (("rvr", seen[:, 1]), ("evr", seen[:, 2]), ("cevr", seen[:, 2])):
            f = np.where(week_seen, flags[k], np.nan)  # among patients still on study that week, as trials report
            table[f"pct_{k}"] = (100 * float(np.nanmean(f)), *(100 * x for x in interval(lambda i: np.nanmean(f[i]))))
        d = v[:, :1] - v
        q = np.quantile(d, [0.5, 0.05, 0.95], axis=0)
        results[arm] = ArmResult(arm, table, drop, flags["rvr"], flags["evr"], flags["cevr"], true_drop, q, labels, max_t, params,
                                 draw, d.mean(axis=0))
    return VirtualTrial(population.name, spec.name, seed, n_per_arm, days, steps_per_day, results, defs)


def compare_arms(vt: VirtualTrial, reference: str, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Differences from the reference arm (mean week-12 drop, % EVR, % RVR, % cEVR) with paired bootstrap intervals.

    Arms of a scenario run share their virtual patients, so patients are resampled jointly.
    """
    ref = vt.arms[reference]
    n = ref.drop.size
    a = (1 - level) / 2
    rows = []
    for name, arm in vt.arms.items():
        if name == reference:
            continue
        stats = {
            "diff_mean_drop": lambda i, x=arm, r=ref: np.nanmean(x.drop[i]) - np.nanmean(r.drop[i]),
            "diff_pct_evr": lambda i, x=arm, r=ref: 100 * (x.evr[i].mean() - r.evr[i].mean()),
            "diff_pct_rvr": lambda i, x=arm, r=ref: 100 * (x.rvr[i].mean() - r.rvr[i].mean()),
            "diff_pct_cevr": lambda i, x=arm, r=ref: 100 * (x.cevr[i].mean() - r.cevr[i].mean()),
        }
        row = {"scenario": name, "reference": reference}
        full = np.arange(n)
        for k, f in stats.items():
            boots = np.array([f(i) for i in _resample_rows(np.random.default_rng([seed, 99]), n, n_boot)])  # same rows each time
            row[k] = float(f(full))
            row[f"{k}_lo"], row[f"{k}_hi"] = (float(x) for x in np.quantile(boots, [a, 1 - a]))
        rows.append(row)
    return rows
