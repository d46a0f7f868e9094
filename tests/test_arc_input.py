"""The species of an ARC input file: read, refused with one line when wrong, and staged via `arc_input:`."""

from __future__ import annotations

import shutil

import pytest
import yaml
from conftest import REPO, pipe_rules_cli

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.inputs.arc_input import ArcSpecies, read_arc_input
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.task_files import load_spec

EXAMPLE = REPO / "examples" / "arc_input.yml"


def test_reads_the_species_of_a_realistic_arc_input():
    species = read_arc_input(EXAMPLE)
    assert [s.label for s in species] == ["methanol", "ethyl", "acetaldehyde", "water", "NH2"]
    assert species[0] == ArcSpecies("methanol", smiles="CO")
    assert species[1] == ArcSpecies("ethyl", smiles="C[CH2]", multiplicity=2)
    assert species[2] == ArcSpecies("acetaldehyde", smiles="CC=O", charge=0, multiplicity=1)
    water = species[3]  # count and comment lines as ARC accepts them
    assert water.xyz["symbols"] == ["O", "H", "H"] and water.xyz["isotopes"] == [16, 1, 1]
    assert water.xyz["coords"][1] == pytest.approx([0.0, 0.7572, -0.4692])
    assert (water.charge, water.multiplicity) == (0, 1)
    assert species[4].xyz["symbols"] == ["N", "H", "H"] and species[4].multiplicity == 2
    assert species[4].as_species_dict() == {"label": "NH2", "xyz": species[4].xyz, "multiplicity": 2}


BAD = [
    ("species:\n  - {smiles: C}\n  - {smiles: CC}\n",
     "field 'species.0.label': missing: every species needs a label"),
    ("species:\n  - {label: CH4, smiles: C}\n  - {smiles: CC, multiplicity: 1}\n",
     "field 'species.1.label': missing: every species needs a label"),
    ("species:\n  - {label: CH4, smiles: C}\n  - {label: x, charge: 0}\n",
     ("field 'species.1': species 'x': has no structure: give smiles, inchi, adjlist, mol or xyz (a block, an ARC "
      "xyz dict or a file)")),
    ("species:\n  - {label: CH3, smiles: '[CH3]', multiplicity: 0}\n",
     "field 'species.0.multiplicity': species 'CH3': 0 is not a multiplicity (an integer >= 1)"),
    ("species:\n  - {label: CH3, smiles: '[CH3]', multiplicity: two}\n",
     "field 'species.0.multiplicity': species 'CH3': 'two' is not a multiplicity (an integer >= 1)"),
    ("species:\n  - {label: OH-, smiles: '[OH-]', charge: 0.5}\n",
     "field 'species.0.charge': species 'OH-': 0.5 is not a charge (an integer)"),
    ("species:\n  methanol: {smiles: CO}\n",
     ("field 'species': must be a list of species (each with a label and smiles, inchi, adjlist, mol or xyz (a "
      "block, an ARC xyz dict or a file)), not a mapping")),
    ("species: CO\n",
     ("field 'species': must be a list of species (each with a label and smiles, inchi, adjlist, mol or xyz (a "
      "block, an ARC xyz dict or a file)), not str")),
    ("species:\n  - {label: w, xyz: \"O 0 0 0\\nH 0 0.75\"}\n",
     ("field 'species.0.xyz': species 'w': xyz line 2 'H 0 0.75' is not 'Element x y z' (an element symbol and "
      "three coordinates in Angstrom)")),
    ("species:\n  - {label: w, xyz: 7}\n",
     ("field 'species.0.xyz': species 'w': must be an xyz text block, an ARC xyz dict or a geometry file path, "
      "not int")),
    ("species:\n  - {label: a, smiles: C}\n  - {label: a, smiles: CC}\n",
     "field 'species.1.label': label 'a' is used twice (also by species 0)"),
    ("project: x\n", "field 'species': missing: an ARC input file lists its species under 'species'"),
    ("- {label: a, smiles: C}\n", "must be a YAML mapping (an ARC input file) with a 'species' list"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_arc_input_is_one_line_naming_file_species_and_field(tmp_path, text, message):
    path = tmp_path / "input.yml"
    path.write_text("project: demo\nlevel_of_theory: b3lyp/6-31g(d)\n" + text if text.startswith("species")
                    else text)
    with pytest.raises(PipeRulesError) as err:
        read_arc_input(path)
    assert str(err.value) == f"{path}: {message}"


def test_unsafe_yaml_is_refused(tmp_path):
    path = tmp_path / "input.yml"
    path.write_text("species: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(PipeRulesError, match=r"input.yml: is not valid YAML at line 1 column 10: "):
        read_arc_input(path)


def _campaign(tmp_path, arc_text: str | None = None, **extra) -> object:
    if arc_text is None:
        shutil.copy(EXAMPLE, tmp_path / "arc.yml")
    else:
        (tmp_path / "arc.yml").write_text(arc_text)
    config = {"campaign": "fromarc", "run_root": str(tmp_path / "runs"), "arc_input": "arc.yml",
              "defaults": {"engine": "tblite", "level": "GFN2-xTB"},
              "runs": [{"name": "sp", "family": "species_sp"}], **extra}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_campaign_on_an_arc_input_stages_its_species(tmp_path):
    campaign = load_campaign(_campaign(tmp_path))
    report = stage_run(campaign, "sp")
    assert report.new_tasks == 5
    layout = RunLayout(campaign.run_dir("sp"))
    specs = {s.owner_key: s for s in (load_spec(layout.spec(t)) for t in manifest_task_ids(layout))}
    assert set(specs) == {"methanol", "ethyl", "acetaldehyde", "water", "NH2"}
    payloads = {label: (s.input_payload["charge"], s.input_payload["multiplicity"]) for label, s in specs.items()}
    assert payloads == {"methanol": (0, 1), "ethyl": (0, 2), "acetaldehyde": (0, 1), "water": (0, 1), "NH2": (0, 2)}
    assert specs["water"].input_payload["xyz"]["coords"][0] == pytest.approx([0.0, 0.0, 0.1173])
    assert len(specs["ethyl"].input_payload["xyz"]["symbols"]) == 7  # C2H5 embedded by RDKit


def test_arc_input_errors_reach_the_user_through_the_cli(tmp_path):
    config = _campaign(tmp_path, "species:\n  - {label: CH3, smiles: '[CH3]', multiplicity: 0}\n")
    proc = pipe_rules_cli("stage", str(config))
    assert proc.returncode == 2
    assert proc.stderr == (f"pipe-rules: error: {tmp_path / 'arc.yml'}: field 'species.0.multiplicity': "
                           "species 'CH3': 0 is not a multiplicity (an integer >= 1)\n")
    assert not (tmp_path / "runs").exists()  # nothing staged
    clash = _campaign(tmp_path, species=[{"label": "water", "smiles": "O"}])
    with pytest.raises(PipeRulesError) as err:
        load_campaign(clash)
    assert str(err.value) == f"{clash}: field 'species': species label(s) used twice: water"
    missing = _campaign(tmp_path, arc_input="nowhere.yml")
    with pytest.raises(PipeRulesError, match=r"nowhere.yml: cannot read the ARC input file: No such file"):
        load_campaign(missing)


def test_the_example_campaign_config_is_valid():
    campaign = load_campaign(REPO / "examples" / "arc_input_campaign.yml")
    assert [s.label for s in campaign.species] == ["methanol", "ethyl", "acetaldehyde", "water", "NH2"]
    assert [r.name for r in campaign.runs] == ["conformers", "energies"]
