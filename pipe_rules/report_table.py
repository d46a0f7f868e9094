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
    elif family in FAMILY_COLUMNS:
        columns, row = FAMILY_COLUMNS[family]
        for column in columns:
            table.add_column(column, justify="right")
        for owner, rec in records["owners"].items():
            table.add_row(owner, *row(rec))
    else:
        table.add_column("E / Eh", justify="right")
        for owner, rec in records["owners"].items():
            energy = rec.get("e_elect_hartree")
            table.add_row(owner, f"{energy:.6f}" if energy is not None else "-")
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
