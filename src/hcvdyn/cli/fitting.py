"""``hcvdyn fit``, ``figures`` and ``report``: fit a specification, redraw figures from a results folder and the
full report.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hcvdyn.cli.common import results_folder


def cmd_fit(args) -> int:
    import numpy as np

    from hcvdyn.estimate.diagnostics import prediction_bands
    from hcvdyn.estimate.fit import fit_trial
    from hcvdyn.estimate.fitspec import load_fit_spec
    from hcvdyn.estimate.profile import wald_interval
    from hcvdyn.results.tables import fit_curves_rows, fit_tables
    from hcvdyn.results.writers import rows_csv, write_results

    spec = load_fit_spec(args.spec)
    out = results_folder(args, spec.name)
    data = spec.read_data()
    regs, design = spec.regimens_for(data), spec.design
    if spec.population is not None:
        return _population_fit(args, spec, data, regs, out)
    print(f"fitting {len(data)} patients ({sum(p.n_obs for p in data)} samples) with model {spec.model.name} ...", file=sys.stderr)
    fit = fit_trial(spec.model, data, regs, design, profile=tuple(n for n in (args.profile or "").split(",") if n))
    rows, meta = fit_tables(spec, data, fit, out)
    last = max(p.t_days[-1] for p in data)
    bands = prediction_bands(spec.model, fit, data, regs, np.linspace(0.0, last, int(4 * last) + 1), design.weight_kg, design.options)
    write_results(
        out, {"parameters.csv": rows_csv(rows), "result.json": meta, "curves.csv": rows_csv(fit_curves_rows(data, bands)),
              "observations.csv": rows_csv(data.rows())},
        force=args.force,
    )
    print(f"wrote {out}/ (parameters.csv, result.json, curves.csv, observations.csv); figures: hcvdyn figures {out}")
    for r in rows:
        if r["kind"] == "individual":
            continue
        prof = f"; profile [{r['profile95_low']:.4f}, {r['profile95_high']:.4f}]" if r["name"] in fit.profile else ""
        unit = "" if r["unit"] == "1" else f" {r['unit']}"
        print(f"  {r['name']:14s} {r['value']:.4f}{unit}  Wald 95% [{r['wald95_low']:.4f}, {r['wald95_high']:.4f}]{prof}")
    if fit.sigma_estimated:
        lo, hi = wald_interval(fit.sigma, fit.sigma_se)
        print(f"  {'residual SD':14s} {fit.sigma:.4f} log10 IU/mL  Wald 95% [{lo:.4f}, {hi:.4f}]")
    if not fit.success:
        print(f"hcvdyn: warning: the fit did not converge: {fit.message}", file=sys.stderr)
        return 1
    return 0


def _population_fit(args, spec, data, regs, out) -> int:
    """``hcvdyn fit`` of a specification with a ``[population]`` table: FOCE-I or Laplace (docs/population.md)."""
    import numpy as np

    from hcvdyn.estimate.population_diagnostics import curve_rows, population_vpc, sample_rows
    from hcvdyn.estimate.population_design import build_population_problem
    from hcvdyn.estimate.population_fit import fit_population
    from hcvdyn.estimate.population_profile import population_profile_interval
    from hcvdyn.solve.options import NumericalError
    from hcvdyn.results.population_tables import individual_rows, population_meta, population_parameter_rows
    from hcvdyn.results.writers import rows_csv, write_results

    design = spec.population
    names = [n for n in (args.profile or "").split(",") if n]
    if names:  # checked before the fit, which takes minutes
        labels = build_population_problem(spec.model, data, regs, design).labels
        if unknown := [n for n in names if n not in labels]:
            raise ValueError(f"--profile {','.join(unknown)}: not estimated by {spec.path}; choose from {', '.join(labels)}")
    print(f"fitting a population model ({design.method}, random effects on {', '.join(design.fit.individual)}) to {len(data)} "
          f"patients ({sum(p.n_obs for p in data)} samples) with model {spec.model.name} ...", file=sys.stderr)
    fit = fit_population(spec.model, data, regs, design)
    profiles, failed = {}, {}
    for label in names:
        print(f"profiling {label} ...", file=sys.stderr)
        try:
            profiles[label] = population_profile_interval(spec.model, data, regs, design, fit, label)
        except NumericalError as e:  # the fit and the other profiles are kept; the exit status says it
            failed[label] = str(e)
            print(f"hcvdyn: warning: the profile of {label} failed, its interval is left empty: {e}", file=sys.stderr)
    rows = population_parameter_rows(fit, profiles=profiles)
    vpc = population_vpc(fit, data, seed=design.fit.seed)
    last = max(p.t_days[-1] for p in data)
    curves = curve_rows(fit, data, regs, np.linspace(0.0, last, int(4 * last) + 1))
    write_results(out, {"parameters.csv": rows_csv(rows), "individual.csv": rows_csv(individual_rows(fit, data)),
                        "samples.csv": rows_csv(sample_rows(fit, data, seed=design.fit.seed)), "vpc.csv": rows_csv(vpc.rows()),
                        "curves.csv": rows_csv(curves), "observations.csv": rows_csv(data.rows()),
                        "result.json": {**population_meta(spec, data, fit, out, design, vpc, profiles), "profiles_failed": failed}},
                  force=args.force)
    print(f"wrote {out}/ (parameters.csv, individual.csv, samples.csv, vpc.csv, curves.csv, observations.csv, result.json); "
          f"figures: hcvdyn figures {out}")
    print(f"  OFV (-2 ln L, {design.method}) {fit.ofv:.3f}   AIC {fit.aic:.2f}   {fit.evaluations} evaluations, {fit.seconds:.0f} s")
    for r in rows:
        if r["kind"] in ("variance", "correlation"):
            continue
        unit = "" if r["unit"] in ("1", "linear") else f" {r['unit']}"
        prof = (f"; profile [{r['profile95_low']:.4g}, {r['profile95_high']:.4g}]" if r["name"] in profiles
                else "; profile failed" if r["name"] in failed else "")
        method = "Satterthwaite" if r["scale"] == "variance (Satterthwaite)" else "Wald"
        print(f"  {r['name']:24s} {r['estimate']:.4g}{unit}  RSE {r['rse_percent']:.1f}%  {method} 95% [{r['lower']:.4g}, {r['upper']:.4g}]{prof}")
    print("  shrinkage: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in fit.shrinkage.items()))
    if not fit.success:
        print(f"hcvdyn: warning: {fit.message}", file=sys.stderr)
        return 1
    if failed:
        return 1
    return 0


def cmd_figures(args) -> int:
    from hcvdyn.results.figures import figures_from_folder

    formats = tuple(f for f in args.formats.split(",") if f)
    bad = [f for f in formats if f not in ("pdf", "svg", "png")]
    if bad or not formats:
        raise ValueError(f"--formats {args.formats!r}: choose from pdf, svg, png (comma-separated)")
    paths = figures_from_folder(args.folder, formats)
    names = sorted({p.stem for p in paths})
    print(f"wrote {len(names)} figures to {Path(args.folder) / 'figures'}/ ({', '.join(formats)}): {', '.join(names)}")
    return 0



def cmd_report(args) -> int:
    from hcvdyn.results.report import make_report

    out = make_report(args.spec, args.out, force=args.force, n_vpc=args.n_vpc, n_virtual=args.n_virtual, seed=args.seed,
                      profile_points=args.profile_points, progress=not args.no_progress)
    print(f"wrote {out}/report.md with its result files and figures/")
    return 0
