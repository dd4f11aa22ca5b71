"""The model reference is generated from the declarations and must be current."""

from hcvdyn.results.docs import main, model_reference
from hcvdyn.model.catalog import MODELS


def test_model_reference_is_current():
    assert main(["--check"]) == 0, "docs/models.md is out of date: run python -m hcvdyn.results.docs"


def test_reference_lists_every_parameter_with_unit_and_source():
    text = model_reference()
    for m in MODELS.values():
        assert f"`{m.name}`" in text
        for p in m.params:
            row = next(line for line in text.splitlines() if line.startswith(f"| `{p.name}` |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert cells[2] and cells[6], p.name  # unit and source


def test_api_page_is_current_and_every_public_function_documented():
    from hcvdyn.results.docs import api_reference

    text = api_reference()
    assert "### `fit_trial(" in text and "### `make_report(" in text and "### `class VirtualTrial(" in text
    assert "(no docstring)" not in text, "a public function or class lacks a docstring"
