"""The report's plots, each drawn only when the run has its data (matplotlib, Agg, no pyplot state).

Every function takes the run's records (the summary with a sample of owners and the first
failures, store/records_io.load_records) and returns a Figure, or None when the run has nothing to
show in it. Big runs are capped (the first MAX_SERIES owners or rotors) and the title says so.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any, Callable

from matplotlib.figure import Figure

HARTREE_TO_KJ_PER_MOL = 2625.499639479
MAX_SERIES = 12  # curves per plot
MAX_SPECIES = 40  # columns in the conformer plot


def _figure(width: float = 7.0, height: float = 4.0) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _capped(title: str, shown: int, total: int) -> str:
    return title if shown == total else f"{title} (first {shown} of {total})"


def conformer_spread(records: dict[str, Any]) -> Figure | None:
    """Relative conformer energies per species: how many low-lying conformers each has."""
    if records["family"] not in ("conf_opt", "conf_sp"):
        return None
    series = []
    for owner, rec in records["owners"].items():
        energies = [c["energy_hartree"] for c in rec.get("conformers", []) if c.get("energy_hartree") is not None]
        if energies:
            low = min(energies)
            series.append((owner, [(e - low) * HARTREE_TO_KJ_PER_MOL for e in energies]))
    if not any(len(values) >= 2 for _, values in series):
        return None  # one conformer per species has no spread to show
    shown = series[:MAX_SPECIES]
    fig = _figure(max(5.0, 0.45 * len(shown) + 2), 4.0)
    ax = fig.add_subplot()
    for x, (_, values) in enumerate(shown):
        ax.scatter([x] * len(values), values, s=18, alpha=0.7, color="tab:blue")
    ax.set_xticks(range(len(shown)), [owner for owner, _ in shown], rotation=45, ha="right")
    ax.set_ylabel("E - E(lowest) / kJ mol$^{-1}$")
    ax.set_title(_capped("Conformer energies per species", len(shown), len(series)))
    ax.grid(axis="y", alpha=0.3)
    return fig


def _finish(ax, fig: Figure, xlabel: str, ylabel: str, title: str) -> Figure:
    """Labels, title, legend and grid of a line plot with one curve per owner."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def rotor_scans(records: dict[str, Any]) -> Figure | None:
    """Relative energy along each scanned torsion."""
    if records["family"] != "rotor_scan_1d":
        return None
    curves = [(f"{owner} rotor {index} {rotor['torsion']}", rotor)
              for owner, rec in records["owners"].items() for index, rotor in rec.get("rotors", {}).items()]
    if not curves:
        return None
    shown = curves[:MAX_SERIES]
    fig = _figure()
    ax = fig.add_subplot()
    for label, rotor in shown:  # a scan starts at the torsion's own angle: sort the points around the circle
        points = sorted(zip((a % 360 for a in rotor["angles_deg"]), rotor["relative_energies_kj_mol"]))
        ax.plot([a for a, _ in points], [e for _, e in points], marker="o", markersize=3, label=label)
    ax.set_xticks(range(0, 361, 60))
    return _finish(ax, fig, "dihedral / deg", "E - E(min) / kJ mol$^{-1}$",
                   _capped("Rotor scans", len(shown), len(curves)))


def irc_profiles(records: dict[str, Any]) -> Figure | None:
    """Energy along both IRC halves, relative to the TS (reverse to the left, forward to the right)."""
    if records["family"] != "irc":
        return None
    profiles = [(owner, rec["irc"]) for owner, rec in records["owners"].items() if rec.get("irc")]
    if not profiles:
        return None
    shown = profiles[:MAX_SERIES]
    fig = _figure()
    ax = fig.add_subplot()
    for owner, halves in shown:
        reference = next(iter(halves.values()))["path_energies_hartree"][0]
        xs: list[int] = []
        ys: list[float] = []
        for direction, sign in (("reverse", -1), ("forward", 1)):
            path = halves.get(direction, {}).get("path_energies_hartree") or []
            points = [(sign * i, (e - reference) * HARTREE_TO_KJ_PER_MOL) for i, e in enumerate(path)]
            if sign < 0:
                points.reverse()
            xs += [x for x, _ in points]
            ys += [y for _, y in points]
        ax.plot(xs, ys, marker="o", markersize=3, label=f"{owner} ({', '.join(sorted(halves))})")
    ax.axvline(0, color="grey", linewidth=0.8)
    return _finish(ax, fig, "IRC point (reverse < 0 < forward)", "E - E(TS) / kJ mol$^{-1}$",
                   _capped("IRC profiles", len(shown), len(profiles)))


def task_durations(records: dict[str, Any]) -> Figure | None:
    """How long attempts took: a long tail is what to look at before choosing the walltime."""
    cost = records.get("cost") or {}
    walls = cost.get("attempt_wall_s_sample") or []
    if not walls:
        return None
    total = cost.get("attempt_wall_s_count", len(walls))
    fig = _figure(6.0, 3.5)
    ax = fig.add_subplot()
    ax.hist(walls, bins=min(40, max(5, len(walls) // 2)), color="tab:green")
    ax.set_xlabel("attempt wall time / s")
    ax.set_ylabel("attempts")
    ax.set_title(f"Task durations ({len(walls)} attempts)" if total == len(walls) else
                 f"Task durations (a sample of {len(walls):,} of {total:,} attempts)")
    return fig


def failures_by_class(records: dict[str, Any]) -> Figure | None:
    """Tasks that did not complete, by failure class and reason."""
    failed = records.get("failed") or []
    if not failed:
        return None
    counts = Counter(f"{f.get('failure_class') or f['status']}: {f.get('failure_reason') or '-'}" for f in failed)
    labels = [label for label, _ in counts.most_common(MAX_SERIES)]
    fig = _figure(6.0, 0.9 + 0.35 * len(labels))
    ax = fig.add_subplot()
    ax.barh(range(len(labels)), [counts[label] for label in labels], color="tab:red")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("tasks")
    ax.set_title(_capped("Failures by class", len(labels), len(counts)))
    return fig


# (id, title, function): the report shows them in this order
PLOTS: list[tuple[str, str, Callable[[dict[str, Any]], Figure | None]]] = [
    ("conformer-spread", "Conformer energy spread per species", conformer_spread),
    ("rotor-scans", "Rotor scan curves", rotor_scans),
    ("irc-profiles", "IRC profiles", irc_profiles),
    ("task-durations", "Per-task duration histogram", task_durations),
    ("failures", "Failures by class", failures_by_class),
]


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
