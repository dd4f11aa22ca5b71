"""What-if scenarios (``models/*scenarios*.toml``): arms of one population run as virtual trials and compared
with a reference arm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from hcvdyn.analysis.population import Population, load_population
from hcvdyn.analysis.virtual_trial import compare_arms, run_virtual_trial
from hcvdyn.model.trial_design import TrialSpec, load_trial

__all__ = ["ScenarioSpec", "load_scenarios", "run_scenarios"]


@dataclass(frozen=True)
class ScenarioSpec:
    """What-if arms built from a trial's arms and run against a reference arm on common virtual patients."""

    name: str
    population: Population
    trial: TrialSpec
    reference_arm: str
    arms: Mapping[str, tuple]
    adherence: Mapping[str, float]
    descriptions: Mapping[str, str]
    n_per_arm: int = 2000
    seed: int = 2026
    days: int | None = None
    path: str = ""



def load_scenarios(name_or_path) -> ScenarioSpec:
    """Read a scenario file (see ``models/celgosivir_scenarios.toml``); each scenario edits a copy of an arm.

    Per scenario: ``from_arm``; ``remove`` (drugs); ``replace`` (regimens replacing that drug's regimens, or
    added when the arm has none); ``set`` (field changes applied to one drug's regimens, e.g.
    {drug = "celgosivir", dose = 800}); ``adherence`` (mean fraction of doses taken).
    """
    from hcvdyn.files import check_keys, find_model_file, load_toml, require
    from hcvdyn.model.dosing import regimen_from_dict
    from hcvdyn.model.drugs import get_drug

    path = find_model_file(name_or_path)
    doc = load_toml(path)
    where = str(path)
    check_keys(doc, {"name", "description", "population", "trial", "reference_arm", "n_per_arm", "seed", "days", "scenarios"}, where)
    pop = load_population(require(doc, "population", str, where))
    spec = load_trial(require(doc, "trial", str, where))
    if pop.model.name != spec.parameter_set.model.name:
        raise ValueError(f"{where}: population model {pop.model.name} differs from the trial's {spec.parameter_set.model.name}")
    ref = require(doc, "reference_arm", str, where)
    if ref not in spec.arms:
        raise ValueError(f"{where}: reference_arm {ref!r} is not an arm of {spec.name} ({', '.join(spec.arms)})")
    arms, adherence, desc = {ref: spec.arms[ref]}, {}, {ref: spec.arm_descriptions.get(ref, "")}
    for i, sc in enumerate(require(doc, "scenarios", list, where)):
        sw = f"{where}: scenarios[{i}]"
        check_keys(sc, {"name", "description", "from_arm", "remove", "replace", "set", "adherence"}, sw)
        name = require(sc, "name", str, sw)
        if name in arms:
            raise ValueError(f"{sw}: duplicate arm or scenario name {name!r}")
        base = sc.get("from_arm", ref)
        if base not in spec.arms:
            raise ValueError(f"{sw}: from_arm {base!r} is not an arm of {spec.name}")
        regs = list(spec.arms[base])
        for d in sc.get("remove", []):
            drug = get_drug(d).name
            if not any(r.drug == drug for r in regs):
                raise ValueError(f"{sw}: remove: arm {base!r} has no {drug}")
            regs = [r for r in regs if r.drug != drug]
        for j, change in enumerate(sc.get("set", [])):
            drug = get_drug(require(change, "drug", str, f"{sw}.set[{j}]")).name
            fields = {k: v for k, v in change.items() if k != "drug"}
            if not any(r.drug == drug for r in regs):
                raise ValueError(f"{sw}.set[{j}]: arm {base!r} has no {drug} regimen to change")
            try:
                regs = [dataclasses.replace(r, **fields) if r.drug == drug else r for r in regs]
            except (TypeError, ValueError) as e:
                raise ValueError(f"{sw}.set[{j}]: {e}") from None
        new = [regimen_from_dict(r, where=f"{sw}.replace[{j}]") for j, r in enumerate(sc.get("replace", []))]
        replaced = {r.drug for r in new}
        regs = [r for r in regs if r.drug not in replaced] + new
        for r in regs:
            if r.drug not in pop.model.pk_drugs:
                raise ValueError(f"{sw}: model {pop.model.name} has no PK-mode drug {r.drug!r}")
        arms[name] = tuple(regs)
        desc[name] = sc.get("description", "")
        if "adherence" in sc:
            a = float(sc["adherence"])
            if not 0 < a <= 1:
                raise ValueError(f"{sw}: adherence = {a} must be in (0, 1]")
            adherence[name] = a
    n = int(doc.get("n_per_arm", 2000))
    if n < 1:
        raise ValueError(f"{where}: n_per_arm = {n} must be >= 1")
    return ScenarioSpec(doc.get("name", path.stem), pop, spec, ref, arms, adherence, desc, n, int(doc.get("seed", 2026)),
                        doc.get("days"), str(path))



def run_scenarios(sc: ScenarioSpec, n_per_arm: int | None = None, seed: int | None = None, progress: bool = False, n_boot: int = 1000):
    """(VirtualTrial with one arm per scenario plus the reference, comparison rows) on common virtual patients."""
    vt = run_virtual_trial(
        sc.population, sc.trial, n_per_arm or sc.n_per_arm, sc.seed if seed is None else seed, days=sc.days,
        arms=sc.arms, adherence=sc.adherence, common_patients=True, progress=progress, n_boot=n_boot,
    )
    return vt, compare_arms(vt, sc.reference_arm, n_boot=n_boot, seed=vt.seed)
