"""Terminal tables for `pipe-rules status` and `pipe-rules results` (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def status_table(run_id: str, run_state: str, counts: dict[str, int]) -> Table:
    table = Table(title=f"{run_id}: {run_state}")
    table.add_column("task state")
    table.add_column("tasks", justify="right")
    for state, count in counts.items():
        if count:
            table.add_row(state, str(count))
    table.add_row("total", str(sum(counts.values())), style="bold")
    return table


def results_table(records: dict[str, Any]) -> Table:
    family = records["family"]
    table = Table(title=f"{records['run_id']} ({family}, {records['engine']} {records['level']}): {records['run_state']}")
    table.add_column("owner")
    if family in ("conf_opt", "conf_sp"):
        table.add_column("conformers ok", justify="right")
        table.add_column("lowest", justify="right")
        table.add_column("E lowest / Eh", justify="right")
        table.add_column("spread / kJ mol-1", justify="right")
        for owner, rec in records["owners"].items():
            energies = [c["energy_hartree"] for c in rec.get("conformers", []) if c["energy_hartree"] is not None]
            spread = (max(energies) - min(energies)) * 2625.499639479 if energies else None
            table.add_row(owner, f"{len(energies)}/{len(rec.get('conformers', []))}",
                          str(rec.get("lowest_conformer_index", "-")),
                          f"{min(energies):.6f}" if energies else "-", f"{spread:.2f}" if spread is not None else "-")
    else:
        table.add_column("E / Eh", justify="right")
        for owner, rec in records["owners"].items():
            energy = rec.get("e_elect_hartree")
            table.add_row(owner, f"{energy:.6f}" if energy is not None else "-")
    return table


def print_table(table: Table) -> None:
    Console().print(table)
