"""Trial arms for a typical patient: the regimens of a trial design applied to its parameter set, every arm in
one batched solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hcvdyn.model.trial_design import TrialSpec
from hcvdyn.solve.adaptive import exposure, simulate_batch
from hcvdyn.solve.options import NumericalError, SolverOptions, Trajectory

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

    def exposure_rows(self, arm: str | None = None, days: float | None = 14.0) -> list[dict]:
        """Rows (arm, day, conc_DRUG in the drug's unit, each effect as a fraction) of one arm up to ``days``: by
        default the arm with the most drugs. The table that ``pk_efficacy.csv`` holds and the PK figure draws."""
        arm = arm or max(self.spec.arms, key=lambda a: len({r.drug for r in self.spec.arms[a]}))
        if arm not in self.exposures:
            raise ValueError(f"exposure_rows: no arm {arm!r}; arms: {', '.join(self.exposures)}")
        given = {r.drug for r in self.spec.arms[arm]}
        ex = self.exposures[arm]
        keys = [k for k in ex if not k.startswith("conc_") or k[5:] in given]
        window = self.t_days <= (days if days is not None else self.t_days[-1])
        return [{"arm": arm, "day": float(t), **{k: float(ex[k][i]) for k in keys}}
                for i, t in zip(np.flatnonzero(window), self.t_days[window])]

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
        raise NumericalError(f"the ODE solve failed for arm(s) {bad}; try a larger SolverOptions.max_steps")
    trajectories = {
        a: Trajectory(t, batch.log10_vl[i], batch.log10_vi[i], batch.target_cells[i], batch.infected_cells[i], True, batch.num_steps[i])
        for i, a in enumerate(names)
    }
    n_doses = max((r.doses(spec.weight_kg)[0].size for regs in spec.arms.values() for r in regs), default=1)
    exposures = {a: exposure(pset.model, params, spec.arms[a], t, spec.weight_kg, pad_to=n_doses) for a in names}
    return ArmSimulation(spec, params, t, trajectories, exposures)
