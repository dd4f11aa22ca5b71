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
  hcvdyn simulate celgosivir_phase2                      # its virtual population against the reported top line
  hcvdyn simulate celgosivir_phase2 --typical --out results/typical   # the typical patient of each arm
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
    from .io import load_trial

    spec = load_trial(args.spec)
    out = _results_folder(args, spec.name)
    if args.typical or not spec.population:
        return _simulate_typical(args, spec, out)
    return _simulate_population(args, spec, out)


def _simulate_population(args, spec, out) -> int:
    """The trial's arms on its virtual population, beside the reported top line (figure, tables, red flags)."""
    from . import __version__
    from .comparison import compare_to_reported
    from .io import file_sha256, write_results
    from .plausibility import format_flags
    from .plots import save_figure
    from .plots_population import plot_population_arms
    from .report import rows_csv
    from .trial import load_population

    pop = load_population(spec.population)
    if pop.model.name != spec.parameter_set.model.name:
        raise ValueError(f"{spec.path}: population {pop.name} uses model {pop.model.name}, the trial's parameter set {spec.parameter_set.model.name}")
    comp = compare_to_reported(spec, pop, args.n, args.seed, args.draws, progress=not args.no_progress)
    rows = comp.rows()
    arms = {a: {"median": c.median, "lo": c.lo, "hi": c.hi, "mean_drop": c.mean_drop, "pct_evr": c.pct_evr} for a, c in comp.arms.items()}
    reported = {a: {"mean_drop": c.reported_mean_drop, "pct_evr": c.reported_pct_evr} for a, c in comp.arms.items()}
    fig = plot_population_arms(comp.t_days, arms, reported, weeks=spec.duration_days / 7.0)
    traj = []
    for a, c in comp.arms.items():
        for i, t in enumerate(comp.t_days):
            traj.append([a, f"{t:g}", f"{c.median[i]:.5f}", f"{c.lo[i]:.5f}", f"{c.hi[i]:.5f}"])
    flag_rows = [{"arm": f.arm, "check": f.check, "value": f.value, "limit": f.limit, "ok": f.ok} for f in comp.flags]
    meta = {
        "hcvdyn_version": __version__,
        "command": "simulate",
        "trial": {"name": spec.name, "path": spec.path, "sha256": file_sha256(spec.path)},
        "population": {"name": pop.name, "path": pop.path, "sha256": file_sha256(pop.path)},
        "parameter_set": {"name": spec.parameter_set.name, "path": spec.parameter_set.path, "sha256": file_sha256(spec.parameter_set.path)},
        "model": pop.model.name,
        "options": {"n_per_arm": args.n, "seed": args.seed, "calibration_draws": args.draws},
        "arms": rows,
        "red_flags_failed": [f.message() for f in comp.flags if not f.ok],
    }
    write_results(
        out,
        {
            "summary.csv": rows_csv(rows),
            "trajectories.csv": _csv(["arm", "day", "median_change_log10", "p05_change_log10", "p95_change_log10"], traj),
            "red_flags.csv": rows_csv(flag_rows),
            "run.json": meta,
            "arms": lambda dest: save_figure(fig, dest.with_name("arms")),
        },
        force=args.force,
    )
    print(f"wrote {out}/ (summary.csv, trajectories.csv, red_flags.csv, run.json, arms.pdf/.svg/.png)")
    how = f"{args.draws} draws of the calibrated values" if pop.knobs else "bootstrap over patients"
    print(f"{spec.name} on {pop.name}: {args.n} virtual patients per arm; 95% intervals from {how}")
    fmt = lambda v: "not reported" if v is None else f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"  # noqa: E731
    pct = lambda v: "not reported" if v is None else f"{v[0]:.0f}% [{v[1]:.0f}, {v[2]:.0f}]"  # noqa: E731
    header = ("arm", "week-12 drop: virtual", "reported", "EVR: virtual", "reported")
    cells = [(a, fmt(c.mean_drop), fmt(c.reported_mean_drop), pct(c.pct_evr), pct(c.reported_pct_evr)) for a, c in comp.arms.items()]
    print(_aligned([header, *cells]))
    header = ("arm", "week-4 drop", "RVR", "cEVR")
    print(_aligned([header, *[(a, fmt(c.more["mean_drop_w4"]), pct(c.more["pct_rvr"]), pct(c.more["pct_cevr"])) for a, c in comp.arms.items()]]))
    bad = [f for f in comp.flags if not f.ok]
    print("red flags: none" if not bad else "red flags:\n" + format_flags(bad))
    return 0


