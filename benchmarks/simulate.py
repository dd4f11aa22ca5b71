"""Patient-courses per second on the three-drug model (pkpd3, 48 weeks): every hcvdyn path, LSODA and R's deSolve.

Regimen: pegIFN alfa-2b 1.5 ug/kg weekly, ribavirin 500 mg twice daily, celgosivir 400 mg daily, at 70 kg;
log-normal between-patient variability (seeded, `population`). One line per path, each with its rate and its
largest |log10 V difference| on 20 patients against a tight reference (the adaptive solver at atol 1e-10):

* adaptive: diffrax Tsit5 with step control, jit + vmap (`simulate_batch`), at --atol;
* grid:     the fixed-grid population solver of virtual trials (`solve_population`), one line for each of
            --steps-per-day (default 4, the default, and 16), on the mesh virtual trials use (`day_mesh`: graded
            after each celgosivir dose), with more base steps for the patients whose fast clearance needs
            them (`base_steps`; the line gives their shares);
* LSODA:    scipy's solve_ivp on the same right-hand side, split at every dose, on --n-ref patients;
* deSolve:  the compiled-C peer in ../shared/peers/desolve (lsode, analytic PK, one core), run through its
            run.sh when Rscript is on PATH (apt-get install r-base-core r-base-dev r-cran-desolve); the line
            says so when it is not.

Ratios against LSODA and deSolve are printed for each hcvdyn path. All rates are measured in this run.

    python benchmarks/simulate.py [--n 2000] [--steps-per-day 4,16] [--no-peer]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

import hcvdyn
from hcvdyn import Regimen, SolverOptions
from hcvdyn.analysis.virtual_trial import simulate_arm_patients
from hcvdyn.solve.adaptive import batch_solver, prepare_batch
from hcvdyn.solve.grid import base_steps, day_mesh

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT.parent / "shared" / "peers" / "desolve" / "run.sh"
WEIGHT_KG = 70.0


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


def regimens(days: float) -> list[Regimen]:
    return [
        Regimen("peginterferon_alfa2b", 1.5, "ug/kg", 7.0, stop_day=days),
        Regimen("ribavirin", 500.0, "mg", 0.5, stop_day=days),
        Regimen("celgosivir", 400.0, "mg", 1.0, stop_day=days),
    ]


def adaptive_timed(model, regs, t, options, params):
    """(compile seconds, run seconds, largest step count) of the adaptive solver on ``params``, compiled ahead of
    time for exactly the timed shapes."""
    args = prepare_batch(model, params, regs, t)
    t0 = time.perf_counter()
    compiled = batch_solver(model, options).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ys, ok, steps = compiled(*args)
    ys.block_until_ready()
    wall = time.perf_counter() - t0
    if not np.all(np.asarray(ok)):
        raise RuntimeError("adaptive path: a solve failed")
    return compile_s, wall, int(np.max(np.asarray(steps)))


def adaptive_loads(model, regs, t, options, params) -> np.ndarray:
    traj = hcvdyn.simulate_batch(model, params, regs, t, options=options)
    if not np.all(traj.ok):
        raise RuntimeError("adaptive path: a solve failed")
    return traj.log10_vl


def grid_path(model, regs, t, days: int, steps_per_day: int, chunk: int = 4096):
    """(compile seconds, run(params) -> log10 V (n, len(t))); t must be whole days."""
    defaults = model.params.defaults()

    def run(params):
        n = next(iter(params.values())).size
        full = {k: np.full(n, v) for k, v in defaults.items()} | {k: np.asarray(v, dtype=float) for k, v in params.items()}
        daily = simulate_arm_patients(model, full, np.full(n, WEIGHT_KG), {}, regs, days, steps_per_day, chunk)
        return daily[:, t.astype(int)]

    t0 = time.perf_counter()
    run(population(2, 0))
    return time.perf_counter() - t0, run


def timed(run, params):
    t0 = time.perf_counter()
    out = run(params)
    return out, time.perf_counter() - t0


def run_peer(n: int):
    """(rate, max |dlog10| vs hcvdyn, message) of the deSolve peer, or (None, None, why it did not run)."""
    if shutil.which("Rscript") is None:
        return None, None, "not run: no Rscript on PATH (apt-get install r-base-core r-base-dev r-cran-desolve)"
    if not PEER.is_file():
        return None, None, f"not run: {PEER} not found"
    env = {**os.environ, "N_PATIENTS": str(n)}
    proc = subprocess.run(["bash", str(PEER), str(ROOT)], capture_output=True, text=True, env=env)
    last = re.search(r"desolve: (\d+) patients, ([\d.]+) patient-courses/s, max \|dlog10\| = ([\d.e+-]+)", proc.stdout)
    if "parameter columns differ from the C layout" in proc.stdout + proc.stderr:
        return None, None, ("not comparable: the peer's C model predates pkpd3's current parameters (two-compartment "
                            "interferon PK: ifn_vc, ifn_q, ifn_vp; ifn_emax_late, ifn_k_ref); run.sh stopped at its "
                            "layout check")
    if proc.returncode or not last:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return None, None, f"failed (exit {proc.returncode}): {' / '.join(tail)}"
    return float(last.group(2)), float(last.group(3)), f"{last.group(1)} patients, lsode with analytic PK in C, one core"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="patients in each timed hcvdyn run (default 2000)")
    ap.add_argument("--n-ref", type=int, default=3, help="patients solved with solve_ivp (default 3)")
    ap.add_argument("--n-acc", type=int, default=20, help="patients of the accuracy check (default 20)")
    ap.add_argument("--n-peer", type=int, default=100, help="timing patients of the deSolve peer (default 100)")
    ap.add_argument("--weeks", type=int, default=48)
    ap.add_argument("--atol", type=float, default=1e-6, help="adaptive path: absolute tolerance on ln-states")
    ap.add_argument("--steps-per-day", default="4,16", help="grid path: base steps per day, comma-separated (default 4,16)")
    ap.add_argument("--tight", type=float, default=1e-10, help="atol of the adaptive reference (default 1e-10)")
    ap.add_argument("--ref-tol", type=float, default=1e-8, help="LSODA rtol = atol")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-peer", action="store_true", help="do not run the deSolve peer")
    args = ap.parse_args(argv)

    model = hcvdyn.get_model("pkpd3")
    days = 7 * args.weeks
    regs = regimens(float(days))
    t = np.unique(np.concatenate([[0, 1, 2, 3, 7, 14], np.arange(28, days + 1e-9, 28.0), [days]]))
    timing, acc = population(args.n, args.seed), population(args.n_acc, args.seed)

    reference = adaptive_loads(model, regs, t, SolverOptions(atol=args.tight), acc)
    rows = []
    options = SolverOptions(atol=args.atol)
    compile_a, wall, steps_a = adaptive_timed(model, regs, t, options, timing)
    err = np.max(np.abs(adaptive_loads(model, regs, t, options, acc) - reference))
    rows.append((f"adaptive Tsit5, atol {args.atol:g}", args.n / wall, err,
                 f"compile {compile_a:.1f} s; largest step count {steps_a}"))
    for spd in (int(v) for v in args.steps_per_day.split(",")):
        compile_g, run_g = grid_path(model, regs, t, days, spd)
        run_g(timing)  # the timed shape compiled too (chunk sizes depend on n)
        _, wall = timed(run_g, timing)
        err = np.max(np.abs(run_g(acc) - reference))
        need = base_steps(timing["c"], spd)  # per patient, as simulate_arm_patients takes them
        meshes = ", ".join(f"{int(b)}: {np.mean(need == b):.0%}" for b in np.unique(need))
        steps = day_mesh(model, regs, spd).size
        rows.append((f"grid, {spd} steps/day", args.n / wall, err,
                     f"{steps} steps a day at {spd}, graded; patients by base steps {meshes}; compile {compile_g:.1f} s"))

    ref_times, ref_err = [], 0.0
    for i in range(args.n_ref):
        p = {k: float(v[i]) for k, v in acc.items()}
        t0 = time.perf_counter()
        ref = hcvdyn.simulate_scipy(model, p, regs, t, method="LSODA", rtol=args.ref_tol, atol=args.ref_tol)
        ref_times.append(time.perf_counter() - t0)
        ref_err = max(ref_err, float(np.max(np.abs(ref.log10_vl - reference[i]))))
    lsoda_rate = 1.0 / np.mean(ref_times)
    peer_rate, peer_err, peer_msg = (None, None, "not run (--no-peer)") if args.no_peer else run_peer(args.n_peer)

    print(f"model pkpd3, {args.weeks} weeks, {len(t)} sample times, {args.n} timed patients, cores available: {os.cpu_count()}")
    print(f"accuracy: largest |dlog10 V| on {args.n_acc} patients against hcvdyn adaptive at atol {args.tight:g}")
    for name, rate, err, note in rows:
        vs_peer = f", {rate / peer_rate:.2f}x deSolve" if peer_rate else ""
        print(f"hcvdyn {name:<24}: {rate:9,.1f} patient-courses/s, max |dlog10| {err:.1e}  "
              f"({rate / lsoda_rate:,.0f}x LSODA{vs_peer}; {note})")
    print(f"scipy LSODA rtol=atol={args.ref_tol:g}      : {lsoda_rate:9,.3f} patient-courses/s, max |dlog10| {ref_err:.1e}  "
          f"({args.n_ref} patients, {np.mean(ref_times):.1f} s each)")
    if peer_rate:
        print(f"deSolve (compiled C)           : {peer_rate:9,.1f} patient-courses/s, max |dlog10| {peer_err:.1e}  "
              f"({peer_msg}; its error is against hcvdyn at atol 1e-8)")
    else:
        print(f"deSolve (compiled C)           : {peer_msg}")


if __name__ == "__main__":
    main()
