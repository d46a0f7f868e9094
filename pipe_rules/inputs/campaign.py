"""The campaign config (config.yaml) as pydantic models: the one source of its shape and defaults.

`CampaignFile` validates a config as read (unknown keys refused, scalars strict) and generates
contracts/schemas/config.schema.json (`pipe-rules schemas`) and, through it, the README's config
reference. `Campaign` is what `config.parse_campaign` returns: the checked config with its paths
resolved and each run's settings resolved (inputs/run_settings.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, StrictFloat, StrictInt, StrictStr, model_validator

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.contracts.models import FileModel, parse
from pipe_rules.inputs.run_settings import UNIQUE, Name, RunConfig, RunSettings, Unique, run_schema_refs

IRC_DIRECTIONS = ("forward", "reverse")
STRUCTURES = ("smiles", "inchi", "adjlist")  # at most one of these per species
GEOMETRIES = ("xyz", "conformers", "ts_guesses")
Geometry = StrictStr | dict[str, Any]  # an xyz text block (Angstrom), an ARC xyz dict, or a geometry file path
Torsion = Annotated[tuple[Annotated[StrictInt, Field(ge=0)], ...],
                    Field(min_length=4, max_length=4, json_schema_extra=UNIQUE), Unique]


def _species_rule(schema: dict, cls) -> None:
    schema["anyOf"] = [{"required": [key]} for key in (*STRUCTURES, *GEOMETRIES)]
    schema["not"] = {"anyOf": [{"required": [a, b]} for i, a in enumerate(STRUCTURES) for b in STRUCTURES[i + 1:]]}


class Species(FileModel):
    """A species: a structure (smiles, inchi or adjlist: at most one), a geometry (xyz or conformers), or both;
    a TS species may give ts_guesses only."""

    model_config = ConfigDict(frozen=True, json_schema_extra=_species_rule)

    label: StrictStr = Field(min_length=1, max_length=96, description='ARC species label (becomes the owner_key).')
    smiles: StrictStr = Field(None, min_length=1, description=(
        'Conformers are embedded with RDKit (ETKDGv3, seeded) and pre-optimised with MMFF. With torsions, atom indices'
        " follow RDKit's order: the SMILES' heavy atoms first, then explicit H atoms after them (added in heavy-atom "
        'order).'))
    inchi: StrictStr = Field(None, min_length=1, description=(
        'An InChI (read by RDKit) instead of a SMILES: conformers are embedded from it, charge and multiplicity '
        "default from it. Atom order: RDKit's from the InChI, then H atoms."))
    adjlist: StrictStr = Field(None, min_length=1, description=(
        "An RMG adjacency list (as ARC writes it: optional 'multiplicity N' line, then '1 C u0 p0 c0 {2,S}' lines; "
        'bond orders S, D, T, Q, B) instead of a SMILES. Atoms keep its order (torsions index it 0-based); charge and '
        'multiplicity default from it.'))
    xyz: Geometry = Field(None, description=(
        'Geometry: an xyz text block (Angstrom), an ARC xyz dict, or the path of a geometry file relative to this '
        'config (.xyz; Gaussian .gjf/.com input; Gaussian or ORCA output .log/.out: its last geometry). With smiles, '
        'inchi or adjlist too, the geometry is used and the structure gives charge and multiplicity. For a TS species '
        '(with ts_guesses) it is the known TS geometry, used by irc and species_* runs staged from species.'))
    conformers: tuple[Geometry, ...] = Field((), min_length=1, description=(
        'Given conformer geometries (xyz blocks, ARC xyz dicts or geometry file paths), e.g. those of an ARC restart: '
        'conf_opt and conf_sp runs staged from species take these, one task each (conformer_index = list position), '
        'instead of embedding conformers; species_* and rotor runs take xyz, else the first conformer.'))
    charge: StrictInt = Field(None, description=(
        'Default: formal charge of the structure (smiles, inchi, adjlist) or of a Gaussian input file given as xyz, '
        'else 0.'))
    multiplicity: StrictInt = Field(None, ge=1, description=(
        "Default: from the structure (radical electrons + 1 for smiles and inchi; an adjacency list's multiplicity "
        'line, else its unpaired electrons + 1) or a Gaussian input file given as xyz; for a geometry alone, 1 or 2 by'
        ' the parity of its electron count (as ARC assumes).'))
    # position in the tuple = rotor_index
    torsions: tuple[Torsion, ...] = Field((), min_length=1, description=(
        "Rotors for rotor_scan_1d: each a dihedral [i, j, k, l] of 0-based atom indices into the species' geometry "
        '(its xyz, or the RDKit embedding of its SMILES: heavy atoms in SMILES order, then explicit H atoms), rotating'
        ' about bond j-k. One scan task per torsion; its list position is the rotor_index.'))
    # a non-None guess makes a TS species (owner_type species); position = ts_guess_index
    ts_guesses: tuple[Geometry | None, ...] = Field((), min_length=1, description=(
        'TS guess geometries (xyz text blocks, ARC xyz dicts or geometry file paths): makes this a TS species '
        "(owner_type stays 'species', as in ARC). ts_opt runs optimise each guess; its list position is the "
        "ts_guess_index (null: no guess at that index, as where an ARC restart's guesses are keyed by "
        'conformer_index).'))
    irc_directions: Annotated[tuple[Literal["forward", "reverse"], ...], Unique] = Field(
        IRC_DIRECTIONS, min_length=1, json_schema_extra=UNIQUE, description=(
            'IRC halves to compute for this TS species (irc runs); default both.'))
    # (file, field) the entry came from, for errors found after parsing (e.g. RDKit refusing a SMILES)
    _origin: tuple[str, str] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _structure_and_geometry(self) -> "Species":
        given = [key for key in STRUCTURES if getattr(self, key) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of: {', '.join(STRUCTURES)}")
        if not given and self.xyz is None and not self.conformers and not self.ts_guesses:
            raise ValueError(f"needs one of: {', '.join((*STRUCTURES, *GEOMETRIES))}")
        return self

    def __eq__(self, other: object) -> bool:  # where the entry came from is not part of it
        return type(other) is type(self) and self.__dict__ == other.__dict__

    __hash__ = FileModel.__hash__

    @property
    def origin(self) -> tuple[str, str] | None:
        return self._origin

    @property
    def is_ts(self) -> bool:
        return any(guess is not None for guess in self.ts_guesses)

    @property
    def structure(self) -> tuple[str, str] | None:
        """(key, value) of the species' structure: smiles, inchi or adjlist; None if it has none."""
        for key in ("adjlist", "inchi", "smiles"):
            if getattr(self, key):
                return key, getattr(self, key)
        return None

    def where(self, key: str) -> tuple[Path | None, str]:
        """The file and field of one of this species' keys, for a one-line error."""
        if self._origin is None:
            return None, f"species.{self.label}.{key}"
        file, field = self._origin  # a config given as a mapping has no file ("None")
        return Path(file) if file != "None" else None, f"{field}.{key}" if field else key

    @classmethod
    def from_dict(cls, data: dict, origin: tuple[str, str] | None = None) -> Species:
        """A checked species that remembers where it was written (and names that place in its errors)."""
        file, field = origin or (None, "")
        species = parse(cls, data, ConfigError, Path(file) if file not in (None, "None") else None, field)
        species._origin = origin
        return species


