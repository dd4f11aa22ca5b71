"""``hcvdyn models`` and ``hcvdyn simulate``: list and show declarations; simulate a trial's population (or typical
patient) against its reported top line.
"""

from __future__ import annotations

from dataclasses import asdict

from hcvdyn.cli.common import aligned, results_folder
from hcvdyn.results.provenance import provenance
from hcvdyn.results.writers import rows_csv

EXAMPLES_SIMULATE = """examples:
  hcvdyn simulate celgosivir_phase2                      # its virtual population against the reported top line
  hcvdyn simulate celgosivir_phase2 --typical --out results/typical   # the typical patient of each arm
  hcvdyn simulate models/celgosivir_phase2.toml --out results/sim --force
"""



def cmd_models(args) -> int:
    from hcvdyn.files import find_model_file, list_parameter_sets, load_toml
    from hcvdyn.model.catalog import MODELS

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
    from hcvdyn.files import list_parameter_sets
    from hcvdyn.model.catalog import MODELS
    from hcvdyn.model.library import load_parameter_set

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
    from hcvdyn.model.trial_design import load_trial

    spec = load_trial(args.spec)
    out = results_folder(args, spec.name)
    if args.typical or not spec.population:
        return _simulate_typical(args, spec, out)
    return _simulate_population(args, spec, out)


def _simulate_population(args, spec, out) -> int:
    """The trial's arms on its virtual population, beside the reported top line (figure, tables, red flags)."""
    from hcvdyn.analysis.comparison import compare_to_reported
    from hcvdyn.analysis.plausibility import format_flags
    from hcvdyn.analysis.population import load_population
    from hcvdyn.results.plots_population import plot_population_arms
    from hcvdyn.results.plotstyle import save_figure
    from hcvdyn.results.writers import rows_csv, write_results

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
            traj.append({"arm": a, "day": f"{t:g}", "median_change_log10": f"{c.median[i]:.5f}", "p05_change_log10": f"{c.lo[i]:.5f}",
                         "p95_change_log10": f"{c.hi[i]:.5f}"})
    flag_rows = [{"arm": f.arm, "check": f.check, "value": f.value, "limit": f.limit, "ok": f.ok} for f in comp.flags]
    meta = provenance(
        "simulate", out,
        {"trial": (spec.path, {"name": spec.name}), "population": (pop.path, {"name": pop.name}),
         "parameter_set": (spec.parameter_set.path, {"name": spec.parameter_set.name})},
        model=pop.model.name, options={"n_per_arm": args.n, "seed": args.seed, "calibration_draws": args.draws},
        arms=rows, red_flags_failed=[f.message() for f in comp.flags if not f.ok],
    )
    write_results(
        out,
        {
            "summary.csv": rows_csv(rows),
            "trajectories.csv": rows_csv(traj),
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
    print(aligned([header, *cells]))
    header = ("arm", "week-4 drop", "RVR", "cEVR")
    print(aligned([header, *[(a, fmt(c.more["mean_drop_w4"]), pct(c.more["pct_rvr"]), pct(c.more["pct_cevr"])) for a, c in comp.arms.items()]]))
    bad = [f for f in comp.flags if not f.ok]
    print("red flags: none" if not bad else "red flags:\n" + format_flags(bad))
    return 0



def _simulate_typical(args, spec, out) -> int:
    """The typical patient of every arm (parameter-set values), hour by hour, with exposures and effects."""
    from hcvdyn.analysis.arms import simulate_arms
    from hcvdyn.results.plots import plot_arms
    from hcvdyn.results.plotstyle import save_figure
    from hcvdyn.results.writers import write_results
    from hcvdyn.solve.options import SolverOptions

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
    header = ["arm", "day", "log10_vl", "log10_vi", "log10_drop", *effects, *conc_cols]
    traj_csv = rows_csv([dict(zip(header, r)) for r in rows])
    summary_rows, summary = [], {}
    for arm in sim.trajectories:
        drops = {f"day_{d:g}": round(sim.log10_drop(arm, d), 6) for d in spec.sample_days}
        summary[arm] = drops
        summary_rows.append([arm] + [f"{v:.6f}" for v in drops.values()])
    header = ["arm", *(f"log10_drop_day_{d:g}" for d in spec.sample_days)]
    summary_csv = rows_csv([dict(zip(header, r)) for r in summary_rows])
    pset = spec.parameter_set
    meta = provenance(
        "simulate", out, {"trial": (spec.path, {"name": spec.name}), "parameter_set": (pset.path, {"name": pset.name})},
        model=pset.model.name, options={**asdict(options), "points_per_day": args.points_per_day},
        parameters={p.name: {"value": sim.params[p.name], "unit": p.unit, "source": pset.source_of(p.name)} for p in pset.model.params},
        weight_kg=spec.weight_kg, arms={a: [r.to_dict() for r in regs] for a, regs in spec.arms.items()}, summary_log10_drop=summary,
    )
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
