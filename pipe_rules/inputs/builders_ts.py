"""TaskSpecs of the TS families staged from the config: ts_opt and irc of TS species, and
interpolated TS guesses of reactions.

A TS species is a species with `ts_guesses` (owner_type stays "species", as in ARC): ts_opt gives
one task per guess, `{label}_ts_opt_{i}`, with i in ingestion_metadata (ts_guess_index) so the
ingested `ts_guesses` are keyed by it, never by list position. irc from species takes the TS
species' own `xyz` (a known TS); the usual route is irc from_run a ts_opt run (`builders_chain`).

ts_guess_batch_method: ONE task per (reaction, method), `{reaction}_tsg_{method}`, because the
engine interpolates the whole path and ranks every image in one call (one tblite process, images
share nothing else); one task per image would repeat the interpolation n_images times.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.contracts.ids import sanitize_label
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.inputs.campaign import Campaign, RunConfig, Species
from pipe_rules.inputs.spec_parts import make_spec, xyz_dict


def ts_species_specs(campaign: Campaign, run: RunConfig, species: Species, charge: int, mult: int) -> Iterator[TaskSpec]:
    safe = sanitize_label(species.label)
    if run.family == "ts_opt":
        for index, guess in enumerate(species.ts_guesses):
            if guess is None:  # no guess at this index (an ARC restart's guesses keyed by conformer_index)
                continue
            try:
                xyz = xyz_dict(guess)
            except ValueError as exc:  # the position only on error: index() per species is O(N^2) at 20,000
                path, field = species.where(f"ts_guesses.{index}")
                position = None if path else campaign.species.index(species)
                raise ConfigError(f"species {species.label!r}: {exc}", path=path or campaign.source,
                                  field=field if path else f"species.{position}.ts_guesses.{index}") from None
            payload = {"xyz": xyz, "charge": charge, "multiplicity": mult}
            yield make_spec(run, f"{safe}_ts_opt_{index}", species.label, payload, {"ts_guess_index": index})
    else:  # irc of the species' own TS geometry
        yield from irc_specs(run, species.label, xyz_dict(species.xyz), charge, mult, species.irc_directions, {})


def irc_specs(run: RunConfig, label: str, ts_xyz: dict, charge: int, mult: int, directions, meta: dict) -> Iterator[TaskSpec]:
    for direction in directions:
        payload = {"xyz": ts_xyz, "charge": charge, "multiplicity": mult, "direction": direction}
        yield make_spec(run, f"{sanitize_label(label)}_irc_{direction}", label, payload,
                        {"irc_direction": direction, **meta})


def reaction_specs(campaign: Campaign, run: RunConfig) -> Iterator[TaskSpec]:
    for position, reaction in enumerate(campaign.reactions):
        geometries = {}
        for key in ("reactant_xyz", "product_xyz"):
            try:
                geometries[key] = xyz_dict(getattr(reaction, key))
            except ValueError as exc:
                raise ConfigError(str(exc), path=campaign.source, field=f"reactions.{position}.{key}") from None
        if geometries["reactant_xyz"]["symbols"] != geometries["product_xyz"]["symbols"]:
            raise ConfigError("reactant_xyz and product_xyz must list the same elements in the same order "
                              "(atom i of the reactant is atom i of the product)", path=campaign.source,
                              field=f"reactions.{position}.product_xyz")
        for method in run.ts_methods:
            payload = {**geometries, "charge": reaction.charge, "multiplicity": reaction.multiplicity,
                       "method": method, "n_images": run.n_images}
            yield make_spec(run, f"{sanitize_label(reaction.label)}_tsg_{method}", reaction.label, payload,
                            {"method": method}, owner_type="reaction")
