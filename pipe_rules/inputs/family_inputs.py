"""Which inputs each task family needs, checked on the whole config before anything is staged.

A run whose family can have no input at all (rotor scans without any torsion, ts_opt without any
TS guess, irc from a conformer run...) is a mistake in the config, so it is a ConfigError naming
the field. A single species that lacks the input (one species without torsions among several) is
not: the builders skip it and staging says so.
"""

from __future__ import annotations

import math

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.inputs.campaign import Campaign, RunConfig, Species

CONFORMER_SOURCES = frozenset({"conf_opt", "conf_sp"})
# family -> families of the runs it may take its input from (from_run)
CHAIN_SOURCES: dict[str, frozenset[str]] = {
    "conf_sp": CONFORMER_SOURCES,  # every optimised conformer
    "species_sp": CONFORMER_SOURCES | {"ts_opt"},  # lowest conformer, or the chosen TS
    "species_freq": CONFORMER_SOURCES | {"ts_opt"},
    "rotor_scan_1d": CONFORMER_SOURCES,  # lowest conformer; torsions from the species entry
    "irc": frozenset({"ts_opt"}),  # the chosen TS of each TS species
}


def has_geometry(species: Species) -> bool:
    return species.xyz is not None or bool(species.conformers) or species.structure is not None


def selected_species(campaign: Campaign, run: RunConfig) -> list[Species]:
    wanted = None if run.species is None else frozenset(run.species)  # not `in` a tuple: O(N^2)
    return [s for s in campaign.species if wanted is None or s.label in wanted]


def species_input_problem(family: str, species: Species) -> str | None:
    """Why this species gives no task of `family` when staged from species (None: it gives some)."""
    if family == "ts_opt":
        return None if species.is_ts else "has no ts_guesses"
    if family == "irc":
        if not species.is_ts:
            return "is not a TS species (no ts_guesses)"
        return None if species.xyz is not None else "has no TS xyz: run irc with from_run of a ts_opt run"
    if not has_geometry(species):
        return "has no structure or xyz (only ts_guesses): stage it from_run of a ts_opt run"
    if family == "rotor_scan_1d" and not species.torsions:
        return "has no torsions"
    return None


def check_family_inputs(campaign: Campaign) -> None:
    for index, run in enumerate(campaign.runs):
        _check_run(campaign, run, f"runs.{index}")


def _check_run(campaign: Campaign, run: RunConfig, where: str) -> None:
    source = campaign.source
    points = 360 / run.scan_resolution_deg
    if not math.isclose(points, round(points), abs_tol=1e-9):
        raise ConfigError(f"{run.scan_resolution_deg:g} must divide 360 evenly (e.g. 5, 10, 15, 30, 120)",
                          path=source, field=f"{where}.scan_resolution_deg")
    if run.tasks_file:  # ready specs: checked when staging reads them
        return
    if run.from_run:
        upstream = campaign.run(run.from_run).family
        allowed = CHAIN_SOURCES.get(run.family, frozenset())
        if upstream not in allowed:
            can = f"it can from: {', '.join(sorted(allowed))}" if allowed else "it takes its input from the config only"
            raise ConfigError(f"family {run.family!r} cannot take its input from a {upstream} run ({can})",
                              path=source, field=f"{where}.from_run")
        if run.family == "rotor_scan_1d" and not any(s.torsions for s in selected_species(campaign, run)):
            raise ConfigError("rotor_scan_1d needs at least one selected species with 'torsions'",
                              path=source, field=f"{where}.family")
        return
    if run.family == "ts_guess_batch_method":
        if not campaign.reactions:
            raise ConfigError("ts_guess_batch_method needs a top-level 'reactions' list", path=source,
                              field=f"{where}.family")
        return
    chosen = selected_species(campaign, run)
    if chosen and all(species_input_problem(run.family, s) for s in chosen):
        example = chosen[0]
        raise ConfigError(f"no selected species can give a {run.family} task (e.g. {example.label!r} "
                          f"{species_input_problem(run.family, example)})", path=source, field=f"{where}.family")
    if not chosen:
        raise ConfigError(f"{run.family} needs species (or from_run)", path=source, field=f"{where}.family")
