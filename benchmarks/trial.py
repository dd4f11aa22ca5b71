"""Virtual patients per second for a whole virtual trial: hcvdyn's fixed-grid batched solver vs solve_ivp.

A 10,000-patient, three-arm (triple / double / control), 48-week trial of the calibrated non-responder
population (models/g1_nonresponder_population.toml) with PK for all three drugs, adherence, dropout and assay
error: `run_virtual_trial` end to end (sampling, solving, outcomes, bootstrap). The reference solves a
subsample of the same virtual patients one by one with scipy.integrate.solve_ivp (LSODA, rtol = atol =
1e-8, split at every dose), under full adherence on both sides; the largest log10 difference on that
subsample is printed with the rates and their ratio. The aim was a whole trial in under 5 s on 2 cores.

    python benchmarks/trial.py [--n 10000] [--n-ref 3] [--steps-per-day 8]
    python benchmarks/trial.py --scaling     # time per patient and peak memory, 100 to 100,000 patients per arm
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

import hcvdyn  # noqa: F401  (enables 64-bit floats)
from hcvdyn.model.trial_design import load_trial
from hcvdyn.solve.grid import DEFAULT_STEPS_PER_DAY, scheduled_doses
from hcvdyn.solve.reference import simulate_scipy
from hcvdyn.analysis.population import load_population
from hcvdyn.analysis.virtual_trial import run_virtual_trial, simulate_arm_patients

WEEKS = 48


def trial_spec(days: int):
    spec = load_trial("celgosivir_phase2")
    arms = {a: tuple(dataclasses.replace(r, stop_day=float(days)) for r in regs) for a, regs in spec.arms.items()}
    return dataclasses.replace(spec, arms=arms, duration_days=float(days))


def scaling_point(per_arm: int, steps_per_day: int, seed: int) -> None:
    """One line of --scaling: a warm-up at the same chunk shape, then the timed trial; peak resident memory."""
    import resource

    pop, spec = load_population("g1_nonresponder_population"), trial_spec(7 * WEEKS)
    run_virtual_trial(pop, spec, min(per_arm, 2048), seed + 1, steps_per_day=steps_per_day, n_boot=10)  # 2048: chunks of 1024
    t = time.perf_counter()
    run_virtual_trial(pop, spec, per_arm, seed, steps_per_day=steps_per_day, n_boot=1000)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    print(f"{per_arm:>9,d} {3 * per_arm:>9,d} {wall:>9.1f} {1e6 * wall / (3 * per_arm):>12.0f} {peak:>9.2f}", flush=True)


def scaling(steps_per_day: int, seed: int) -> None:
    import subprocess
    import sys

    print(f"cpu cores: {os.cpu_count()}; 3 arms, {WEEKS} weeks, {steps_per_day} steps/day; each size in a fresh process")
    print(f"{'per arm':>9} {'patients':>9} {'wall s':>9} {'us/patient':>12} {'peak GiB':>9}", flush=True)
    for per_arm in (100, 1_000, 10_000, 100_000):
        subprocess.run([sys.executable, __file__, "--per-arm", str(per_arm), "--steps-per-day", str(steps_per_day),
                        "--seed", str(seed)], check=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="patients in the whole trial (default 10000, split over 3 arms)")
    ap.add_argument("--n-ref", type=int, default=3, help="patients solved with solve_ivp (default 3)")
    ap.add_argument("--steps-per-day", type=int, default=DEFAULT_STEPS_PER_DAY)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--scaling", action="store_true", help="time and peak memory for 100 to 100,000 patients per arm, each in a fresh process")
    ap.add_argument("--per-arm", type=int, default=None, help=argparse.SUPPRESS)  # one point of --scaling
    args = ap.parse_args(argv)
    if args.scaling:
        return scaling(args.steps_per_day, args.seed)
    if args.per_arm is not None:
        return scaling_point(args.per_arm, args.steps_per_day, args.seed)

    pop = load_population("g1_nonresponder_population")
    days = 7 * WEEKS
    spec = trial_spec(days)
    arms = spec.arms
    per_arm = -(-args.n // len(arms))
    print(f"cpu cores: {os.cpu_count()}; {len(arms)} arms x {per_arm} patients, {WEEKS} weeks, {args.steps_per_day} steps/day")

    t = time.perf_counter()
    run_virtual_trial(pop, spec, per_arm, args.seed + 1, steps_per_day=args.steps_per_day, n_boot=10)  # compile + warm, same shapes
    warm = time.perf_counter() - t
    t = time.perf_counter()
    vt = run_virtual_trial(pop, spec, per_arm, args.seed, steps_per_day=args.steps_per_day, n_boot=1000)
    wall = time.perf_counter() - t
    n_total = per_arm * len(arms)
    rate = n_total / wall
    print(f"hcvdyn: whole trial ({n_total} patients, outcomes and 1000-resample bootstrap) in {wall:.1f} s "
          f"= {rate:.0f} patients/s (warm-up with compilation: {warm:.1f} s)")
    for a, r in vt.arms.items():
        print(f"  {a:8s} mean week-12 drop {r.table['mean_drop'][0]:.2f} log10, EVR {r.table['pct_evr'][0]:.1f}%")

    # Reference: the same virtual patients (full adherence), one solve_ivp per patient.
    rng = np.random.default_rng([args.seed, 123])
    params, _, weights, _ = pop.sample(args.n_ref, rng)
    names = list(arms)
    ref_time, max_diff = 0.0, 0.0
    t_obs = np.arange(days + 1.0)
    for i in range(args.n_ref):
        regs = arms[names[i % len(names)]]
        p_i = {k: float(v[i]) for k, v in params.items()}
        t = time.perf_counter()
        ref = simulate_scipy(pop.model, p_i, regs, t_obs, weight_kg=float(weights[i]), rtol=1e-8, atol=1e-8).log10_vl
        ref_time += time.perf_counter() - t
        one = {k: v[i : i + 1] for k, v in params.items()}
        taken = {d: np.ones((1, scheduled_doses(regs, d, days).size), bool) for d in pop.model.pk_drugs}
        ours = simulate_arm_patients(pop.model, one, weights[i : i + 1], taken, regs, days, args.steps_per_day, 1)[0]
        max_diff = max(max_diff, float(np.max(np.abs(ours - ref))))
    ref_rate = args.n_ref / ref_time
    print(f"solve_ivp (LSODA) loop: {ref_rate:.4f} patients/s on {args.n_ref} patients ({ref_time:.1f} s)")
    print(f"ratio: {rate / ref_rate:.0f}x; largest difference on the subsample: {max_diff:.2e} log10")
    print(f"aim: whole trial < 5 s; reached {wall:.1f} s")


if __name__ == "__main__":
    main()
