"""Patient-courses per second: hcvdyn (diffrax, jit + vmap) vs scipy.integrate.solve_ivp (LSODA), same model.

Three-drug PK-PD model (pkpd3) over 48 weeks: pegIFN alfa-2b 1.5 ug/kg weekly, ribavirin 500 mg twice daily,
celgosivir 400 mg daily; log-normal between-patient variability (seeded). The reference integrates the same
right-hand side with LSODA, split at every dose time, on a subsample; both rates and the largest log10
difference on the subsample are printed, with the ratio. Run:  python benchmarks/simulate.py [--n 10000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import hcvdyn
from hcvdyn import Regimen, SolverOptions, Trajectory
from hcvdyn.solve.adaptive import batch_solver, prepare_batch


def population(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ln = lambda typical, sd: typical * np.exp(sd * rng.standard_normal(n))  # noqa: E731
    return {
        "log10_V0": np.clip(6.5 + 0.5 * rng.standard_normal(n), 4.0, 8.0),
        "delta": ln(0.14, 0.5),
        "c": ln(6.2, 0.3),
        "ifn_ec50": ln(0.45, 0.7),
        "rbv_ec50": ln(1.0, 0.5),
        "cel_ec50": ln(0.5, 0.5),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="patients in the batched run (default 10000)")
    ap.add_argument("--n-ref", type=int, default=4, help="patients solved with solve_ivp (default 4)")
    ap.add_argument("--weeks", type=float, default=48.0)
    ap.add_argument("--atol", type=float, default=1e-6, help="hcvdyn absolute tolerance on ln-states")
    ap.add_argument("--ref-tol", type=float, default=1e-8, help="LSODA rtol = atol")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    model = hcvdyn.get_model("pkpd3")
    days = 7.0 * args.weeks
    regimens = [
        Regimen("peginterferon_alfa2b", 1.5, "ug/kg", 7.0, stop_day=days),
        Regimen("ribavirin", 500.0, "mg", 0.5, stop_day=days),
        Regimen("celgosivir", 400.0, "mg", 1.0, stop_day=days),
    ]
    t = np.unique(np.concatenate([[0, 1, 2, 3, 7, 14], np.arange(28, days + 1e-9, 28.0), [days]]))
    params = population(args.n, args.seed)
    options = SolverOptions(atol=args.atol)

    args_ = prepare_batch(model, params, regimens, t)
    t0 = time.perf_counter()
    compiled = batch_solver(model, options).lower(*args_).compile()  # ahead of time: compile only
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ys, ok, steps = compiled(*args_)
    ys.block_until_ready()
    wall = time.perf_counter() - t0
    batch = Trajectory.from_log_states(t, ys, ok, steps)
    jax_rate = args.n / wall

    ref_times, diffs = [], []
    for i in range(args.n_ref):
        p = {k: float(v[i]) for k, v in params.items()}
        t0 = time.perf_counter()
        ref = hcvdyn.simulate_scipy(model, p, regimens, t, method="LSODA", rtol=args.ref_tol, atol=args.ref_tol)
        ref_times.append(time.perf_counter() - t0)
        diffs.append(np.max(np.abs(ref.log10_vl - batch.log10_vl[i])))
    ref_rate = 1.0 / np.mean(ref_times)

    print(f"model pkpd3, {args.weeks:g} weeks, {len(t)} sample times, cores available: {os.cpu_count()}")
    print(f"hcvdyn  : {args.n} patients in {wall:.2f} s -> {jax_rate:,.1f} patient-courses/s "
          f"(compile {compile_s:.2f} s, excluded; "
          f"max steps {int(np.max(batch.num_steps))}; all ok: {bool(np.all(batch.ok))})")
    print(f"scipy   : LSODA rtol=atol={args.ref_tol:g}, {args.n_ref} patients, {np.mean(ref_times):.2f} s each "
          f"-> {ref_rate:.3f} patient-courses/s")
    print(f"ratio   : {jax_rate / ref_rate:,.0f}x")
    print(f"accuracy: largest |log10 V difference| on the subsample = {max(diffs):.2e} log10 IU/mL")


if __name__ == "__main__":
    main()
