"""``hcvdyn trial``, ``calibrate`` and ``scenario``: virtual trials, calibration against a trial's top line, and
what-if scenarios.
"""

from __future__ import annotations

from hcvdyn.cli.common import aligned, results_folder
from hcvdyn.results.provenance import provenance


def _trial_tables(vt):
    from hcvdyn.results.writers import rows_csv

    arm_rows = vt.summary_rows()
    arms_csv = rows_csv(arm_rows)
    pat_rows = []
    for a, r in vt.arms.items():
        for i in range(r.drop.size):
            pat_rows.append([a, i + 1, r.groups[i], f"{r.drop[i]:.5f}", f"{r.true_drop[i]:.5f}", int(r.rvr[i]), int(r.evr[i]), int(r.cevr[i])])
    header = ["arm", "patient", "group", "drop_w12_observed", "drop_w12_model", "rvr", "evr", "cevr"]
    patients_csv = rows_csv([dict(zip(header, r)) for r in pat_rows])
    return arm_rows, arms_csv, patients_csv



def print_arm_table(arm_rows) -> None:
    """Per-arm table; each column as wide as its longest cell, so arm names of any length keep the columns."""
    header = ("arm", "n", "mean drop (95% CI)", "SD", "RVR %", "EVR % (95% CI)", "cEVR %")
    cells = [(r["arm"], f"{r['n']:.0f}", f"{r['mean_drop']:.2f} [{r['mean_drop_lo']:5.2f}, {r['mean_drop_hi']:5.2f}]",
              f"{r['sd_drop']:.2f}", f"{r['pct_rvr']:.1f}", f"{r['pct_evr']:.1f} [{r['pct_evr_lo']:4.1f}, {r['pct_evr_hi']:5.1f}]",
              f"{r['pct_cevr']:.1f}") for r in arm_rows]
    print(aligned([header, *cells]))



def _trial_meta(vt, command, out, files, model: str, arm_rows, **options):
    """The provenance record of a virtual-trial folder (:func:`hcvdyn.results.provenance.provenance`)."""

    return provenance(command, out, files, model=model,
                      options={"n_per_arm": vt.n_per_arm, "seed": vt.seed, "days": vt.days, "steps_per_day": vt.steps_per_day,
                               "definitions": vt.definitions.to_dict(), **options}, arms=arm_rows)



def cmd_trial(args) -> int:
    from hcvdyn.analysis.population import load_population
    from hcvdyn.analysis.virtual_trial import run_virtual_trial
    from hcvdyn.model.trial_design import load_trial
    from hcvdyn.results.writers import write_results

    pop = load_population(args.population)
    spec = load_trial(args.trial)
    if pop.model.name != spec.parameter_set.model.name:
        raise ValueError(f"population model {pop.model.name} differs from trial {spec.name}'s model {spec.parameter_set.model.name}")
    out = results_folder(args, f"trial_{pop.name}_{spec.name}")
    vt = run_virtual_trial(pop, spec, args.n, args.seed, days=args.days, progress=not args.no_progress, n_boot=args.n_boot)
    arm_rows, arms_csv, patients_csv = _trial_tables(vt)
    meta = _trial_meta(vt, "trial", out, {"population": pop.path, "trial": spec.path, "parameter_set": pop.parameter_set.path},
                       pop.model.name, arm_rows, n_boot=args.n_boot)
    from hcvdyn.analysis.plausibility import format_flags, red_flags, typical_patient_flags
    from hcvdyn.results.writers import rows_csv

    flags = red_flags(vt, pop, spec.arms)
    if args.check_typical:
        flags += typical_patient_flags(spec)
    flag_rows = [{"arm": f.arm, "check": f.check, "value": f.value, "limit": f.limit, "ok": f.ok} for f in flags]
    meta["red_flags_failed"] = [f.message() for f in flags if not f.ok]
    write_results(out, {"arms.csv": arms_csv, "patients.csv": patients_csv, "red_flags.csv": rows_csv(flag_rows), "result.json": meta}, force=args.force)
    print(f"virtual trial {spec.name} x {pop.name}: {args.n} patients per arm, seed {args.seed}, {vt.days} days")
    print_arm_table(arm_rows)
    print("biological red flags (hcvdyn.analysis.plausibility):")
    print(format_flags(flags))
    print(f"wrote {out}/ (arms.csv, patients.csv, red_flags.csv, result.json)")
    return 0



