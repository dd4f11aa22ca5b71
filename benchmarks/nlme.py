"""Population fit (FOCE-I) of the bundled 57-patient trial with three random effects, to convergence and through the
covariance step: exact outer gradients (JAX through the solver and the modes) against the same objective with
central-difference outer gradients, measured in the same run; then a 1,000-patient trial simulated from the fitted
population and fitted with exact gradients, started at that population (from the design's starting values one of
1,000 drawn patients has no conditional mode: the fit stops and names the patient).

Random effects: log10_V0 (normal), delta (log-normal) and eps (logit-normal); rho and phi are fixed effects of
the arms that receive ribavirin and celgosivir; the residual SD is estimated. Prints wall time, objective and
gradient evaluations, OFV and the largest difference in estimates between the two runs, and the ratio of times.
The exact-gradient fit runs twice: in a fresh process (compiling) and again (compiled, as a second `hcvdyn fit` with
the persistent compilation cache would be); the finite-difference run compiles only what it does not share.

Run:  python benchmarks/nlme.py [--skip-differences] [--n-large 1000]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

import hcvdyn
from hcvdyn.estimate.data import Dataset, PatientData
from hcvdyn.estimate.fitspec import load_fit_spec
from hcvdyn.estimate.population_design import PopulationDesign
from hcvdyn.estimate.population_fit import fit_population


def design_of(spec):
    fd = replace(spec.design, individual=("log10_V0", "delta", "eps"), shared={k: v for k, v in spec.design.shared.items() if k != "eps"},
                 estimate_sigma=True)
    return PopulationDesign(fit=fd, omega={"log10_V0": 0.3, "delta": 0.5, "eps": 0.5})


def simulated_trial(fit, data, n: int, seed: int) -> Dataset:
    """n patients with the bundled trial's arms and sample times, drawn from the fitted population."""
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    problem = fit.problem
    x = jnp.asarray([fit.x[v.label] for v in fit.values])
    pats = list(data)
    chol = np.linalg.cholesky(fit.omega)
    out = []
    while len(out) < n:
        eta = rng.standard_normal((len(pats), len(fit.random))) @ chol.T
        f = np.asarray(problem.engine.predict_batch(x, problem.arrays, jnp.asarray(eta)))
        for i, p in enumerate(pats):
            if len(out) == n or not np.all(np.isfinite(f[i, : p.n_obs])):
                continue
            y = f[i, : p.n_obs] + fit.sigma * rng.standard_normal(p.n_obs)
            cens = y < p.lloq_log10
            out.append(PatientData(f"V{len(out):04d}", p.arm, p.t_days, np.where(cens, p.lloq_log10, y), cens, p.lloq_log10, group=p.group))
    return Dataset(tuple(out))


def report(label, fit):
    print(f"{label:34s} {fit.seconds:7.1f} s  {fit.evaluations:4d} evaluations  OFV {fit.ofv:.4f}  "
          f"{'converged' if fit.success else 'NOT converged: ' + fit.message}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-differences", action="store_true", help="do not run the finite-difference reference")
    ap.add_argument("--n-large", type=int, default=1000, help="patients of the simulated trial (0: skip it)")
    ap.add_argument("--max-iter-differences", type=int, default=60,
                    help="BFGS iterations allowed to the finite-difference run (default 60; the exact run needs about 55)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    spec = load_fit_spec(hcvdyn.files.find_fit_spec("tcl_recovery"))
    data = spec.read_data()
    design = design_of(spec)
    regs = spec.regimens_for(data)
    print(f"bundled trial: {len(data)} patients, {sum(p.n_obs for p in data)} samples; random effects {design.fit.individual}")
    exact = fit_population(spec.model, data, regs, design)
    report("hcvdyn, exact gradient (compiling)", exact)
    warm = fit_population(spec.model, data, regs, design)
    report("hcvdyn, exact gradient (compiled)", warm)
    if not args.skip_differences:
        diff = fit_population(spec.model, data, regs, replace(design, max_iter=args.max_iter_differences), gradient="differences")
        report("same objective, central differences", diff)
        gap = max(abs(exact.x[k] - diff.x[k]) for k in exact.x)
        print(f"largest difference in estimates {gap:.2e}; OFV difference {exact.ofv - diff.ofv:+.2e}")
        print(f"ratio (differences / exact): time {diff.seconds / exact.seconds:.1f}x with compilation, "
              f"{diff.seconds / warm.seconds:.1f}x against the compiled exact run")
    for r in exact.rows():
        print(f"  {r['name']:18s} {r['estimate']:.4g}  RSE {r['rse_percent']:.1f}%")
    if args.n_large:
        big = simulated_trial(exact, data, args.n_large, args.seed)
        fit = fit_population(spec.model, big, regs, design, start=exact.x)  # from the population it was drawn from
        report(f"{args.n_large} simulated patients, exact", fit)


if __name__ == "__main__":
    main()
