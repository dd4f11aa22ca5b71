"""Command line: ``hcvdyn models``, ``simulate``, ``fit``, ``sse``, ``trial``, ``scenario``, ``figures`` and ``report``.

User errors (bad input, unknown names, existing results folders) print one line (``hcvdyn: error: ...``) and exit
with status 2; numerical failures (a solve, fit or covariance step) print ``hcvdyn: numerical failure: ...``
with what to try and exit with status 1. Neither prints a traceback.
"""


from __future__ import annotations

import argparse
import os
import sys

from hcvdyn.cache import enable_compilation_cache
from hcvdyn.cli.common import positive_int
from hcvdyn.cli.fitting import cmd_figures, cmd_fit, cmd_report
from hcvdyn.cli.studies import cmd_sse
from hcvdyn.cli.simulate import EXAMPLES_SIMULATE, cmd_models, cmd_simulate
from hcvdyn.cli.trials import cmd_calibrate, cmd_scenario, cmd_trial


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
    p.add_argument("--n", type=positive_int, default=2000, help="virtual patients per arm (default 2000)")
    p.add_argument("--seed", type=int, default=2026, help="random seed of the virtual patients (default 2026)")
    p.add_argument("--draws", type=positive_int, default=20, help="draws of the calibrated values (default 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--points-per-day", type=int, default=24, help="time resolution of the typical-patient output (default 24, hourly)")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("calibrate", help="calibrate a trial's virtual population to its reported top line (likelihood)")
    p.add_argument("trial", nargs="?", default="celgosivir_phase2", help="trial with [reported] arms (default celgosivir_phase2)")
    p.add_argument("--population", help="population (default: the trial's)")
    p.add_argument("--mechanism", default="infectivity", help="mechanism to calibrate in full (default infectivity, the bundled one)")
    p.add_argument("--compare", action="store_true", help="calibrate every mechanism and tabulate them")
    p.add_argument("--n", type=positive_int, default=400, help="virtual patients per arm per evaluation (default 400)")
    p.add_argument("--seed", type=int, default=7, help="common random numbers (default 7)")
    p.add_argument("--maxfev", type=positive_int, default=150, help="likelihood evaluations per fit (default 150)")
    p.add_argument("--no-uncertainty", action="store_true", help="skip the Laplace covariance and the profiles")
    p.add_argument("--profile-maxfev", type=positive_int, default=25, help="evaluations per profile point (default 25)")
    p.add_argument("--out", help="results folder (default results/calibration_<trial>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")
    p.set_defaults(func=cmd_calibrate)
    p = sub.add_parser(
        "fit", help="fit a whole trial from a fit specification (fits/NAME.toml)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn fit fits/tcl_recovery.toml\n  hcvdyn fit fits/tcl_recovery.toml --out results/fit1 --force\n"
               "  hcvdyn fit fits/tcl_recovery_population.toml --profile omega_log10_V0,omega_delta",
    )
    p.add_argument("spec", help="fit specification (TOML)")
    p.add_argument("--profile", metavar="NAMES", help="comma-separated estimated parameters to get profile-likelihood intervals (e.g. eps,rho; "
                   "for a population specification outer values such as omega_delta, omega_log10_V0, sigma_res)")
    p.add_argument("--out", help="results folder (default results/<spec name>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "sse", help="stochastic simulation and estimation: refit replicate synthetic trials, report bias and coverage",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn sse fits/tcl_recovery.toml --n 50\n"
        "  hcvdyn sse fits/tcl_recovery.toml --n 20 --seed 100 --profile --out results/sse20 --force\n"
        "  hcvdyn sse fits/tcl_recovery_population.toml --n 100   # FOCE-I, with the fixed-effects trial fit beside it\n"
        "  hcvdyn sse fits/tcl_recovery_population.toml --n 25 --seed 26 --out results/sse_26   # one chunk of a long study\n"
        "  hcvdyn sse fits/tcl_recovery_population.toml --combine results/sse_1 results/sse_26 --out results/sse_50\n"
        "  hcvdyn sse fits/tcl_recovery_population.toml --synergy --n 100   # size of the synergy test (truth psi = 0)",
    )
    p.add_argument("spec", help="fit specification (TOML); its [report] truth file simulates the replicates unless --truth")
    p.add_argument("--truth", help="synthetic-data truth file (default: the spec's [report] truth)")
    p.add_argument("--n", type=positive_int, default=50, help="replicate trials (default 50, at least 2)")
    p.add_argument("--seed", type=int, default=1, help="seed of the first replicate; replicate i uses seed + i (default 1)")
    p.add_argument("--profile", action="store_true", help="also profile-likelihood intervals: of the drug effects (whole-trial fits), of the Omega SDs "
                   "(population fits; several minutes per replicate)")
    p.add_argument("--no-compare", action="store_true",
                   help="population specifications: do not also fit each replicate by the fixed-effects trial fit")
    p.add_argument("--synergy", action="store_true",
                   help="test psi = 0 on each replicate instead (LRT, profile interval; population and trial fit): size or power")
    p.add_argument("--combine", nargs="+", metavar="FOLDER",
                   help="no fitting: combine the results folders of chunks of one study (same spec and truth, disjoint seeds)")
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
        epilog="examples:\n  hcvdyn fit fits/tcl_recovery.toml --profile eps,rho,phi && hcvdyn figures results/tcl_recovery\n"
        "  hcvdyn figures results/report_tcl_recovery --formats pdf",
    )
    p.add_argument("folder", help="results folder written by hcvdyn fit or hcvdyn report")
    p.add_argument("--formats", default="pdf,svg,png", help="comma-separated: pdf, svg, png (300 dpi); default all three")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser(
        "report", help="fit, diagnose (VPC), test synergy, predict outcomes, run what-ifs: figures and a Markdown report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hcvdyn report fits/tcl_recovery.toml\n"
        "  hcvdyn report fits/tcl_recovery.toml --n-vpc 50 --n-virtual 200 --out results/quick --force",
    )
    p.add_argument("spec", help="fit specification (fits/NAME.toml); its [report] table names the PK trial, scenarios, truth")
    p.add_argument("--n-vpc", type=positive_int, default=200, help="replicate trials of the visual predictive check (default 200)")
    p.add_argument("--n-virtual", type=positive_int, default=500, help="virtual patients per scenario arm (default 500)")
    p.add_argument("--profile-points", type=positive_int, default=15,
                   help="points of each drug effect's profile-likelihood curve in the figure (default 15; the interval is exact either way)")
    p.add_argument("--seed", type=int, default=2026, help="random seed of the VPC and the scenarios (default 2026)")
    p.add_argument("--no-progress", action="store_true", help="no progress messages on stderr")
    p.add_argument("--out", help="results folder (default results/report_<spec name>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")
    p.set_defaults(func=cmd_report)
    return parser


def _virtual_options(p, n_default):
    p.add_argument("--n", type=positive_int, default=n_default, help=f"virtual patients per arm (default {n_default or 'from the file'})")
    p.add_argument("--seed", type=int, default=None if n_default is None else 2026, help="random seed (default 2026 or from the file)")
    if n_default is not None:
        p.add_argument("--days", type=positive_int, default=None, help="simulated days (default: the trial's duration)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--out", help="results folder (default results/<name>)")
    p.add_argument("--force", action="store_true", help="replace an existing results folder")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    enable_compilation_cache()  # a command's second run on this machine does not compile again (hcvdyn.cache)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"hcvdyn: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # NumericalError and other failures that are not the user's input
        print(f"hcvdyn: numerical failure: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into a reader that stopped (e.g. head)
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
