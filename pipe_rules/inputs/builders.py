"""Turn species (or an earlier run's records) into the TaskSpecs of one run, per family.

Task ids follow ARC's patterns ({label}_conf_opt_{i}, {label}_species_freq, {label}_scan_r{ri},
{label}_ts_opt_{i}, {label}_irc_{direction}, ...), made safe. Identity (conformer, rotor, TS guess
index, IRC direction) goes into ingestion_metadata, so ingestion re-attaches results by identity,
never by list position; it stays out of the payload where the engine contract allows, so identical
geometries get identical fingerprints and are computed once.

A species that cannot give the run's family any input (no torsions, no TS guess...) is skipped and
named in `skipped`, which staging prints; a run where no species can is refused earlier, by
`family_inputs` at config time. TS families and reactions live in `builders_ts`, chaining from an
earlier run's records in `builders_chain`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pipe_rules.contracts.errors import ConfigError, StagingError
from pipe_rules.contracts.ids import sanitize_label
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.inputs import builders_ts
from pipe_rules.inputs.builders_chain import specs_from_records as chained_specs
from pipe_rules.inputs.campaign import Campaign, RunConfig
from pipe_rules.inputs.family_inputs import species_input_problem
from pipe_rules.inputs.spec_parts import (
    CONFORMER_FAMILIES,
    SPECIES_FAMILIES,
    charge_multiplicity,
    make_spec,
    scan_specs,
    species_geometries,
)


def specs_from_species(campaign: Campaign, run: RunConfig, skipped: list[str] | None = None) -> Iterator[TaskSpec]:
    skipped = skipped if skipped is not None else []
    if run.family == "ts_guess_batch_method":
        yield from builders_ts.reaction_specs(campaign, run)
        return
    wanted = None if run.species is None else frozenset(run.species)  # a set: 20,000 labels in a tuple is O(N^2)
    chosen = [s for s in campaign.species if wanted is None or s.label in wanted]
    for species in chosen:
        problem = species_input_problem(run.family, species)
        if problem:
            skipped.append(f"{species.label}: {problem}")
            continue
        try:
            specs = list(_species_specs(campaign, run, species))
        except ValueError as exc:  # RDKit or the xyz parser refused this species' input
            path, field = species.where(species.structure[0] if species.structure and species.xyz is None else "xyz")
            raise ConfigError(f"species {species.label!r}: {exc}", path=path or campaign.source, field=field) from None
        yield from specs


def _species_specs(campaign: Campaign, run: RunConfig, species) -> Iterator[TaskSpec]:
    charge, mult = charge_multiplicity(species)
    safe = sanitize_label(species.label)
    if run.family in CONFORMER_FAMILIES:
        for index, xyz in enumerate(species_geometries(species, run.n_conformers, run.seed, True)):
            payload = {"xyz": xyz, "charge": charge, "multiplicity": mult}
            yield make_spec(run, f"{safe}_{run.family}_{index}", species.label, payload,
                            {"conformer_index": index})
    elif run.family in SPECIES_FAMILIES:
        xyz = species_geometries(species, run.n_conformers, run.seed)[0]
        payload = {"xyz": xyz, "charge": charge, "multiplicity": mult}
        yield make_spec(run, f"{safe}_{run.family}", species.label, payload, {})
    elif run.family == "rotor_scan_1d":
        xyz = species_geometries(species, 1, run.seed)[0]
        yield from scan_specs(campaign, run, species, xyz, charge, mult)
    elif run.family in ("ts_opt", "irc"):
        yield from builders_ts.ts_species_specs(campaign, run, species, charge, mult)
    else:
        raise StagingError(f"staging family {run.family!r} from species is not supported",
                           path=campaign.source, field=f"runs.{campaign.runs.index(run)}.family")


def specs_from_records(campaign: Campaign, run: RunConfig, family: str, owners: Iterable[tuple[str, dict[str, Any]]],
                       skipped: list[str] | None = None) -> Iterator[TaskSpec]:
    return chained_specs(campaign, run, family, owners, skipped if skipped is not None else [])
