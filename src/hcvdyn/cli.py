"""Command line: ``hcvdyn models``, ``simulate``, ``fit``, ``sse``, ``trial``, ``scenario``, ``figures`` and ``report``.

User errors print one line (``hcvdyn: error: ...``) and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import csv
import io as _io
import sys
from dataclasses import asdict
from pathlib import Path

EXAMPLES_SIMULATE = """examples:
  hcvdyn simulate celgosivir_phase2                      # bundled trial, writes results/celgosivir_phase2
  hcvdyn simulate models/celgosivir_phase2.toml --out results/sim --force
"""


def _csv(header, rows) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _results_folder(args, name: str) -> Path:
    """--out or results/NAME; refused before any work when it exists and --force is not given."""
    out = Path(args.out) if args.out else Path("results") / name
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} already exists; use --force to replace it")
    return out


def cmd_models(args) -> int:
    from .io import list_parameter_sets, load_toml, find_model_file
    from .models import MODELS

    if args.name:
        return _show_model(args.name)

    print("models:")
    for m in MODELS.values():
        drugs = ", ".join(f"{d} ({mode})" for d, mode in m.drugs) or "none"
        extra = " + proliferation" if m.proliferation else ""
        print(f"  {m.name:20s} {m.description}\n  {'':20s} drugs: {drugs}{extra}; {len(m.params)} parameters; {m.reference}")
    print("\nparameter sets, trials, populations and scenarios (models/):")
    names = list_parameter_sets()
    width = max(map(len, names), default=0)
    for name in names:
        doc = load_toml(find_model_file(name))
        desc = " ".join(str(doc.get("description", "")).split())
        print(f"  {name:{width}s} [{_file_kind(doc)}] {desc[:110]}{'...' if len(desc) > 110 else ''}")
    return 0


def _file_kind(doc: dict) -> str:
    """What a models/ file holds, from its keys: a trial, scenarios, a population (of its parameter set) or a parameter set."""
    if "scenarios" in doc:
        return f"scenarios on {doc['population']}" if "population" in doc else "scenarios"
    if "arms" in doc:
        return "trial"
    if "parameter_set" in doc:
        return f"population of {doc['parameter_set']}"
    return f"model {doc['model']}" if "model" in doc else "unknown kind"


def _show_model(name: str) -> int:
    """One model's parameter table (name, unit, default, bounds, source), or one parameter set's values."""
    from .io import list_parameter_sets, load_parameter_set
    from .models import MODELS

    if name in MODELS:
        m = MODELS[name]
        print(f"{m.name}: {m.description}\n{m.reference}\n")
        for p in m.params:
            print(f"  {p.name:14s} {p.default:<12.6g} {p.unit:16s} [{p.lower:g}, {p.upper:g}]  {p.source}")
        return 0
    if name in list_parameter_sets():
        try:
            pset = load_parameter_set(name)
        except ValueError:
            raise ValueError(f"{name!r} is a trial, population or scenario file, not a parameter set; see models/{name}.toml") from None
        print(f"{pset.name} (model {pset.model.name}):")
        for k, v in pset.params().items():
            print(f"  {k:14s} {v:<12.6g} {pset.model.params[k].unit:16s} {pset.source_of(k)}")
        return 0
    raise ValueError(f"unknown model or parameter set {name!r}; models: {', '.join(MODELS)}; sets: {', '.join(list_parameter_sets())}")


def cmd_simulate(args) -> int:
    from . import __version__
    from .io import file_sha256, load_trial, write_results
    from .plots import plot_arms, save_figure
    from .solve import SolverOptions
    from .trial import simulate_arms

    spec = load_trial(args.spec)
    out = _results_folder(args, spec.name)
    options = SolverOptions()
    sim = simulate_arms(spec, points_per_day=args.points_per_day, options=options)
    effects = ("eps", "eta", "rho", "phi", "sigma")
    conc_cols = sorted(k for k in next(iter(sim.exposures.values())) if k.startswith("conc_"))
    rows = []
    for arm, tr in sim.trajectories.items():
        ex = sim.exposures[arm]
        for i, t in enumerate(sim.t_days):
            rows.append(
                [arm, f"{t:.6g}", f"{tr.log10_vl[i]:.8f}", f"{tr.log10_vi[i]:.8f}", f"{tr.log10_vl[0] - tr.log10_vl[i]:.8f}"]
                + [f"{ex[e][i]:.8g}" for e in effects]
                + [f"{ex[c][i]:.8g}" for c in conc_cols]
            )
    traj_csv = _csv(["arm", "day", "log10_vl", "log10_vi", "log10_drop"] + list(effects) + conc_cols, rows)
    summary_rows, summary = [], {}
    for arm in sim.trajectories:
        drops = {f"day_{d:g}": round(sim.log10_drop(arm, d), 6) for d in spec.sample_days}
        summary[arm] = drops
        summary_rows.append([arm] + [f"{v:.6f}" for v in drops.values()])
    summary_csv = _csv(["arm"] + [f"log10_drop_day_{d:g}" for d in spec.sample_days], summary_rows)
    pset = spec.parameter_set
    meta = {
        "hcvdyn_version": __version__,
        "command": "simulate",
        "trial": {"name": spec.name, "path": spec.path, "sha256": file_sha256(spec.path)},
        "parameter_set": {"name": pset.name, "path": pset.path, "sha256": file_sha256(pset.path)},
        "model": pset.model.name,
        "parameters": {
            p.name: {"value": sim.params[p.name], "unit": p.unit, "source": pset.source_of(p.name)} for p in pset.model.params
        },
        "weight_kg": spec.weight_kg,
        "arms": {a: [r.to_dict() for r in regs] for a, regs in spec.arms.items()},
        "options": {**asdict(options), "points_per_day": args.points_per_day},
        "summary_log10_drop": summary,
    }
    fig = plot_arms(sim)
    write_results(
        out,
        {
            "trajectories.csv": traj_csv,
            "summary.csv": summary_csv,
            "run.json": meta,
            "arms": lambda dest: save_figure(fig, dest.with_name("arms")),
        },
        force=args.force,
    )
    print(f"wrote {out}/ (trajectories.csv, summary.csv, run.json, arms.pdf/.svg/.png)")
    width = max(len(a) for a in summary)
    for arm, drops in summary.items():
        last = drops[f"day_{spec.sample_days[-1]:g}"]
        print(f"  {arm:{width}s}  log10 drop at day {spec.sample_days[-1]:g}: {last:.2f}")
    return 0


def cmd_fit(args) -> int:
    import numpy as np

    from .diagnostics import prediction_bands
    from .fit import fit_trial, wald_interval
    from .io import load_fit_spec, write_results
    from .report import fit_curves_rows, fit_tables, rows_csv

    spec = load_fit_spec(args.spec)
    out = _results_folder(args, spec.name)
    data = spec.read_data()
    regs, kw = spec.regimens_for(data), spec.fit_options()
    print(f"fitting {len(data)} patients ({sum(p.n_obs for p in data)} samples) with model {spec.model.name} ...", file=sys.stderr)
    fit = fit_trial(spec.model, data, regs, spec.individual, spec.shared, spec.per_arm, spec.params,
                    profile=tuple(n for n in (args.profile or "").split(",") if n), **kw)
    rows, meta = fit_tables(spec, data, fit)
    last = max(p.t_days[-1] for p in data)
    bands = prediction_bands(spec.model, fit, data, regs, np.linspace(0.0, last, int(4 * last) + 1), spec.weight_kg, kw["options"])
    write_results(
        out, {"parameters.csv": rows_csv(rows), "result.json": meta, "curves.csv": rows_csv(fit_curves_rows(data, bands))},
        force=args.force,
    )
    print(f"wrote {out}/ (parameters.csv, result.json, curves.csv); figures: hcvdyn figures {out}")
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


def cmd_figures(args) -> int:
    from .report import figures_from_folder

    formats = tuple(f for f in args.formats.split(",") if f)
    bad = [f for f in formats if f not in ("pdf", "svg", "png")]
    if bad or not formats:
        raise ValueError(f"--formats {args.formats!r}: choose from pdf, svg, png (comma-separated)")
    paths = figures_from_folder(args.folder, formats)
    names = sorted({p.stem for p in paths})
    print(f"wrote {len(names)} figures to {Path(args.folder) / 'figures'}/ ({', '.join(formats)}): {', '.join(names)}")
    return 0


def cmd_sse(args) -> int:
    from . import __version__
    from .io import file_sha256, load_fit_spec, write_results
    from .report import rows_csv
    from .sse import recovery_study

    spec = load_fit_spec(args.spec)
    truth = args.truth or spec.report.get("truth")
    if not truth:
        raise ValueError(f"{args.spec}: no truth file: give --truth or a [report] truth entry")
    if not Path(truth).is_file():
        raise FileNotFoundError(f"truth file {truth}: no such file")
    out = _results_folder(args, f"sse_{spec.name}")
    study = recovery_study(args.spec, truth, args.n, seed=args.seed, profile=args.profile, progress=not args.no_progress)
    meta = {
        "hcvdyn_version": __version__, "command": "sse",
        "spec": {"path": spec.path, "sha256": file_sha256(spec.path)}, "truth": {"path": str(truth), "sha256": file_sha256(truth)},
        "model": spec.model.name, "options": {"n_replicates": args.n, "seed": args.seed, "seeds": list(study.seeds),
                                              "level": study.level, "profile": args.profile},
        "truth_values": study.truth, "summary": list(study.summary),
    }
    write_results(out, {"replicates.csv": rows_csv(list(study.rows)), "summary.csv": rows_csv(list(study.summary)),
                        "result.json": meta}, force=args.force)
    print(f"wrote {out}/ (replicates.csv, summary.csv, result.json)")
    for r in study.summary:
        cov = f"Wald coverage {100 * r['wald_coverage']:.0f}% [{100 * r['wald_coverage_low']:.0f}, {100 * r['wald_coverage_high']:.0f}]"
        if "profile_coverage" in r:
            cov += f", profile {100 * r['profile_coverage']:.0f}%"
        print(f"  {r['name']:14s} true {r['true']:.4g}  mean {r.get('mean', float('nan')):.4g}  bias {r.get('bias', float('nan')):+.4f}  "
              f"SD {r.get('empirical_sd', float('nan')):.4f}  mean SE {r.get('mean_se', float('nan')):.4f}  {cov}  "
              f"({r['n_converged']}/{r['n_replicates']} converged)")
    return 0


def cmd_report(args) -> int:
    from .report import make_report

    out = make_report(args.spec, args.out, force=args.force, n_vpc=args.n_vpc, n_virtual=args.n_virtual, seed=args.seed,
                      progress=not args.no_progress)
    print(f"wrote {out}/report.md with its result files and figures/")
    return 0


def _trial_tables(vt):
    from .report import rows_csv

    arm_rows = vt.summary_rows()
    arms_csv = rows_csv(arm_rows)
    pat_rows = []
    for a, r in vt.arms.items():
        for i in range(r.drop.size):
            pat_rows.append([a, i + 1, r.groups[i], f"{r.drop[i]:.5f}", f"{r.true_drop[i]:.5f}", int(r.rvr[i]), int(r.evr[i]), int(r.cevr[i])])
    patients_csv = _csv(["arm", "patient", "group", "drop_w12_observed", "drop_w12_model", "rvr", "evr", "cevr"], pat_rows)
    return arm_rows, arms_csv, patients_csv


def _print_arm_table(arm_rows) -> None:
    """Per-arm table; each column as wide as its longest cell, so arm names of any length keep the columns."""
    header = ("arm", "n", "mean drop (95% CI)", "SD", "RVR %", "EVR % (95% CI)", "cEVR %")
    cells = [(r["arm"], f"{r['n']:.0f}", f"{r['mean_drop']:.2f} [{r['mean_drop_lo']:5.2f}, {r['mean_drop_hi']:5.2f}]",
              f"{r['sd_drop']:.2f}", f"{r['pct_rvr']:.1f}", f"{r['pct_evr']:.1f} [{r['pct_evr_lo']:4.1f}, {r['pct_evr_hi']:5.1f}]",
              f"{r['pct_cevr']:.1f}") for r in arm_rows]
    print(_aligned([header, *cells]))


def _aligned(rows) -> str:
    """Rows of text cells as lines indented by two spaces: the first column left-aligned, the others right-aligned."""
    widths = [max(len(c) for c in col) for col in zip(*rows)]
    return "\n".join("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)


def _trial_meta(vt, command, files, model: str, arm_rows, **options):
    from . import __version__
    from .io import file_sha256

    return {
        "hcvdyn_version": __version__,
        "command": command,
        "inputs": {k: {"path": str(v), "sha256": file_sha256(v)} for k, v in files.items()},
        "model": model,
        "options": {"n_per_arm": vt.n_per_arm, "seed": vt.seed, "days": vt.days, "steps_per_day": vt.steps_per_day,
                    "definitions": vt.definitions.to_dict(), **options},
        "arms": arm_rows,
    }


def cmd_trial(args) -> int:
    from .io import load_trial, write_results
    from .trial import load_population, run_virtual_trial

    pop = load_population(args.population)
    spec = load_trial(args.trial)
    if pop.model.name != spec.parameter_set.model.name:
        raise ValueError(f"population model {pop.model.name} differs from trial {spec.name}'s model {spec.parameter_set.model.name}")
    out = _results_folder(args, f"trial_{pop.name}_{spec.name}")
    vt = run_virtual_trial(pop, spec, args.n, args.seed, days=args.days, progress=not args.no_progress, n_boot=args.n_boot)
    arm_rows, arms_csv, patients_csv = _trial_tables(vt)
    meta = _trial_meta(vt, "trial", {"population": pop.path, "trial": spec.path, "parameter_set": pop.parameter_set.path},
                       pop.model.name, arm_rows, n_boot=args.n_boot)
    write_results(out, {"arms.csv": arms_csv, "patients.csv": patients_csv, "result.json": meta}, force=args.force)
    print(f"virtual trial {spec.name} x {pop.name}: {args.n} patients per arm, seed {args.seed}, {vt.days} days")
    _print_arm_table(arm_rows)
    print(f"wrote {out}/ (arms.csv, patients.csv, result.json)")
    return 0


def cmd_scenario(args) -> int:
    from .io import write_results
    from .report import rows_csv
    from .trial import load_scenarios, run_scenarios

    sc = load_scenarios(args.spec)
    out = _results_folder(args, sc.name)
    vt, rows = run_scenarios(sc, args.n, args.seed, progress=not args.no_progress, n_boot=args.n_boot)
    arm_rows, arms_csv, patients_csv = _trial_tables(vt)
    comp_csv = rows_csv(rows)
    meta = _trial_meta(vt, "scenario", {"scenarios": sc.path, "population": sc.population.path, "trial": sc.trial.path},
                       sc.population.model.name, arm_rows, reference_arm=sc.reference_arm, common_patients=True,
                       adherence=dict(sc.adherence), n_boot=args.n_boot)
    meta["comparisons"] = rows
    meta["regimens"] = {a: [r.to_dict() for r in regs] for a, regs in sc.arms.items()}
    write_results(out, {"arms.csv": arms_csv, "comparison.csv": comp_csv, "patients.csv": patients_csv, "result.json": meta}, force=args.force)
    print(f"scenarios {sc.name}: {vt.n_per_arm} common virtual patients per arm, seed {vt.seed}, reference arm {sc.reference_arm}")
    _print_arm_table(arm_rows)
    print("  difference from the reference (paired bootstrap 95% CI):")
    print(_aligned([("scenario", "mean drop (log10)", "EVR (points)")] + [
        (r["scenario"], f"{r['diff_mean_drop']:+5.2f} [{r['diff_mean_drop_lo']:+5.2f}, {r['diff_mean_drop_hi']:+5.2f}]",
         f"{r['diff_pct_evr']:+6.1f} [{r['diff_pct_evr_lo']:+6.1f}, {r['diff_pct_evr_hi']:+6.1f}]") for r in rows]))
    print(f"wrote {out}/ (arms.csv, comparison.csv, patients.csv, result.json)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hcvdyn",
        description="Hepatitis C viral-kinetic models under interferon, ribavirin and celgosivir.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn models\n  hcvdyn simulate celgosivir_phase2",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="list models, parameter sets and trials with their sources",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  hcvdyn models\n  hcvdyn models pkpd3              # its parameter table with units and sources\n"
                       "  hcvdyn models g1_nonresponder    # a parameter set's values and sources")
    p.add_argument("name", nargs="?", help="a model or parameter set to show in full")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser(
        "simulate", help="simulate the arms of a trial specification",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES_SIMULATE,
    )
    p.add_argument("spec", help="trial specification: a path or a name in models/")
    p.add_argument("--out", help="results folder (default results/<trial name>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")
    p.add_argument("--points-per-day", type=int, default=24, help="time resolution of the output (default 24, hourly)")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser(
        "fit", help="fit a whole trial from a fit specification (fits/NAME.toml)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn fit fits/phase2_synthetic.toml\n  hcvdyn fit fits/phase2_synthetic.toml --out results/fit1 --force",
    )
    p.add_argument("spec", help="fit specification (TOML)")
    p.add_argument("--profile", metavar="NAMES", help="comma-separated estimated parameters to get profile-likelihood intervals (e.g. eps,rho)")
    p.add_argument("--out", help="results folder (default results/<spec name>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "sse", help="stochastic simulation and estimation: refit replicate synthetic trials, report bias and coverage",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn sse fits/phase2_synthetic.toml --n 50\n"
        "  hcvdyn sse fits/phase2_synthetic.toml --n 20 --seed 100 --profile --out results/sse20 --force",
    )
    p.add_argument("spec", help="fit specification (TOML); its [report] truth file simulates the replicates unless --truth")
    p.add_argument("--truth", help="synthetic-data truth file (default: the spec's [report] truth)")
    p.add_argument("--n", type=_positive_int, default=50, help="replicate trials (default 50, at least 2)")
    p.add_argument("--seed", type=int, default=1, help="seed of the first replicate; replicate i uses seed + i (default 1)")
    p.add_argument("--profile", action="store_true", help="also profile-likelihood intervals (slower)")
    p.add_argument("--no-progress", action="store_true", help="no progress messages on stderr")
    p.add_argument("--out", help="results folder (default results/sse_<spec name>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")
    p.set_defaults(func=cmd_sse)

    p = sub.add_parser(
        "trial", help="run a virtual trial: a population (models/) under a trial's arms",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn trial g1_nonresponder_population celgosivir_phase2\n"
        "  hcvdyn trial g1_nonresponder_population celgosivir_phase2 --n 500 --seed 1 --out results/t1 --force",
    )
    p.add_argument("population", help="population file: a path or a name in models/")
    p.add_argument("trial", help="trial specification: a path or a name in models/")
    _virtual_options(p, 2000)
    p.set_defaults(func=cmd_trial)

    p = sub.add_parser(
        "scenario", help="run what-if scenarios against a reference arm on common virtual patients",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn scenario celgosivir_scenarios\n  hcvdyn scenario models/celgosivir_scenarios.toml --n 500 --force",
    )
    p.add_argument("spec", help="scenario file: a path or a name in models/")
    _virtual_options(p, None)
    p.set_defaults(func=cmd_scenario)

    p = sub.add_parser(
        "figures", help="redraw the figures of a fit or report results folder into FOLDER/figures",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn fit fits/phase2_synthetic.toml --profile eps,rho,phi && hcvdyn figures results/phase2_synthetic\n"
        "  hcvdyn figures results/report_phase2_synthetic --formats pdf",
    )
    p.add_argument("folder", help="results folder written by hcvdyn fit or hcvdyn report")
    p.add_argument("--formats", default="pdf,svg,png", help="comma-separated: pdf, svg, png (300 dpi); default all three")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser(
        "report", help="fit, diagnose (VPC), test synergy, predict outcomes, run what-ifs: figures and a Markdown report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn report fits/phase2_synthetic.toml\n"
        "  hcvdyn report fits/phase2_synthetic.toml --n-vpc 50 --n-virtual 200 --out results/quick --force",
    )
    p.add_argument("spec", help="fit specification (fits/NAME.toml); its [report] table names the PK trial, scenarios, truth")
    p.add_argument("--n-vpc", type=_positive_int, default=200, help="replicate trials of the visual predictive check (default 200)")
    p.add_argument("--n-virtual", type=_positive_int, default=500, help="virtual patients per scenario arm (default 500)")
    p.add_argument("--seed", type=int, default=2026, help="random seed of the VPC and the scenarios (default 2026)")
    p.add_argument("--no-progress", action="store_true", help="no progress messages on stderr")
    p.add_argument("--out", help="results folder (default results/report_<spec name>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")
    p.set_defaults(func=cmd_report)
    return parser


def _virtual_options(p, n_default):
    p.add_argument("--n", type=_positive_int, default=n_default, help=f"virtual patients per arm (default {n_default or 'from the file'})")
    p.add_argument("--seed", type=int, default=None if n_default is None else 2026, help="random seed (default 2026 or from the file)")
    if n_default is not None:
        p.add_argument("--days", type=_positive_int, default=None, help="simulated days (default: the trial's duration)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--out", help="results folder (default results/<name>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")
    return v


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        print(f"hcvdyn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
