"""Trial arms: the regimens of a trial specification applied to a parameter set.

:func:`simulate_arms` runs the typical patient of a parameter set under every arm in one batched call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .io import TrialSpec
from .solve import SolverOptions, Trajectory, exposure, simulate, simulate_batch

__all__ = ["ArmSimulation", "simulate_arms"]


@dataclass(frozen=True)
class ArmSimulation:
    """Typical-patient trajectories per arm. ``trajectories[arm]`` is a :class:`Trajectory`;
    ``exposures[arm]`` holds concentrations and effects on the same time grid."""

    spec: TrialSpec
    params: dict
    t_days: np.ndarray
    trajectories: dict[str, Trajectory]
    exposures: dict[str, dict[str, np.ndarray]]

    def log10_drop(self, arm: str, day: float) -> float:
        """Baseline minus log10 load at ``day`` (interpolated on the simulation grid), log10 IU/mL."""
        tr = self.trajectories[arm]
        return float(tr.log10_vl[0] - np.interp(day, self.t_days, tr.log10_vl))


def simulate_arms(spec: TrialSpec, points_per_day: int = 24, options: SolverOptions = SolverOptions()) -> ArmSimulation:
    """Simulate every arm of ``spec`` for its typical patient (parameter-set values) in one vmapped solve."""
    if points_per_day < 1:
        raise ValueError(f"points_per_day = {points_per_day} must be >= 1")
    pset = spec.parameter_set
    params = pset.params()
    grid = np.linspace(0.0, spec.duration_days, int(round(spec.duration_days * points_per_day)) + 1)
    t = np.union1d(grid, np.asarray(spec.sample_days, dtype=float))
    names = list(spec.arms)
    batch = simulate_batch(
        pset.model, {k: np.full(len(names), v) for k, v in params.items()}, [spec.arms[a] for a in names], t,
        weights_kg=[spec.weight_kg] * len(names), options=options,
    )
    if not np.all(batch.ok):
        bad = [a for a, ok in zip(names, np.atleast_1d(batch.ok)) if not ok]
        raise RuntimeError(f"the ODE solve failed for arm(s) {bad}; try a larger SolverOptions.max_steps")
    trajectories = {
        a: Trajectory(t, batch.log10_vl[i], batch.log10_vi[i], batch.target_cells[i], batch.infected_cells[i], True, batch.num_steps[i])
        for i, a in enumerate(names)
    }
    n_doses = max((r.doses(spec.weight_kg)[0].size for regs in spec.arms.values() for r in regs), default=1)
    exposures = {a: exposure(pset.model, params, spec.arms[a], t, spec.weight_kg, pad_to=n_doses) for a in names}
    return ArmSimulation(spec, params, t, trajectories, exposures)


# ---- synthetic trials ----------------------------------------------------------------------------

def generate_synthetic_trial(truth_path, out_csv=None) -> str:
    """Simulate a synthetic trial from a documented truth file (see ``fits/phase2_synthetic_truth.toml``).

    Patients are drawn per group with log-normal (delta) and normal (log10_V0) variability, randomized
    to arms, simulated with the arm's drug effects, given N(0, sigma) log10 measurement error, censored
    below the limit, and a seeded few drop out early. Returns the CSV text (and writes it to ``out_csv``).
    The first lines say that the data are synthetic and where they came from.
    """
    import math
    from pathlib import Path

    from . import __version__
    from .io import _check_keys, file_sha256, load_toml
    from .models import get_model

    doc = load_toml(truth_path)
    where = str(truth_path)
    _check_keys(doc, {"description", "model", "seed", "sample_days", "lloq_iu_ml", "sigma", "n_dropouts", "dropout_after_days", "arms", "groups", "fixed"}, where)
    model = get_model(doc["model"])
    rng = np.random.default_rng(int(doc["seed"]))
    days = np.asarray(doc["sample_days"], dtype=float)
    lloq = math.log10(float(doc["lloq_iu_ml"]))
    sigma = float(doc["sigma"])
    arms = list(doc["arms"])
    rows, patients = [], []
    for gname, g in doc["groups"].items():
        n = int(g["n"])
        alloc = rng.permutation(np.resize(np.arange(len(arms)), n))
        for j in range(n):
            patients.append((gname, arms[alloc[j]], {
                "log10_V0": float(g["log10_V0_mean"] + g["log10_V0_sd"] * rng.standard_normal()),
                "delta": float(g["delta_median"] * math.exp(g["delta_sd_log"] * rng.standard_normal())),
            }))
    drop = set(rng.choice(len(patients), size=int(doc.get("n_dropouts", 0)), replace=False).tolist())
    for i, (gname, arm, ind) in enumerate(patients):
        pid = f"S{i + 1:03d}"
        params = {**doc.get("fixed", {}), **doc["arms"][arm], **ind}
        f = simulate(model, params, t_obs=days).log10_vl
        y = f + sigma * rng.standard_normal(days.size)
        last = float(rng.choice(doc["dropout_after_days"])) if i in drop else days[-1]
        for t, v in zip(days, y):
            if t > last:
                break
            cens = v < lloq
            rows.append(f"{pid},{arm},{gname},{t:g},{'' if cens else f'{v:.4f}'},{int(cens)},{doc['lloq_iu_ml']:g}")
    header = [
        f"# SYNTHETIC DATA - not from any patient. Generated by hcvdyn {__version__} (hcvdyn.trial.generate_synthetic_trial)",
        f"# from {Path(truth_path).name} (sha256 {file_sha256(truth_path)[:16]}), seed {doc['seed']}, model {model.name}.",
        "id,arm,group,time_days,log10_vl,cens,lloq",
    ]
    text = "\n".join(header + rows) + "\n"
    if out_csv is not None:
        Path(out_csv).write_text(text)
    return text
