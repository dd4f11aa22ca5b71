"""``hcvdyn sse``: recovery studies (bias and interval coverage over replicate synthetic trials) and, with
``--synergy``, the size or power of the synergy test; ``--combine`` joins chunks of either run apart."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hcvdyn.cli.common import results_folder
from hcvdyn.results.provenance import provenance

FLAGS = ("converged", "_covers", ".rejects", ".covers_truth", ".covers_zero", ".agree", ".nested")  # columns written as 1/0


def _read_part(folder: Path, spec_path, truth_path, synergy: bool) -> tuple[dict, list[dict]]:
    """(result.json, replicate rows) of an ``hcvdyn sse`` results folder, refused unless it was run on these spec
    and truth files, in the same mode."""
    from hcvdyn.files import file_sha256
    from hcvdyn.results.writers import read_csv

    try:
        meta = json.loads((folder / "result.json").read_text())
        rows = read_csv(folder / "replicates.csv")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--combine {folder}: not an hcvdyn sse results folder ({Path(e.filename).name} missing)") from None
    if meta.get("command") != "sse":
        raise ValueError(f"--combine {folder}: its result.json is from 'hcvdyn {meta.get('command')}', not 'hcvdyn sse'")
    if bool(meta["options"].get("synergy")) != synergy:
        raise ValueError(f"--combine {folder}: a {'synergy' if not synergy else 'recovery'} study; give --synergy for all parts or none")
    for role, path in (("spec", spec_path), ("truth", truth_path)):
        if meta["inputs"][role]["sha256"] != file_sha256(path):
            raise ValueError(f"--combine {folder}: it was run on another {role} file than {path} (SHA-256 differs)")

    def flag(key, v):  # a missing coverage or decision (replicate not fitted) stays NaN
        return v == 1.0 if key.endswith("converged") or not math.isnan(v) else v

    return meta, [{**r, "seed": int(r["seed"]), "replicate": int(r["replicate"]),
                   **{k: flag(k, v) for k, v in r.items() if k.endswith(FLAGS)}} for r in rows]


def _recovery(args, spec, truth, parts):
    from hcvdyn.estimate.sse import RecoveryStudy, combine_studies, recovery_study

    if parts:
        read = [_read_part(f, spec.path, truth, False) for f in parts]
        return combine_studies([RecoveryStudy(tuple(rows), tuple(m["summary"]), m["truth_values"], m["options"]["level"],
                                              tuple(m["options"]["seeds"])) for m, rows in read])
    return recovery_study(args.spec, truth, args.n, seed=args.seed, profile=args.profile, progress=not args.no_progress,
                          compare=not args.no_compare)


def _synergy(args, spec, truth, parts):
    from hcvdyn.analysis.synergy_size import SynergyStudy, combine_synergy_studies, synergy_study

    if parts:
        read = [_read_part(f, spec.path, truth, True) for f in parts]
        return combine_synergy_studies([SynergyStudy(tuple(rows), tuple(m["summary"]), m["truth_values"]["psi"], m["options"]["level"],
                                                     tuple(m["options"]["seeds"]), tuple(m["options"]["methods"])) for m, rows in read])
    return synergy_study(args.spec, truth, args.n, seed=args.seed, progress=not args.no_progress, compare=not args.no_compare)


def _print_recovery(summary) -> None:
    def has(r, key):  # a summary column this row has a number in
        return isinstance(r.get(key), (int, float)) and math.isfinite(r[key])

    for r in summary:
        cov = f"Wald coverage {100 * r['wald_coverage']:.0f}% [{100 * r['wald_coverage_low']:.0f}, {100 * r['wald_coverage_high']:.0f}]"
        if has(r, "wald_R_coverage"):
            cov += f", R-matrix Wald {100 * r['wald_R_coverage']:.0f}%"
        if has(r, "profile_coverage"):
            cov += f", profile {100 * r['profile_coverage']:.0f}%"
        if has(r, "known_eta_coverage"):
            cov += f"; known random effects: mean {r['known_eta_mean']:.4g}, exact interval {100 * r['known_eta_coverage']:.0f}%"
        method = f"{r['method']:10s} " if "method" in r else ""
        print(f"  {method}{r['name']:14s} true {r['true']:.4g}  mean {r.get('mean', math.nan):.4g}  bias {r.get('bias', math.nan):+.4f}  "
              f"SD {r.get('empirical_sd', math.nan):.4f}  mean SE {r.get('mean_se', math.nan):.4f}  {cov}  "
              f"({r['n_converged']}/{r['n_replicates']} converged)")


def _print_synergy(summary) -> None:
    for r in summary:
        print(f"  {r['method']:10s} true psi {r['psi_true']:g}: LRT rejects psi = 0 in {100 * r['rejection_rate']:.1f}% "
              f"[{100 * r['rejection_low']:.1f}, {100 * r['rejection_high']:.1f}], profile interval covers the true psi in "
              f"{100 * r['coverage_rate']:.1f}% [{100 * r['coverage_low']:.1f}, {100 * r['coverage_high']:.1f}]; test and interval "
              f"disagree in {r['disagreements']}, nesting violated in {r['nesting_violations']} "
              f"({r['n_tested']}/{r['n_replicates']} tested, {r['n_converged']} converged)")


def cmd_sse(args) -> int:
    from hcvdyn.estimate.fitspec import load_fit_spec
    from hcvdyn.results.writers import rows_csv, write_results

    if args.synergy and args.profile:
        raise ValueError("--profile is for recovery studies; --synergy always gives psi's profile interval")
    spec = load_fit_spec(args.spec)
    truth = args.truth or spec.report.get("truth")
    if not truth:
        raise ValueError(f"{args.spec}: no truth file: give --truth or a [report] truth entry")
    if not Path(truth).is_file():
        raise FileNotFoundError(f"truth file {truth}: no such file")
    out = results_folder(args, f"sse_{spec.name}{'_synergy' if args.synergy else ''}")
    parts = [Path(f) for f in args.combine or ()]
    inputs = {"spec": (spec.path, {"name": spec.name}), "truth": truth, **{f"part_{k + 1}": f / "result.json" for k, f in enumerate(parts)}}
    study = (_synergy if args.synergy else _recovery)(args, spec, truth, parts)
    options = {"n_replicates": len(study.seeds), "seed": min(study.seeds), "seeds": list(study.seeds), "level": study.level,
               "method": spec.population.method if spec.population is not None else "trial fit", "combined_from": len(parts) or None}
    if args.synergy:
        options.update(synergy=True, methods=list(study.methods))
        truth_values = {"psi": study.psi_true}
    else:
        options.update(profile=args.profile, compare_trial_fit=spec.population is not None
                       and any(r.get("method") == "trial fit" for r in study.summary))
        truth_values = study.truth
    meta = provenance("sse", out, inputs, model=spec.model.name, options=options, truth_values=truth_values, summary=list(study.summary))
    write_results(out, {"replicates.csv": rows_csv(list(study.rows)), "summary.csv": rows_csv(list(study.summary)),
                        "result.json": meta}, force=args.force)
    print(f"wrote {out}/ (replicates.csv, summary.csv, result.json)")
    (_print_synergy if args.synergy else _print_recovery)(study.summary)
    return 0
