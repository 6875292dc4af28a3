"""`molecule test` for every scenario under molecule/ (each with a molecule.yml)."""

import pytest

from conftest import ROOT, run, tail

SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    rc, out = run(["molecule", "test", "--scenario-name", scenario], f"molecule-{scenario}")
    assert rc == 0, tail(out, 120)
