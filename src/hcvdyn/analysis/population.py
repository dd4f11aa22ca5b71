"""Virtual-patient populations: typical values, between-patient variability, covariates, behaviour, and the
calibration's uncertainty that virtual trials carry (population TOML files in models/)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from hcvdyn.model.parameters import from_scale, to_scale

__all__ = ["Population", "load_population"]


@dataclass(frozen=True)
class Population:
    """A virtual-patient population: typical values, between-patient variability, covariates, behaviour.

    Variability (``omega``, SD on each parameter's declared scale, :attr:`Param.scale`) is log-normal for log-scale
    parameters, logit-normal for fractions and normal for linear ones such as ``log10_V0`` (already a log), with the correlation
    matrix ``corr`` over ``omega``'s names. Groups (e.g. non-responder / partial responder) are drawn with
    their ``fraction`` and shift typical values. Adherence: each patient takes each scheduled dose with a
    probability drawn from Beta(mean kappa, (1 - mean) kappa). Dropout: exponential with ``dropout_per_week``.
    ``sigma_log10`` is the assay's measurement error (log10 IU/mL).
    """

    name: str
    parameter_set: object  # io.ParameterSet: model and typical values
    omega: Mapping[str, float]
    corr: np.ndarray
    groups: Mapping[str, tuple[float, Mapping[str, float]]]
    weight_kg: tuple[float, float, float, float] = (70.0, 0.0, 70.0, 70.0)  # mean, sd, lower, upper
    adherence: tuple[float, float] = (1.0, 0.0)  # mean, kappa (0: everyone at the mean)
    dropout_per_week: float = 0.0
    sigma_log10: float = 0.2
    sources: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    path: str = ""
    limits: Mapping[str, object] = field(default_factory=dict)  # red-flag limits of hcvdyn.analysis.plausibility.Limits
    knobs: tuple[str, ...] = ()  # calibrated typical values whose uncertainty virtual trials carry
    knob_cov: np.ndarray | None = None  # their covariance on the declared scales (Param.scale)

    @property
    def model(self):
        return self.parameter_set.model

    def draw_typical(self, n_draws: int, rng: np.random.Generator) -> list[dict[str, float]]:
        """n_draws sets of calibrated typical values from their normal approximation (declared scales)."""
        if not self.knobs or self.knob_cov is None or n_draws < 1:
            return []
        typical = self.parameter_set.params()
        scales = [self.model.params[k].scale for k in self.knobs]
        centre = to_scale([typical[k] for k in self.knobs], scales)
        z = rng.multivariate_normal(centre, self.knob_cov, size=n_draws, method="eigh")
        out = []
        for row in z:
            vals = dict(zip(self.knobs, from_scale(row, scales)))
            out.append({k: float(np.clip(v, self.model.params[k].lower, self.model.params[k].upper)) for k, v in vals.items()})
        return out

    def typical(self, group: str | None = None) -> dict[str, float]:
        base = self.parameter_set.params()
        if group is not None:
            base.update(self.groups[group][1])
        return base

    def sample(self, n: int, rng: np.random.Generator, overrides: Mapping[str, float] | None = None, draws=()):
        """(params name -> (n,), group labels (n,), weights (n,), adherence (n,)) for n patients.

        draws: sets of typical values (:meth:`draw_typical`); patient i takes set i mod len(draws).
        """
        names = list(self.omega)
        gnames = list(self.groups)
        frac = np.array([self.groups[g][0] for g in gnames])
        labels = np.asarray(gnames)[rng.choice(len(gnames), size=n, p=frac / frac.sum())]
        z = rng.standard_normal((n, len(names))) @ np.linalg.cholesky(self.corr).T if names else np.zeros((n, 0))
        params = {}
        for g in gnames:
            sel = labels == g
            for k, v in {**self.typical(g), **(overrides or {})}.items():
                params.setdefault(k, np.empty(n))[sel] = v
        for k in {k for d in draws for k in d} - set(overrides or {}):
            params[k] = np.array([draws[i % len(draws)][k] for i in range(n)])
        for j, k in enumerate(names):
            p = self.model.params[k]
            params[k] = np.clip(p.from_scale(p.to_scale(params[k]) + self.omega[k] * z[:, j]), p.lower, p.upper)
        wm, ws, wl, wu = self.weight_kg
        weights = np.clip(wm + ws * rng.standard_normal(n), wl, wu)
        am, kappa = self.adherence
        adh = np.full(n, am) if kappa <= 0 or am >= 1 else rng.beta(am * kappa, (1 - am) * kappa, size=n)
        return params, labels, weights, adh


def load_population(name_or_path) -> Population:
    """Read a population TOML (see ``models/g1_nonresponder_population.toml``); errors name file and key."""
    from hcvdyn.files import check_keys, find_model_file, load_toml, require
    from hcvdyn.model.library import load_parameter_set

    path = find_model_file(name_or_path)
    doc = load_toml(path)
    where = str(path)
    check_keys(doc, {"name", "description", "parameter_set", "variability", "correlations", "groups", "weight_kg", "adherence", "dropout", "assay", "calibration", "plausibility"}, where)
    pset = load_parameter_set(require(doc, "parameter_set", str, where))
    model = pset.model
    pset, knobs, knob_cov = _calibration_block(doc.get("calibration"), pset, where)
    omega, sources = {}, {}
    for k, entry in doc.get("variability", {}).items():
        kw = f"{where}: variability.{k}"
        if k not in model.params:
            raise ValueError(f"{kw}: unknown parameter {k!r} of model {model.name}")
        check_keys(entry, {"sd", "source"}, kw)
        sd = float(require(entry, "sd", (int, float), kw))
        if not (np.isfinite(sd) and sd >= 0):
            raise ValueError(f"{kw}: sd = {sd} must be >= 0")
        omega[k], sources[f"variability.{k}"] = sd, require(entry, "source", str, kw)
    names = list(omega)
    corr = np.eye(len(names))
    for i, item in enumerate(doc.get("correlations", {}).get("pairs", [])):
        kw = f"{where}: correlations.pairs[{i}]"
        if not (isinstance(item, list) and len(item) == 3 and item[0] in omega and item[1] in omega and item[0] != item[1]):
            raise ValueError(f"{kw}: write [\"name_a\", \"name_b\", r] with two different names from [variability]")
        a, b, r = names.index(item[0]), names.index(item[1]), float(item[2])
        if not -1 < r < 1:
            raise ValueError(f"{kw}: correlation {r} must be in (-1, 1)")
        corr[a, b] = corr[b, a] = r
    if names and np.min(np.linalg.eigvalsh(corr)) <= 0:
        raise ValueError(f"{where}: correlations: the correlation matrix is not positive definite")
    groups = {}
    for g, entry in (doc.get("groups") or {"all": {"fraction": 1.0}}).items():
        kw = f"{where}: groups.{g}"
        check_keys(entry, {"fraction", "parameters", "source"}, kw)
        f = float(require(entry, "fraction", (int, float), kw))
        if not f > 0:
            raise ValueError(f"{kw}: fraction = {f} must be > 0")
        shifts = {}
        for k, e in entry.get("parameters", {}).items():
            if k not in model.params:
                raise ValueError(f"{kw}.parameters: unknown parameter {k!r} of model {model.name}")
            shifts[k] = float(e["value"]) if isinstance(e, dict) else float(e)
        groups[g] = (f, shifts)

    def block(key, fields):
        entry = doc.get(key, {})
        check_keys(entry, set(fields) | {"source"}, f"{where}: {key}")
        if entry:
            sources[key] = entry.get("source", "")
        return [float(entry.get(k, d)) for k, d in fields.items()]

    w = block("weight_kg", {"mean": 70.0, "sd": 0.0, "lower": 40.0, "upper": 150.0})
    adh = block("adherence", {"mean": 1.0, "kappa": 0.0})
    if not 0 < adh[0] <= 1:
        raise ValueError(f"{where}: adherence.mean = {adh[0]} must be in (0, 1]")
    (drop,) = block("dropout", {"per_week": 0.0})
    (sigma,) = block("assay", {"sigma_log10": 0.2})
    if drop < 0 or sigma < 0:
        raise ValueError(f"{where}: dropout.per_week and assay.sigma_log10 must be >= 0")
    return Population(
        name=doc.get("name", path.stem), parameter_set=pset, omega=omega, corr=corr, groups=groups,
        weight_kg=tuple(w), adherence=tuple(adh), dropout_per_week=drop, sigma_log10=sigma, sources=sources,
        description=doc.get("description", ""), path=str(path), knobs=knobs, knob_cov=knob_cov,
        limits=_limits(doc.get("plausibility", {}), where),
    )


def _limits(table, where: str) -> dict:
    """A population's [plausibility] table: red-flag limits other than the non-responder defaults (and their source)."""
    import dataclasses as dc

    from hcvdyn.analysis.plausibility import Limits

    names = {f.name for f in dc.fields(Limits)}
    out = {}
    for k, v in table.items():
        if k == "source":
            continue
        if k not in names:
            raise ValueError(f"{where}: plausibility.{k}: unknown limit; known: {', '.join(sorted(names))}")
        out[k] = tuple(v) if isinstance(v, list) else v
    try:
        Limits(**out)
    except TypeError as e:
        raise ValueError(f"{where}: plausibility: {e}") from None
    return out


def _calibration_block(block, pset, where: str):
    """(parameter set, knob names, covariance) from a population's [calibration] table.

    Either ``knobs`` with ``covariance`` (on the knobs' declared scales, :func:`hcvdyn.analysis.calibrate.laplace_covariance`),
    or ``from_population`` with ``knobs``: those knobs' values and covariance are taken from that population
    (and its parameter set), so a second population carries the same calibrated effect and its uncertainty.
    """
    from hcvdyn.files import check_keys, require

    if block is None:
        return pset, (), None
    bw = f"{where}: calibration"
    check_keys(block, {"knobs", "covariance", "from_population", "source"}, bw)
    knobs = tuple(require(block, "knobs", list, bw))
    for k in knobs:
        if k not in pset.model.params:
            raise ValueError(f"{bw}.knobs: unknown parameter {k!r} of model {pset.model.name}")
    if "from_population" in block:
        src = load_population(require(block, "from_population", str, bw))
        missing = [k for k in knobs if k not in src.knobs]
        if missing:
            raise ValueError(f"{bw}: population {src.name} has no calibrated knob(s) {missing} (it has {list(src.knobs)})")
        idx = [src.knobs.index(k) for k in knobs]
        cov = src.knob_cov[np.ix_(idx, idx)]
        values = src.parameter_set.params()
        sources = {k: f"calibrated on {src.name} (its [calibration] table)" for k in knobs}
        pset = dataclasses.replace(pset, values={**pset.values, **{k: values[k] for k in knobs}}, sources={**pset.sources, **sources})
    else:
        cov = np.asarray(require(block, "covariance", list, bw), dtype=float)
    if cov.shape != (len(knobs), len(knobs)) or not np.allclose(cov, cov.T) or np.min(np.linalg.eigvalsh(cov)) <= 0:
        raise ValueError(f"{bw}: covariance must be a symmetric positive-definite {len(knobs)} x {len(knobs)} matrix over {list(knobs)}")
    return pset, knobs, cov
