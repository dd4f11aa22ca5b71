import json
import shutil

import pytest

from hcvdyn import __version__
from hcvdyn.files import file_sha256
from hcvdyn.results.provenance import input_path, provenance
from hcvdyn.results.writers import write_results


def test_inputs_are_recorded_relative_to_the_folder_and_found_after_moving_both(tmp_path):
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    spec = project / "specs" / "trial.toml"
    spec.write_text('name = "x"\n')
    folder = project / "results" / "run1"
    meta = provenance("trial", folder, {"trial": (spec, {"name": "x"})}, model="pkpd3", options={"seed": 1}, arms=[])
    assert meta["hcvdyn_version"] == __version__ and meta["command"] == "trial" and meta["model"] == "pkpd3"
    assert meta["inputs"]["trial"] == {"name": "x", "path": "../../specs/trial.toml", "sha256": file_sha256(spec)}
    write_results(folder, {"result.json": meta})
    moved = shutil.move(str(project), str(tmp_path / "elsewhere"))
    record = json.loads((tmp_path / "elsewhere" / "results" / "run1" / "result.json").read_text())
    assert input_path(tmp_path / "elsewhere" / "results" / "run1", record, "trial") == (tmp_path / "elsewhere" / "specs" / "trial.toml")
    (tmp_path / "elsewhere" / "specs" / "trial.toml").unlink()
    with pytest.raises(FileNotFoundError, match="input 'trial' recorded at ../../specs/trial.toml"):
        input_path(moved + "/results/run1", record, "trial")
    with pytest.raises(ValueError, match="records no input 'data'"):
        input_path(moved + "/results/run1", record, "data")