def cmd_calibrate(args) -> int:
    """Calibrate the trial's population by likelihood: mechanism comparison, profiles, Laplace covariance (knobs
    at a bound of their range: a one-sided profile and a normal whose 97.5% point is its limit)."""
    import math

    import numpy as np

    from hcvdyn.analysis.calibrate import (
        MECHANISMS,
        arm_statistics,
        at_bound,
        bound_profile,
        compare_mechanisms,
        interior_profile,
        laplace_covariance,
        profile_limits,
        targets_of,
    )
    from hcvdyn.analysis.population import load_population
    from hcvdyn.model.parameters import to_scale
    from hcvdyn.model.trial_design import load_trial
    from hcvdyn.results.writers import rows_csv, write_results

    spec = load_trial(args.trial)
    pop = load_population(args.population or spec.population)
    out = results_folder(args, f"calibration_{spec.name}")
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
    result = provenance(
        "calibrate", out, {"trial": spec.path, "population": pop.path}, model=pop.model.name,
        options={"n_per_arm": args.n, "seed": args.seed, "maxfev": args.maxfev},
        targets=[t.__dict__ for t in targets], mechanism=args.mechanism, values=chosen.values, terms=chosen.terms,
        stats={a: s.__dict__ for a, s in chosen.stats.items()}, mechanisms=table,
    )
    if not args.no_uncertainty:
        interior, cov_in = laplace_covariance(pop, spec, chosen)
        knobs = list(chosen.mechanism.knobs)
        cov = np.zeros((len(knobs), len(knobs)))
        pos = [knobs.index(k) for k in interior]
        cov[np.ix_(pos, pos)] = cov_in
        traces = {}
        for i, k in enumerate(knobs):
            sc = pop.model.params[k].scale
            side = at_bound(pop.model, k, chosen.values[k])
            if side is None:
                s_k = math.sqrt(cov[i, i])
                traces[k] = interior_profile(pop, spec, chosen, k, s_k, maxfev=args.profile_maxfev)
                lo, hi, lo_ok, hi_ok = profile_limits(traces[k], chosen.neg2ll, sc)
                open_end = [f"{'lower' if j == 0 else 'upper'} limit not reached" for j, ok in enumerate((lo_ok, hi_ok)) if not ok]
                print(f"  {k} = {chosen.values[k]:.4g}, profile 95% interval [{lo:.4g}, {hi:.4g}] (Laplace SE {s_k:.3f} on the {sc} scale"
                      + "".join(f"; {w}" for w in open_end) + ")")
                continue
            traces[k] = sorted(bound_profile(pop, spec, chosen, k, maxfev=args.profile_maxfev))
            lo, hi, lo_ok, hi_ok = profile_limits(traces[k], chosen.neg2ll, sc)
            far, crossed = (hi, hi_ok) if side == "lower" else (lo, lo_ok)
            # a normal on the knob's scale centred at the estimate (at the bound) with the profile's limit at its 97.5%
            # point; draws beyond the bound are clipped to it
            x0, x_far = to_scale([chosen.values[k], far], [sc] * 2)
            cov[i, i] = ((x_far - x0) / 1.96) ** 2
            print(f"  {k} = {chosen.values[k]:.4g}, at its {side} bound: one-sided profile 95% interval [{lo:.4g}, {hi:.4g}]"
                  + ("" if crossed else f" (-2 log L never rose by 3.84 before {far:.4g}: not identified)")
                  + f"; SD {math.sqrt(cov[i, i]):.3f} on the {sc} scale")
        result["covariance"] = {"knobs": knobs, "matrix": cov.tolist(), "scale": [pop.model.params[k].scale for k in knobs]}
        result["profiles"] = {k: [list(p) for p in v] for k, v in traces.items()}
        print("  [calibration] table for the population file:")
        print(f"  knobs = {knobs}")
        print("  covariance = [" + ", ".join("[" + ", ".join(f"{x:.6g}" for x in row) + "]" for row in cov) + "]")
    st = arm_statistics(pop, spec, chosen.values, list(spec.arms), args.n, args.seed)
    result["arms"] = {a: s.__dict__ for a, s in st.items()}
    files["calibration.json"] = result
    write_results(out, files, force=args.force)
    print(aligned([("mechanism", "knobs", "-2logL", "AIC", "double -2logL", "triple", "double", "control"),
                    *[(r["mechanism"], str(r["knobs"]), f"{r['neg2ll_calibration']:.2f}", f"{r['aic']:.2f}", f"{r['neg2ll_double']:.2f}",
                       f"{r.get('triple_mean_drop', float('nan')):.2f}", f"{r['double_mean_drop']:.2f}", f"{r.get('control_mean_drop', float('nan')):.2f}")
                      for r in table]]))
    print(f"wrote {out}/ (mechanisms.csv, calibration.json)")
    return 0


def cmd_scenario(args) -> int:
    from hcvdyn.analysis.scenarios import load_scenarios, run_scenarios
    from hcvdyn.results.writers import rows_csv, write_results

    sc = load_scenarios(args.spec)
    out = results_folder(args, sc.name)
    vt, rows = run_scenarios(sc, args.n, args.seed, progress=not args.no_progress, n_boot=args.n_boot)
    arm_rows, arms_csv, patients_csv = _trial_tables(vt)
    comp_csv = rows_csv(rows)
    meta = _trial_meta(vt, "scenario", out, {"scenarios": sc.path, "population": sc.population.path, "trial": sc.trial.path},
                       sc.population.model.name, arm_rows, reference_arm=sc.reference_arm, common_patients=True,
                       adherence=dict(sc.adherence), n_boot=args.n_boot)
    meta["comparisons"] = rows
    meta["regimens"] = {a: [r.to_dict() for r in regs] for a, regs in sc.arms.items()}
    write_results(out, {"arms.csv": arms_csv, "comparison.csv": comp_csv, "patients.csv": patients_csv, "result.json": meta}, force=args.force)
    print(f"scenarios {sc.name}: {vt.n_per_arm} common virtual patients per arm, seed {vt.seed}, reference arm {sc.reference_arm}")
    print_arm_table(arm_rows)
    print("  difference from the reference (paired bootstrap 95% CI):")
    print(aligned([("scenario", "mean drop (log10)", "EVR (points)")] + [
        (r["scenario"], f"{r['diff_mean_drop']:+5.2f} [{r['diff_mean_drop_lo']:+5.2f}, {r['diff_mean_drop_hi']:+5.2f}]",
         f"{r['diff_pct_evr']:+6.1f} [{r['diff_pct_evr_lo']:+6.1f}, {r['diff_pct_evr_hi']:+6.1f}]") for r in rows]))
    print(f"wrote {out}/ (arms.csv, comparison.csv, patients.csv, result.json)")
    return 0
