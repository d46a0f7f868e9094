"""TaskSpecs from an earlier run's records (from_run).

From a conformer run (conf_opt/conf_sp): conf_sp of every optimised conformer; species_sp,
species_freq and rotor_scan_1d of each species' lowest one (torsions still come from the species
entry in the config, since records carry no torsions). From a ts_opt run: irc, species_freq and
species_sp of each TS species' chosen TS (`chosen_ts_guess_index`: lowest energy with exactly one
imaginary mode); IRC directions come from the species entry (default both).

An owner without a usable result (every conformer failed, no acceptable TS) is skipped and named.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pipe_rules.contracts.errors import StagingError
from pipe_rules.contracts.ids import sanitize_label
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.inputs.builders_ts import irc_specs
from pipe_rules.inputs.campaign import IRC_DIRECTIONS, Campaign, RunConfig
from pipe_rules.inputs.spec_parts import SPECIES_FAMILIES, make_spec, scan_specs


def specs_from_records(campaign: Campaign, run: RunConfig, family: str, owners: Iterable[tuple[str, dict[str, Any]]],
                       skipped: list[str]) -> Iterator[TaskSpec]:
    """`owners`: (owner key, owner record) of the earlier run, as records.jsonl holds them (sorted)."""
    wanted = set(run.species) if run.species is not None else None
    by_label = {s.label: s for s in campaign.species}
    for owner, record in owners:
        if wanted is not None and owner not in wanted:
            continue
        if family == "ts_opt":
            yield from _from_ts(run, owner, record, by_label.get(owner), skipped)
        else:
            yield from _from_conformers(campaign, run, owner, record, by_label.get(owner), skipped)


def _from_conformers(campaign, run, owner, record, species, skipped) -> Iterator[TaskSpec]:
    conformers = [c for c in record.get("conformers", []) if c.get("converged") and c.get("geometry")]
    if not conformers:
        skipped.append(f"{owner}: no converged conformer in run {run.from_run!r}")
        return
    safe = sanitize_label(owner)
    charge, mult = record["charge"], record["multiplicity"]
    best = min(conformers, key=lambda c: c["energy_hartree"])
    meta = {"from_conformer_index": best["conformer_index"]}
    if run.family == "conf_sp":
        for conf in conformers:
            payload = {"xyz": conf["geometry"], "charge": charge, "multiplicity": mult}
            yield make_spec(run, f"{safe}_conf_sp_{conf['conformer_index']}", owner, payload,
                            {"conformer_index": conf["conformer_index"]})
    elif run.family in SPECIES_FAMILIES:
        payload = {"xyz": best["geometry"], "charge": charge, "multiplicity": mult}
        yield make_spec(run, f"{safe}_{run.family}", owner, payload, meta)
    elif run.family == "rotor_scan_1d":
        if species is None or not species.torsions:
            skipped.append(f"{owner}: has no torsions")
            return
        yield from scan_specs(campaign, run, species, best["geometry"], charge, mult, meta)
    else:
        raise StagingError(f"family {run.family!r} cannot take its input from a conformer run",
                           path=campaign.source, field=f"runs.{campaign.runs.index(run)}.from_run")


def _from_ts(run, owner, record, species, skipped) -> Iterator[TaskSpec]:
    index = record.get("chosen_ts_guess_index")
    if index is None:
        skipped.append(f"{owner}: no TS guess of run {run.from_run!r} converged to a saddle point "
                       "with exactly one imaginary mode")
        return
    ts = record["ts_guesses"][str(index)]
    charge, mult = record["charge"], record["multiplicity"]
    meta = {"from_ts_guess_index": index}
    if run.family == "irc":
        directions = species.irc_directions if species is not None else IRC_DIRECTIONS
        yield from irc_specs(run, owner, ts["geometry"], charge, mult, directions, meta)
    else:  # species_freq / species_sp of the TS (family_inputs allows nothing else)
        payload = {"xyz": ts["geometry"], "charge": charge, "multiplicity": mult}
        yield make_spec(run, f"{sanitize_label(owner)}_{run.family}", owner, payload, meta)
