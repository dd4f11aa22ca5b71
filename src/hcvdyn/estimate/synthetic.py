"""Synthetic trials: a documented truth file (``fits/*_truth.toml``), read and validated once, and the trial
simulated from it (data for recovery tests; never from any patient)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from hcvdyn.estimate.design import Estimate
from hcvdyn.files import check_keys, file_sha256, load_toml, require
from hcvdyn.model.catalog import get_model
from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.parameters import check_values
from hcvdyn.solve.adaptive import simulate
from hcvdyn.version import __version__

__all__ = ["TruthGroup", "SyntheticTruth", "DrawnPatient", "load_truth", "drawn_patients", "generate_synthetic_trial"]

GROUP_KEYS = ("n", "log10_V0_mean", "log10_V0_sd", "delta_median", "delta_sd_log")
DRAWN_SCALES = {"log10_V0": "linear", "delta": "log"}  # the scale on which a truth file draws each parameter normally


@dataclass(frozen=True)
class TruthGroup:
    """One patient group: n patients, log10_V0 ~ N(mean, sd) (log10 IU/mL), delta log-normal (median /day, SD of ln)."""

    n: int
    log10_V0_mean: float
    log10_V0_sd: float
    delta_median: float
    delta_sd_log: float


@dataclass(frozen=True)
class SyntheticTruth:
    """The truth behind a synthetic trial: model, design, per-arm drug effects, patient groups, noise, dropouts;
    ``rule``: how the bundled draw was chosen (written into the header of the draw at the file's own seed)."""

    path: str
    model: HCVModel
    seed: int
    sample_days: tuple[float, ...]
    lloq_iu_ml: float
    sigma: float
    arms: Mapping[str, Mapping[str, float]]
    groups: Mapping[str, TruthGroup]
    fixed: Mapping[str, float] = field(default_factory=dict)
    n_dropouts: int = 0
    dropout_after_days: tuple[float, ...] = ()
    description: str = ""
    rule: str = ""

    def shared_value(self, name: str) -> float | None:
        """The true value of a parameter shared across arms: the one non-zero value its arms give (a drug absent
        from an arm is 0 there), else the [fixed] value, else None."""
        vals = {a[name] for a in self.arms.values() if name in a and a[name] != 0.0}
        if len(vals) == 1:
            return vals.pop()
        return self.fixed.get(name)

    def true_values(self, estimates: Iterable[Estimate]) -> dict[str, float]:
        """{estimate label: true value} of shared and per-arm estimates, where the truth gives one."""
        out = {}
        for e in estimates:
            if e.kind == "shared" and (v := self.shared_value(e.name)) is not None:
                out[e.label] = v
            elif e.kind == "per_arm" and e.name in self.arms.get(e.owner, {}):
                out[e.label] = self.arms[e.owner][e.name]
        return out

    def population_values(self, values) -> dict[str, float]:
        """{label: true value} of a population fit's outer values (:class:`~hcvdyn.estimate.population_design.OuterValue`),
        where the truth gives one: typical values and drug effects in their units, group shifts, Omega's SDs and
        Cholesky entries on the parameters' scales, the residual SD.

        The groups' log10_V0 is normal (shift: difference of means) and their delta log-normal (shift: log ratio
        of medians); the typical value is the reference group's: the largest, as in
        :class:`~hcvdyn.estimate.population_design.Covariate`. Without a group covariate a typical value, and an
        SD that differs between groups, has no single truth.
        """
        ref = max(self.groups, key=lambda g: self.groups[g].n)
        truth = {  # per parameter: (scale the truth is normal on, centre of each group on it, SD of each group)
            "log10_V0": (DRAWN_SCALES["log10_V0"], {k: g.log10_V0_mean for k, g in self.groups.items()}, {g.log10_V0_sd for g in self.groups.values()}),
            "delta": (DRAWN_SCALES["delta"], {k: math.log(g.delta_median) for k, g in self.groups.items()}, {g.delta_sd_log for g in self.groups.values()}),
        }
        by_group = _group_shifted(values)
        out = {}
        for v in values:
            if v.kind in ("shared", "per_arm"):
                true = self.arms.get(v.owner, {}).get(v.parameter) if v.kind == "per_arm" else self.shared_value(v.parameter)
            elif v.kind == "sigma":
                true = self.sigma
            elif v.parameter not in truth or truth[v.parameter][0] != self.model.params[v.parameter].scale:
                true = None  # the fit's random effect is not on the scale the truth draws it on
            else:
                _, centre, sds = truth[v.parameter]
                if v.kind == "typical":
                    c = centre[ref] if v.parameter in by_group or len(set(centre.values())) == 1 else None
                    true = None if c is None else float(math.exp(c) if v.scale == "log" else c)
                elif v.kind == "covariate":
                    level = v.label.removeprefix(f"{v.parameter}_group_")
                    true = centre[level] - centre[ref] if level in centre else None
                elif v.kind == "omega":
                    true = sds.pop() if len(sds) == 1 else None
                else:  # cholesky: the truth draws parameters independently
                    true = 0.0
            if true is not None:
                out[v.label] = float(true)
        return out


    def known_eta_sds(self, patients: Sequence["DrawnPatient"], values, level: float = 0.95) -> dict[str, tuple[float, float, float]]:
        """{omega label: (realized SD, lower, upper)}: what a fit that saw the drawn patients' parameters without
        error would report for each Omega SD of a population fit (``values``) that has a true value here.

        The drawn values on the truth's scale (:data:`DRAWN_SCALES`) are centred on their group's mean where the fit
        shifts that parameter by group, else on the overall mean (k centres); with RSS their sum of squares and n
        patients the realized SD is sqrt(RSS / n) (the maximum-likelihood estimate from known random effects) and
        the interval sqrt(RSS / chi2_{1-a/2, n-k}) .. sqrt(RSS / chi2_{a/2, n-k}) covers the true SD with
        probability ``level`` exactly, given that the groups share the SD (else there is no single true value and
        no row) and that the fit shifts the parameter by group wherever the groups' centres differ (else the
        differences widen the realized SD). Over the replicates of a recovery study this separates the luck of the
        draw from the estimator: on the same draws, an exact interval from the true random effects covered this often.
        """
        from scipy.stats import chi2

        truth = self.population_values(values)
        by_group = _group_shifted(values)
        out = {}
        for v in (v for v in values if v.kind == "omega" and v.label in truth and v.parameter in DRAWN_SCALES):
            x = np.array([p.params[v.parameter] for p in patients], float)
            x = np.log(x) if DRAWN_SCALES[v.parameter] == "log" else x
            keys = [p.group if v.parameter in by_group else "" for p in patients]
            centres = {k: x[[g == k for g in keys]].mean() for k in set(keys)}
            rss = float(np.sum((x - np.array([centres[k] for k in keys])) ** 2))
            df = len(x) - len(centres)
            if df < 1:
                raise ValueError(f"known_eta_sds: {len(x)} patients in {len(centres)} groups leave no degree of freedom for {v.label}")
            out[v.label] = (math.sqrt(rss / len(x)), math.sqrt(rss / chi2.ppf(0.5 + level / 2, df)), math.sqrt(rss / chi2.ppf(0.5 - level / 2, df)))
        return out


def _group_shifted(values) -> set[str]:
    """Parameters that a population fit's outer values shift by the group column."""
    return {v.parameter for v in values if v.kind == "covariate" and v.label.startswith(f"{v.parameter}_group_")}


@dataclass(frozen=True)
class DrawnPatient:
    """One synthetic patient as drawn: group, arm and individual parameters (log10_V0 in log10 IU/mL, delta in /day)."""

    group: str
    arm: str
    params: Mapping[str, float]


def _draw(tr: SyntheticTruth, rng: np.random.Generator) -> list[DrawnPatient]:
    """Per group: randomize to arms, draw each patient's log10_V0 (normal) and delta (log-normal)."""
    arms = list(tr.arms)
    patients = []
    for gname, g in tr.groups.items():
        alloc = rng.permutation(np.resize(np.arange(len(arms)), g.n))
        for j in range(g.n):
            patients.append(DrawnPatient(gname, arms[alloc[j]], {
                "log10_V0": float(g.log10_V0_mean + g.log10_V0_sd * rng.standard_normal()),
                "delta": float(g.delta_median * math.exp(g.delta_sd_log * rng.standard_normal())),
            }))
    return patients


def drawn_patients(truth, seed: int | None = None) -> tuple[DrawnPatient, ...]:
    """The patients that :func:`generate_synthetic_trial` draws at ``seed`` (default: the truth file's), in the
    trial's order (ids S001, S002, ...), without simulating them."""
    tr = truth if isinstance(truth, SyntheticTruth) else load_truth(truth)
    return tuple(_draw(tr, np.random.default_rng(tr.seed if seed is None else int(seed))))


def load_truth(path) -> SyntheticTruth:
    """Read and validate a truth file; every error names the file and the key."""
    doc = load_toml(path)
    where = str(path)
    check_keys(doc, {"description", "model", "seed", "sample_days", "lloq_iu_ml", "sigma", "n_dropouts", "dropout_after_days",
                     "arms", "groups", "fixed", "rule"}, where)
    try:
        model = get_model(require(doc, "model", str, where))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    seed = require(doc, "seed", int, where)
    days = tuple(float(x) for x in require(doc, "sample_days", list, where))
    if not days or any(b <= a for a, b in zip(days, days[1:])) or days[0] < 0:
        raise ValueError(f"{where}: sample_days must increase strictly from >= 0: {list(days)}")
    lloq = float(require(doc, "lloq_iu_ml", (int, float), where))
    sigma = float(require(doc, "sigma", (int, float), where))
    if not (lloq > 0 and sigma > 0):
        raise ValueError(f"{where}: lloq_iu_ml = {lloq} and sigma = {sigma} must be > 0")
    fixed = {k: float(v) for k, v in doc.get("fixed", {}).items()}
    check_values(model.params, fixed, where=f"{where}: [fixed]")
    arms = {}
    for arm, table in require(doc, "arms", dict, where).items():
        vals = {k: float(require(table, k, (int, float), f"{where}: [arms.{arm}]")) for k in table}
        check_values(model.params, vals, where=f"{where}: [arms.{arm}]")
        arms[arm] = vals
    if not arms:
        raise ValueError(f"{where}: no [arms.NAME] tables")
    groups = {}
    for name, table in require(doc, "groups", dict, where).items():
        gw = f"{where}: [groups.{name}]"
        check_keys(table, set(GROUP_KEYS), gw)
        g = TruthGroup(*(require(table, k, int if k == "n" else (int, float), gw) for k in GROUP_KEYS))
        if g.n < 1 or g.log10_V0_sd < 0 or g.delta_median <= 0 or g.delta_sd_log < 0:
            raise ValueError(f"{gw}: need n >= 1, log10_V0_sd >= 0, delta_median > 0, delta_sd_log >= 0: {g}")
        groups[name] = g
    if not groups:
        raise ValueError(f"{where}: no [groups.NAME] tables")
    n_total = sum(g.n for g in groups.values())
    n_drop = doc.get("n_dropouts", 0)
    if not (isinstance(n_drop, int) and 0 <= n_drop <= n_total):
        raise ValueError(f"{where}: n_dropouts = {n_drop!r} must be a whole number in [0, {n_total}]")
    after = tuple(float(x) for x in doc.get("dropout_after_days", []))
    if n_drop and not after:
        raise ValueError(f"{where}: n_dropouts = {n_drop} needs dropout_after_days")
    rule = doc.get("rule", "")
    if not isinstance(rule, str):
        raise ValueError(f"{where}: rule must be a text, got {rule!r}")
    return SyntheticTruth(str(path), model, seed, days, lloq, sigma, arms, groups, fixed, n_drop, after, doc.get("description", ""),
                          " ".join(rule.split()))


def generate_synthetic_trial(truth, out_csv=None, seed: int | None = None) -> str:
    """Simulate a synthetic trial from a truth file or :class:`SyntheticTruth` (see ``fits/tcl_recovery_truth.toml``).

    Patients are drawn per group with log-normal (delta) and normal (log10_V0) variability, randomized
    to arms, simulated with the arm's drug effects, given N(0, sigma) log10 measurement error, censored
    below the limit, and a seeded few drop out early. Returns the CSV text (and writes it to ``out_csv``).
    The first lines say that the data are synthetic and where they came from, and at the truth file's own seed
    its ``rule``. ``seed`` replaces the truth file's seed (replicate trials of one design, see
    :mod:`hcvdyn.estimate.sse`).
    """
    tr = truth if isinstance(truth, SyntheticTruth) else load_truth(truth)
    seed = tr.seed if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    days = np.asarray(tr.sample_days, dtype=float)
    lloq = math.log10(tr.lloq_iu_ml)
    rows = []
    patients = _draw(tr, rng)
    drop = set(rng.choice(len(patients), size=tr.n_dropouts, replace=False).tolist())
    for i, pat in enumerate(patients):
        pid = f"S{i + 1:03d}"
        f = simulate(tr.model, {**tr.fixed, **tr.arms[pat.arm], **pat.params}, t_obs=days).log10_vl
        y = f + tr.sigma * rng.standard_normal(days.size)
        last = float(rng.choice(tr.dropout_after_days)) if i in drop else days[-1]
        for t, v in zip(days, y):
            if t > last:
                break
            cens = v < lloq
            rows.append(f"{pid},{pat.arm},{pat.group},{t:g},{'' if cens else f'{v:.4f}'},{int(cens)},{tr.lloq_iu_ml:g}")
    header = [
        f"# SYNTHETIC DATA - not from any patient. Generated by hcvdyn {__version__} (hcvdyn.generate_synthetic_trial)",
        f"# from {Path(tr.path).name} (sha256 {file_sha256(tr.path)[:16]}), seed {seed}, model {tr.model.name}.",
    ]
    if tr.rule and seed == tr.seed:
        header += ["# " + line for line in textwrap.wrap(f"Rule: {tr.rule}", 114)]
    header.append("id,arm,group,time_days,log10_vl,cens,lloq")
    text = "\n".join(header + rows) + "\n"
    if out_csv is not None:
        Path(out_csv).write_text(text)
    return text