class Reaction(FileModel):
    """A reaction for interpolated TS guesses; atom i of the reactant is atom i of the product (atom-mapped,
    same element order)."""

    model_config = ConfigDict(frozen=True)

    label: StrictStr = Field(min_length=1, max_length=96, description=(
        "ARC reaction label (becomes the owner_key, owner_type 'reaction')."))
    reactant_xyz: Geometry = Field(description='Reactant(s) geometry: xyz text block (Angstrom) or ARC xyz dict.')
    product_xyz: Geometry = Field(description='Product(s) geometry, atom-mapped onto reactant_xyz.')
    charge: StrictInt = Field(0, description='Total charge (default 0).')
    multiplicity: StrictInt = Field(1, ge=1, description='Spin multiplicity (default 1).')


class CampaignFile(FileModel):
    """One campaign: species and an ordered list of homogeneous runs (one family, engine, level and resource
    shape each)."""

    campaign: Name = Field(description='Name of the campaign; its runs live in <run_root>/<campaign>/<run name>.')
    run_root: StrictStr = Field("runs", description=(
        'Folder for run folders, relative to where snakemake runs (or absolute).'))
    lock_mode: Literal["auto", "flock", "soft"] = Field("auto", description=(
        "How workers keep out of each other's way, decided once per run at staging and kept in run.json. auto: flock"
        " where it excludes across clients (local disks, GlusterFS, GPFS, NFS without local_lock, Lustre with flock),"
        " soft elsewhere (sshfs, Lustre localflock/noflock, unknown). flock: fcntl.flock (refused where the filesystem"
        " refuses flock). soft: lease locks (O_EXCL files, broken when the holder is dead or silent for lock_lease_s)."
        " Task states stay correct in every mode: each write is a compare-and-set."))
    lock_lease_s: StrictFloat = Field(10.0, gt=0, description=(
        "Soft locks: a holder that has not renewed its lock for this long (seen on the waiter's own clock) is taken"
        " for dead and its lock broken; a dead holder on the waiter's own host is broken at once."))
    defaults: RunSettings = Field(None, description='Settings every run inherits unless it overrides them.')
    species: list[Species] = Field(None, description='Species given inline.')
    species_file: StrictStr = Field(None, description=(
        "YAML file with a list of species (same fields as 'species'), relative to this config file."))
    arc_input: StrictStr = Field(None, min_length=1, description=(
        'An ARC input file or ARC restart.yml, relative to this config file: its species (smiles, inchi, adjlist or '
        'mol, xyz blocks/dicts/files, restart conformers, TS guesses, rotors) become species here, and each reaction '
        "with TS guesses (ts_xyz_guess) a TS species keyed by the reaction's label; other keys are ignored (README: "
        'ARC input files).'))
    runs: list[RunConfig] = Field(min_length=1, description=(
        'Runs in order; a run may take its inputs from an earlier one (from_run).'))
    reactions: list[Reaction] = Field(None, description=(
        'Reactions for ts_guess_batch_method runs: each gives one task per TS-guess method (run setting ts_methods).'))


def config_schema(document: dict) -> dict:
    """config.schema.json as other programs read it: `defaults` and each run entry refer to the run
    settings (closed by unevaluatedProperties, so the settings stay open to the run's own keys), and
    a top-level key that is a bare $ref keeps its description."""
    run_schema_refs(document)
    document["properties"]["defaults"] = {"allOf": [{"$ref": "#/$defs/RunSettings"}], "unevaluatedProperties": False}
    for name, prop in document["properties"].items():  # pydantic leaves the description off a bare $ref
        prop.setdefault("description", CampaignFile.model_fields[name].description)
    return document


@dataclass(frozen=True)
class Campaign:
    name: str
    run_root: Path
    lock_mode: str
    species: tuple[Species, ...]
    runs: tuple[RunConfig, ...]
    source: Path | None = None
    reactions: tuple[Reaction, ...] = ()
    lock_lease_s: float = 10.0

    def run(self, name: str) -> RunConfig:
        for run in self.runs:
            if run.name == name:
                return run
        raise ConfigError(f"no run named {name!r} (runs: {', '.join(r.name for r in self.runs)})",
                          path=self.source, field="runs")

    def run_dir(self, name: str) -> Path:
        return self.run_root / self.name / name
