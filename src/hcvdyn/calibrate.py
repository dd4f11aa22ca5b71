"""Calibration of the virtual non-responder population to the Phase II top line (docs/calibration.md).

Targets (non-responders, week 12; shared/reference section 1): mean log10 drop 1.2 (triple) and 0.4 (control),
EVR 33% and 10%, the double arm no better than control. Knobs: the typical interferon EC50, its
between-patient SD, the maximal ribavirin and celgosivir infectivity effects (rho_max, phi_max). beta is set
beforehand (see the docs) so that the critical efficacy 1 - T0/(s/d) of a typical non-responder is ~0.9 and
combination effects can show within 12 weeks.

    python -m hcvdyn.calibrate            # re-run the fit (about 2 minutes) and the sensitivity table
    python -m hcvdyn.calibrate --check    # only the top line of the bundled population at 2,000 per arm
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np

from .io import load_trial
from .trial import load_population, run_virtual_trial

__all__ = ["TARGETS", "top_line", "objective", "calibrate", "sensitivity", "with_values"]

TARGETS = {"triple": (1.2, 33.0), "control": (0.4, 10.0)}  # (mean week-12 drop, % EVR)


def with_values(pop, values):
    """The population with typical values and the interferon-EC50 SD replaced (keys of :data:`KNOBS` or parameters)."""
    values = dict(values)
    omega = dict(pop.omega)
    for k in [k for k in values if k.startswith("omega_")]:
        name = k[len("omega_"):]
        if name not in omega:
            raise ValueError(f"{k}: the population has no variability on {name!r}")
        omega[name] = float(values.pop(k))
    ps = pop.parameter_set
    ps = dataclasses.replace(ps, values={**ps.values, **{k: float(v) for k, v in values.items()}})
    return dataclasses.replace(pop, parameter_set=ps, omega=omega)


def top_line(pop, spec, n: int, seed: int, n_boot: int = 0, smooth: float = 0.0) -> dict:
    """{arm: (mean drop, % EVR)} of a virtual trial.

    smooth > 0 counts EVR with a logistic ramp of that width (log10) around the 2-log threshold instead of a
    step, which makes the top line a smooth function of the knobs for the optimiser (common random numbers).
    """
    vt = run_virtual_trial(pop, spec, n, seed, n_boot=n_boot)
    out = {}
    for a, r in vt.arms.items():
        if smooth > 0:
            d = np.where(np.isfinite(r.drop), r.drop, -np.inf)
            ramp = 1.0 / (1.0 + np.exp(-(d - vt.definitions.evr_drop_log10) / smooth))
            evr = 100.0 * float(np.mean(np.maximum(ramp, r.cevr)))
        else:
            evr = r.table["pct_evr"][0]
        out[a] = (r.table["mean_drop"][0], evr)
    return out


def residuals(tl: dict) -> np.ndarray:
    """Scaled misfits to :data:`TARGETS` (0.05 log10, 2 percentage points) and the double-arm penalty."""
    r = []
    for arm, (drop, evr) in TARGETS.items():
        r += [(tl[arm][0] - drop) / 0.05, (tl[arm][1] - evr) / 2.0]
    r.append(max(0.0, tl["double"][0] - tl["control"][0]) / 0.05)
    return np.array(r)


def objective(tl: dict) -> float:
    """Sum of squared standardized residuals of a top line against TARGETS."""
    return float(np.sum(residuals(tl) ** 2))


KNOB_TRANSFORMS = {
    "ifn_ec50": "log", "omega_ifn_ec50": "log", "rbv_rho_max": "logit", "cel_phi_max": "logit", "delta": "log",
    "beta": "log", "omega_beta": "log",
}


def _to_x(v):
    return np.array([math.log(v[k]) if t == "log" else math.log(v[k] / (1 - v[k])) for k, t in KNOB_TRANSFORMS.items()])


def _from_x(x):
    return {k: (math.exp(xi) if t == "log" else 1 / (1 + math.exp(-xi))) for (k, t), xi in zip(KNOB_TRANSFORMS.items(), x)}


def calibrate(pop, spec, start: dict, n: int = 300, seed: int = 7, max_nfev: int = 40, verbose: bool = True):
    """Least squares on the knobs (smoothed EVR, common random numbers); returns (values, top line, objective)."""
    from scipy.optimize import least_squares

    def f(x):
        tl = top_line(with_values(pop, _from_x(x)), spec, n, seed, smooth=0.05)
        r = residuals(tl)
        if verbose:
            print(" ".join(f"{k}={v:.4g}" for k, v in _from_x(x).items()), "->",
                  {a: tuple(round(z, 3) for z in t) for a, t in tl.items()}, f"f={float(r @ r):.2f}", flush=True)
        return r

    res = least_squares(f, _to_x(start), diff_step=0.03, max_nfev=max_nfev, x_scale=1.0)
    best = _from_x(res.x)
    tl = top_line(with_values(pop, best), spec, n, seed)
    return best, tl, objective(tl)


def sensitivity(pop, spec, n: int = 2000, seed: int = 2026, rel: float = 0.2, names=("beta", "ifn_ec50", "rbv_rho_max", "cel_phi_max", "delta", "log10_V0")):
    """Top line at the calibrated values and with each parameter's typical value scaled by 1 +/- rel (log10_V0: +/- 0.5)."""
    base = top_line(pop, spec, n, seed)
    rows = []
    typical = pop.parameter_set.params()
    for k in names:
        for sign in (-1, 1):
            v = typical[k] + sign * 0.5 if k == "log10_V0" else typical[k] * (1 + sign * rel)
            rows.append((k, v, top_line(with_values(pop, {k: v}), spec, n, seed)))
    return base, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hcvdyn.calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--population", default="g1_nonresponder_population")
    ap.add_argument("--trial", default="celgosivir_phase2")
    ap.add_argument("--check", action="store_true", help="only print the bundled population's top line at --n per arm")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    pop, spec = load_population(args.population), load_trial(args.trial)
    if not args.check:
        typical = pop.parameter_set.params()
        start = {k: (pop.omega[k[6:]] if k.startswith("omega_") else typical[k]) for k in KNOB_TRANSFORMS}
        best, tl, f = calibrate(pop, spec, start)
        print("calibrated:", {k: float(f"{v:.4g}") for k, v in best.items()}, "objective", round(f, 3))
        pop = with_values(pop, best)
    base, rows = sensitivity(pop, spec, args.n, args.seed)
    fmt = lambda tl: "  ".join(f"{a}: {d:.2f} / {e:.1f}%" for a, (d, e) in tl.items())  # noqa: E731
    print(f"top line at n = {args.n} per arm, seed {args.seed} (mean week-12 drop log10 / % EVR):")
    print(f"  calibrated          {fmt(base)}")
    for k, v, tl in rows:
        print(f"  {k:>11} = {v:<9.4g} {fmt(tl)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
