"""Draw fits/phase2_synthetic.csv from fits/phase2_synthetic_truth.toml under the rule stated there.

Seeds are tried in order from FIRST_SEED, the rule's. The first draw whose prior non-responders who complete
12 weeks have mean week-12 drops within 0.4 log10 of the trial's reported ones (triple 1.2, control 0.4; the
double arm reports none) is kept. A censored week-12 sample counts at the limit. Prints every seed tried and
its arm means; writes the CSV and sets the truth file's seed to the kept one.

    python fits/draw_phase2_synthetic.py
"""

import re
import tempfile
from pathlib import Path

import numpy as np

from hcvdyn.estimate.data import read_viral_loads
from hcvdyn.estimate.synthetic import generate_synthetic_trial, load_truth

HERE = Path(__file__).resolve().parent
TRUTH = HERE / "phase2_synthetic_truth.toml"
REPORTED = {"triple": 1.2, "control": 0.4}  # mean week-12 drop of non-responders, log10 (the trial's release)
TOLERANCE = 0.4
GROUP, WEEK12 = "nonresponder", 84.0
FIRST_SEED = 20261203


def arm_means(text: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "draw.csv"
        path.write_text(text)
        data = read_viral_loads(path)
    drops = {}
    for p in data.patients:
        if p.group == GROUP and p.t_days[-1] == WEEK12:
            drops.setdefault(p.arm, []).append(p.log10_vl[0] - p.log10_vl[-1])
    return {arm: float(np.mean(v)) for arm, v in drops.items()}


def main(max_tries: int = 100) -> None:
    truth = load_truth(TRUTH)
    for seed in range(FIRST_SEED, FIRST_SEED + max_tries):
        text = generate_synthetic_trial(truth, seed=seed)
        means = arm_means(text)
        ok = all(abs(means[a] - v) <= TOLERANCE for a, v in REPORTED.items())
        print(f"seed {seed}: " + ", ".join(f"{a} {m:.2f}" for a, m in sorted(means.items())) + ("  kept" if ok else ""))
        if ok:
            TRUTH.write_text(re.sub(r"(?m)^seed = \d+", f"seed = {seed}", TRUTH.read_text(), count=1))
            generate_synthetic_trial(TRUTH, HERE / "phase2_synthetic.csv")
            return
    raise SystemExit(f"no seed in {FIRST_SEED}..{FIRST_SEED + max_tries - 1} meets the rule")


if __name__ == "__main__":
    main()
