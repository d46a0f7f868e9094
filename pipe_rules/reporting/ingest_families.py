"""Owner fields of the families beyond conformers and single points, as ARC sets them.

Only COMPLETED, converged results fill these fields (the caller passes those alone); failed tasks
are listed under `failed` by `ingest`. Results are re-attached by the identity in
ingestion_metadata (ts_guess_index, rotor_index, irc_direction, method), never by list position,
so a failed or skipped task cannot shift another's result onto the wrong key. JSON keys are
strings: `ts_guesses["0"]`, `rotors["0"]`.
"""

from __future__ import annotations

from typing import Any


def species_freq(done: list[dict]) -> dict[str, Any]:
    """imaginary_flag True means: not a minimum, do not accept it as one; the numbers stay so the
    host can see what was found."""
    if not done:
        return {}
    data = done[0]["result"]["data"]
    return {"freqs": data["frequencies_cm1"], "n_imaginary": data["n_imaginary"],
            "zpe_hartree": data["zpe_hartree"], "imaginary_flag": bool(data["imaginary_flag"]),
            "freq_task_id": done[0]["task_id"]}


def ts_opt(done: list[dict]) -> dict[str, Any]:
    guesses = {}
    for entry in done:
        res, index = entry["result"], entry["ingestion_metadata"]["ts_guess_index"]
        n_imaginary = res["data"].get("n_imaginary", 1)
        guesses[str(index)] = {"ts_guess_index": index, "task_id": entry["task_id"],
                               "energy_hartree": res["energy_hartree"], "geometry": res["geometry"],
                               "imaginary_frequency_cm1": res["data"]["imaginary_frequency_cm1"],
                               "n_imaginary": n_imaginary}
    saddles = [g for g in guesses.values() if g["n_imaginary"] == 1]
    chosen = min(saddles, key=lambda g: g["energy_hartree"])["ts_guess_index"] if saddles else None
    return {"ts_guesses": dict(sorted(guesses.items(), key=lambda kv: int(kv[0]))),
            "chosen_ts_guess_index": chosen}


def irc(done: list[dict]) -> dict[str, Any]:
    halves = {}
    for entry in done:
        data = entry["result"]["data"]
        direction = entry["ingestion_metadata"].get("irc_direction", data["direction"])
        halves[direction] = {"end_geometry": data["end_geometry"], "end_energy_hartree": data["end_energy_hartree"],
                             "path_energies_hartree": data["path_energies_hartree"], "task_id": entry["task_id"]}
    return {"irc": halves} if halves else {}


def rotor_scan_1d(done: list[dict]) -> dict[str, Any]:
    rotors = {}
    for entry in done:
        data, index = entry["result"]["data"], entry["ingestion_metadata"]["rotor_index"]
        rotors[str(index)] = {"rotor_index": index, "task_id": entry["task_id"], "torsion": data["torsion"],
                              "resolution_deg": data["resolution_deg"], "angles_deg": data["angles_deg"],
                              "energies_hartree": data["energies_hartree"],
                              "relative_energies_kj_mol": data["relative_energies_kj_mol"],
                              "success": all(data.get("constrained_converged", [True]))}
    return {"rotors": dict(sorted(rotors.items(), key=lambda kv: int(kv[0])))} if rotors else {}


def ts_guess_batch_method(done: list[dict]) -> dict[str, Any]:
    guesses = []
    for entry in done:
        method = entry["ingestion_metadata"].get("method") or entry["result"]["data"]["method"]
        guesses += [{"method": method, "index": g["index"], "energy_hartree": g["energy_hartree"],
                     "geometry": g["geometry"]} for g in entry["result"]["data"]["guesses"]]
    guesses.sort(key=lambda g: (g["energy_hartree"], g["method"], g["index"]))
    return {"tsg_guesses": guesses} if guesses else {}


FIELDS = {"species_freq": species_freq, "ts_opt": ts_opt, "irc": irc, "rotor_scan_1d": rotor_scan_1d,
          "ts_guess_batch_method": ts_guess_batch_method}