def _simulate_typical(args, spec, out) -> int:
    """The typical patient of every arm (parameter-set values), hour by hour, with exposures and effects."""
    from . import __version__
    from .io import file_sha256, write_results
    from .plots import plot_arms, save_figure
    from .solve import SolverOptions
    from .trial import simulate_arms

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
    from .plausibility import format_flags, red_flags, typical_patient_flags
    from .report import rows_csv

    flags = red_flags(vt, pop, spec.arms)
    if args.check_typical:
        flags += typical_patient_flags(spec)
    flag_rows = [{"arm": f.arm, "check": f.check, "value": f.value, "limit": f.limit, "ok": f.ok} for f in flags]
    meta["red_flags_failed"] = [f.message() for f in flags if not f.ok]
    write_results(out, {"arms.csv": arms_csv, "patients.csv": patients_csv, "red_flags.csv": rows_csv(flag_rows), "result.json": meta}, force=args.force)
    print(f"virtual trial {spec.name} x {pop.name}: {args.n} patients per arm, seed {args.seed}, {vt.days} days")
    _print_arm_table(arm_rows)
    print("biological red flags (hcvdyn.plausibility):")
    print(format_flags(flags))
    print(f"wrote {out}/ (arms.csv, patients.csv, red_flags.csv, result.json)")
    return 0


def cmd_calibrate(args) -> int:
    """Calibrate the trial's population by likelihood: mechanism comparison, profiles, Laplace covariance."""
    import numpy as np

    from . import __version__
    from .calibrate import MECHANISMS, arm_statistics, calibrate, compare_mechanisms, laplace_covariance, profile, targets_of
    from .io import file_sha256, load_trial, write_results
    from .parameters import from_scale, to_scale
    from .report import rows_csv
    from .trial import load_population

    spec = load_trial(args.trial)
    pop = load_population(args.population or spec.population)
    out = _results_folder(args, f"calibration_{spec.name}")
    targets = targets_of(spec)
    names = tuple(MECHANISMS) if args.compare else (args.mechanism,)
    if args.mechanism not in MECHANISMS:
        raise ValueError(f"unknown mechanism {args.mechanism!r}; known: {', '.join(MECHANISMS)}")
    print(f"calibrating {pop.name} on {spec.name}: {args.n} virtual patients per arm, seed {args.seed}; targets:")
    for t in targets:
        print(f"  {t.arm}: n {t.n}, mean drop {t.mean_drop}, EVR {t.evr_count}, day-2 {t.day2_mean}  ({t.note[:70]})")
    rows = compare_mechanisms(pop, spec, names, n=args.n, seed=args.seed, maxfev=args.maxfev,
                              progress=lambda r: print(f"  {r.calibration.mechanism.name}: -2 log L {r.calibration.neg2ll:.2f} "
                                                       f"(+ double arm {r.neg2ll_double:.2f}), {r.calibration.nfev} evaluations", flush=True))
    table = [r.row() for r in rows]
    chosen = next(r.calibration for r in rows if r.calibration.mechanism.name == args.mechanism)
    files = {"mechanisms.csv": rows_csv(table)}
    result = {
        "hcvdyn_version": __version__, "command": "calibrate",
        "inputs": {"trial": {"path": spec.path, "sha256": file_sha256(spec.path)},
                   "population": {"path": pop.path, "sha256": file_sha256(pop.path)}},
        "options": {"n_per_arm": args.n, "seed": args.seed, "maxfev": args.maxfev},
        "targets": [t.__dict__ for t in targets],
        "mechanism": args.mechanism, "values": chosen.values, "terms": chosen.terms,
        "stats": {a: s.__dict__ for a, s in chosen.stats.items()}, "mechanisms": table,
    }
    if not args.no_uncertainty:
        knobs, cov = laplace_covariance(pop, spec, chosen)
        se = np.sqrt(np.diag(cov))
        result["covariance"] = {"knobs": knobs, "matrix": cov.tolist(), "scale": [pop.model.params[k].interval_scale for k in knobs]}
        traces = {}
        for k, s_k in zip(knobs, se):
            sc = [pop.model.params[k].interval_scale]
            x0 = to_scale([chosen.values[k]], sc)[0]
            grid = [from_scale([x0 + z * s_k], sc)[0] for z in (-2.2, -1.1, 1.1, 2.2)]
            traces[k] = sorted(profile(pop, spec, chosen, k, grid, maxfev=args.profile_maxfev) + [(chosen.values[k], chosen.neg2ll)])
            lo, hi = _profile_interval(traces[k], chosen.neg2ll)
            print(f"  {k} = {chosen.values[k]:.4g}, profile 95% interval [{lo:.4g}, {hi:.4g}] (Laplace SE {s_k:.3f} on the {sc[0]} scale)")
        result["profiles"] = {k: [list(p) for p in v] for k, v in traces.items()}
        print("  [calibration] table for the population file:")
        print(f"  knobs = {knobs}")
        print("  covariance = [" + ", ".join("[" + ", ".join(f"{x:.6g}" for x in row) + "]" for row in cov) + "]")
    st = arm_statistics(pop, spec, chosen.values, list(spec.arms), args.n, args.seed)
    result["arms"] = {a: s.__dict__ for a, s in st.items()}
    files["calibration.json"] = result
    write_results(out, files, force=args.force)
    print(_aligned([("mechanism", "knobs", "-2logL", "AIC", "double -2logL", "triple", "double", "control"),
                    *[(r["mechanism"], str(r["knobs"]), f"{r['neg2ll_calibration']:.2f}", f"{r['aic']:.2f}", f"{r['neg2ll_double']:.2f}",
                       f"{r.get('triple_mean_drop', float('nan')):.2f}", f"{r['double_mean_drop']:.2f}", f"{r.get('control_mean_drop', float('nan')):.2f}")
                      for r in table]]))
    print(f"wrote {out}/ (mechanisms.csv, calibration.json)")
    return 0


