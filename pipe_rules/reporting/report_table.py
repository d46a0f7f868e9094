"""Terminal tables for `pipe-rules status` and `pipe-rules results` (rich); the owner rows of the
results table are shared with the HTML report (`owner_columns`)."""

from __future__ import annotations

from itertools import islice
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

HARTREE_TO_KJ_PER_MOL = 2625.499639479


def hours(value: float | None) -> str:
    """CPU-hours with 4 significant digits: tiny runs show 3.2e-05, big ones 1234."""
    return "-" if value is None else f"{value:.4g}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def cost_line(cost) -> str:
    """CPU-hours so far of a CostSummary, one line."""
    return (f"CPU-hours so far: {hours(cost.cpu_hours)} (cores x wall), {hours(cost.cpu_hours_used)} measured "
            f"CPU, over {cost.attempts} attempt(s); largest task peak memory "
            + (f"{cost.peak_rss_mb:.0f} MB" if cost.peak_rss_mb else "-"))


def status_table(run_id: str, run_state: str, counts: dict[str, int]) -> Table:
    table = Table(title=f"{run_id}: {run_state}")
    table.add_column("task state")
    table.add_column("tasks", justify="right")
    for state, count in counts.items():
        if count:
            table.add_row(state, str(count))
    table.add_row("total", str(sum(counts.values())), style="bold")
    return table


def owner_table(owners: dict, limit: int | None = None) -> Table:
    """One row per owner (OwnerCounts): tasks by column and CPU-hours so far; the first `limit` owners."""
    shown = list(islice(owners.items(), limit))  # never all of them: a run can have 100,000 owners
    cancelled = any(c.cancelled for _, c in shown)
    table = Table(title=f"per owner ({len(owners)})")
    for title in ("owner", "pending", "running", "done", "failed", *(["cancelled"] if cancelled else []),
                  "CPU-hours", "peak MB"):
        table.add_column(title, justify="left" if title == "owner" else "right")
    for owner, c in shown:
        cells = [str(c.pending), str(c.running), str(c.done), str(c.failed)] + ([str(c.cancelled)] if cancelled else [])
        peak = c.cost.peak_rss_mb
        table.add_row(Text(owner), *cells, hours(c.cost.cpu_hours) if c.cost.attempts else "-",
                      f"{peak:.0f}" if peak else "-", style="red" if c.failed else None)
    if len(shown) < len(owners):
        table.caption = f"first {len(shown)} of {len(owners)} owners (--owners N to show more, --json for all)"
    return table


def owner_columns(records: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Column titles after "owner" and one row of text per owner, for the run's family."""
    family = records["family"]
    owners = records["owners"]
    if family in ("conf_opt", "conf_sp"):
        rows = []
        for rec in owners.values():
            energies = [c["energy_hartree"] for c in rec.get("conformers", []) if c["energy_hartree"] is not None]
            spread = (max(energies) - min(energies)) * HARTREE_TO_KJ_PER_MOL if energies else None
            rows.append([f"{len(energies)}/{len(rec.get('conformers', []))}",
                         str(rec.get("lowest_conformer_index", "-")),
                         f"{min(energies):.6f}" if energies else "-", f"{spread:.2f}" if spread is not None else "-"])
        return ["conformers ok", "lowest", "E lowest / Eh", "spread / kJ mol-1"], rows
    if family in FAMILY_COLUMNS:
        columns, row = FAMILY_COLUMNS[family]
        return list(columns), [row(rec) for rec in owners.values()]
    return ["E / Eh"], [[_num(rec.get("e_elect_hartree"))] for rec in owners.values()]


def results_table(records: dict[str, Any]) -> Table:
    family = records["family"]
    table = Table(title=f"{records['run_id']} ({family}, {records['engine']} {records['level']}): {records['run_state']}")
    table.add_column("owner")
    columns, rows = owner_columns(records)
    for column in columns:
        table.add_column(column, justify="right")
    for owner, row in zip(records["owners"], rows):
        table.add_row(Text(owner), *row)  # a label is text, never rich markup
    return table


def _num(value: Any, fmt: str = ".6f") -> str:
    return "-" if value is None else format(value, fmt)


def _freq_row(rec: dict) -> list[str]:
    if "freqs" not in rec:
        return ["-"] * 4
    low = min(rec["freqs"]) if rec["freqs"] else None
    return [str(rec["n_imaginary"]), _num(low, ".1f"), _num(rec["zpe_hartree"]),
            "FLAGGED" if rec["imaginary_flag"] else "ok"]


def _ts_row(rec: dict) -> list[str]:
    guesses = rec.get("ts_guesses", {})
    chosen = rec.get("chosen_ts_guess_index")
    best = guesses.get(str(chosen)) if chosen is not None else None
    return [str(len(guesses)), _num(chosen, "d"), _num(best and best["energy_hartree"]),
            _num(best and best["imaginary_frequency_cm1"], ".1f")]


def _irc_row(rec: dict) -> list[str]:
    halves = rec.get("irc", {})
    return [_num(halves.get(d, {}).get("end_energy_hartree")) for d in ("forward", "reverse")] + \
        [str(sum(len(h["path_energies_hartree"]) for h in halves.values()))]


def _scan_row(rec: dict) -> list[str]:
    rotors = list(rec.get("rotors", {}).values())
    barriers = [max(r["relative_energies_kj_mol"]) for r in rotors]
    return [str(len(rotors)), ", ".join(str(r["torsion"]) for r in rotors) or "-",
            _num(rotors[0]["resolution_deg"], "g") if rotors else "-",
            ", ".join(f"{b:.2f}" for b in barriers) or "-", "yes" if rotors and all(r["success"] for r in rotors) else "-"]


def _tsg_row(rec: dict) -> list[str]:
    guesses = rec.get("tsg_guesses", [])
    top = max(guesses, key=lambda g: g["energy_hartree"]) if guesses else None
    return [str(len(guesses)), ", ".join(sorted({g["method"] for g in guesses})) or "-",
            f"{top['method']} {top['index']}" if top else "-", _num(top and top["energy_hartree"])]


# family -> (column titles after "owner", row function)
FAMILY_COLUMNS = {
    "species_freq": (["n imag", "lowest freq / cm-1", "ZPE / Eh", "minimum?"], _freq_row),
    "ts_opt": (["guesses ok", "chosen", "E TS / Eh", "imag freq / cm-1"], _ts_row),
    "irc": (["E forward end / Eh", "E reverse end / Eh", "path points"], _irc_row),
    "rotor_scan_1d": (["rotors", "torsions", "step / deg", "barrier / kJ mol-1", "all converged"], _scan_row),
    "ts_guess_batch_method": (["guesses", "methods", "highest", "E highest / Eh"], _tsg_row),
}


def print_table(table: Table) -> None:
    Console().print(table)
