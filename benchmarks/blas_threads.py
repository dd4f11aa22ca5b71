"""Why the trial fits run their linear algebra on one BLAS thread (hcvdyn.estimate.optimize.minimize_least_squares).

scipy's trust-region least squares takes an SVD of the whole Jacobian at every iteration. For the bundled trial
(fits/tcl_recovery.toml: one row per sample, one column per estimate) that matrix is a few hundred columns wide.
OpenBLAS's threads gain nothing at that size, and when another process is busy (a second fit, a pytest worker,
JAX's own threads) they wait on each other and each SVD becomes many times slower. This script times the SVD
of a matrix of the bundled trial's Jacobian shape with OpenBLAS's default threads and with one, alone and beside
a second process doing the same, and prints the ratios. Run:  python benchmarks/blas_threads.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_info, threadpool_limits

import hcvdyn
from hcvdyn.estimate.problem import build_trial_problem


def bundled_shape() -> tuple[int, int]:
    """(samples, estimates) of the bundled whole-trial fit: the shape of the Jacobian its SVDs factor."""
    spec = hcvdyn.load_fit_spec(hcvdyn.files.find_fit_spec("tcl_recovery"))
    data = spec.read_data()
    problem = build_trial_problem(spec.model, data, spec.regimens_for(data), spec.design)
    return problem.n_obs, len(problem.labels)


def svd_seconds(shape: tuple[int, int], repeat: int, threads: int | None) -> float:
    """Median seconds of one economy SVD of a random matrix of ``shape`` (threads None: OpenBLAS's default)."""
    a = np.random.default_rng(0).random(shape)
    times = []
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(repeat):
            t = time.perf_counter()
            scipy.linalg.svd(a, full_matrices=False)
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def _busy(shape, threads, stop, ready):
    a = np.random.default_rng(1).random(shape)
    with threadpool_limits(limits=threads, user_api="blas"):
        ready.set()
        while not stop.is_set():
            scipy.linalg.svd(a, full_matrices=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="SVDs timed per case (median reported)")
    args = ap.parse_args(argv)
    shape = bundled_shape()
    default = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    print(f"bundled trial Jacobian: {shape[0]} samples x {shape[1]} estimates; OpenBLAS default threads: {default}")
    results = {}
    for beside in (False, True):
        for threads in (None, 1):
            ctx = mp.get_context("spawn")  # not fork: JAX's threads are running
            stop, ready, other = ctx.Event(), ctx.Event(), None
            if beside:  # a second process doing the same, with the same thread setting
                other = ctx.Process(target=_busy, args=(shape, threads, stop, ready), daemon=True)
                other.start()
                if not ready.wait(timeout=120):
                    raise RuntimeError("the second process did not start within 2 minutes")
            results[beside, threads] = svd_seconds(shape, args.repeat, threads)
            if other is not None:
                stop.set()
                other.join()
            label = f"{'default' if threads is None else threads} thread(s), {'beside a second process' if beside else 'alone'}"
            print(f"  {label:45s} {1000 * results[beside, threads]:8.2f} ms per SVD")
    for beside in (False, True):
        where = "beside a second process" if beside else "alone"
        print(f"one thread against the default, {where}: {results[beside, None] / results[beside, 1]:.1f}x faster")


if __name__ == "__main__":
    main()