def _profile_interval(trace, best: float, level_chi2: float = 3.841) -> tuple[float, float]:
    """Where a profile of -2 log L crosses best + 3.84 on each side (linear interpolation; the grid end if never)."""
    xs = [x for x, _ in trace]
    ys = [y - best for _, y in trace]
    i0 = min(range(len(ys)), key=lambda i: ys[i])
    lo, hi = xs[0], xs[-1]
    for i in range(i0, 0, -1):
        if ys[i - 1] >= level_chi2 > ys[i]:
            lo = xs[i - 1] + (level_chi2 - ys[i - 1]) * (xs[i] - xs[i - 1]) / (ys[i] - ys[i - 1])
            break
    for i in range(i0, len(ys) - 1):
        if ys[i + 1] >= level_chi2 > ys[i]:
            hi = xs[i] + (level_chi2 - ys[i]) * (xs[i + 1] - xs[i]) / (ys[i + 1] - ys[i])
            break
    return lo, hi


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
    p.add_argument("--typical", action="store_true", help="the typical patient of each arm instead of the virtual population")
    p.add_argument("--n", type=_positive_int, default=2000, help="virtual patients per arm (default 2000)")
    p.add_argument("--seed", type=int, default=2026, help="random seed of the virtual patients (default 2026)")
    p.add_argument("--draws", type=_positive_int, default=20, help="draws of the calibrated values (default 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--points-per-day", type=int, default=24, help="time resolution of the typical-patient output (default 24, hourly)")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("calibrate", help="calibrate a trial's virtual population to its reported top line (likelihood)")
    p.add_argument("trial", nargs="?", default="celgosivir_phase2", help="trial with [reported] arms (default celgosivir_phase2)")
    p.add_argument("--population", help="population (default: the trial's)")
    p.add_argument("--mechanism", default="infectivity", help="mechanism to calibrate in full (default infectivity, the bundled one)")
    p.add_argument("--compare", action="store_true", help="calibrate every mechanism and tabulate them")
    p.add_argument("--n", type=_positive_int, default=400, help="virtual patients per arm per evaluation (default 400)")
    p.add_argument("--seed", type=int, default=7, help="common random numbers (default 7)")
    p.add_argument("--maxfev", type=_positive_int, default=150, help="likelihood evaluations per fit (default 150)")
    p.add_argument("--no-uncertainty", action="store_true", help="skip the Laplace covariance and the profiles")
    p.add_argument("--profile-maxfev", type=_positive_int, default=25, help="evaluations per profile point (default 25)")
    p.add_argument("--out", help="results folder (default results/calibration_<trial>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")
    p.set_defaults(func=cmd_calibrate)
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
    p.add_argument("--check-typical", action="store_true", help="also check the typical patient of each arm over 48 weeks")
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
