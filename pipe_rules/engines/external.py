"""The `external` engine: run an installed program (Gaussian, ORCA, ...) and read its log with cclib.

Options (per run):
  command        argv list, e.g. ["g16", "{input}"] or ["orca", "{input}"]. Never a shell string:
                 nothing is interpreted by a shell, so no quoting bugs and no injection.
  input_template text of the input file; {xyz} (one "El x y z" line per atom, Angstrom), {charge},
                 {multiplicity}, {cores} and {level} are replaced, nothing else (ORCA's %blocks
                 keep their braces).
  output         the log to parse, relative to the task folder (Gaussian: input.log).
  stdout         where the program's stdout goes (default program.stdout; ORCA: the same as output).
  input_file     name of the written input (default input.inp); program (name for messages),
  timeout_s      wall-clock limit (default one day); imaginary_threshold_cm1.

Classification, from what the node and the log say:
  the binary is missing or not executable       -> TRANSIENT engine_not_found (this node lacks it)
  killed by the timeout                         -> TRANSIENT timeout
  no output file or an empty one; a log with neither an error nor a normal end (Gaussian/ORCA
  marker in its last lines, else cclib's metadata["success"]), i.e. cut short; a normal
  termination without an energy                 -> TRANSIENT no_output (never COMPLETED)
  the log reports an error (SCF or optimisation not converged, error termination)
                                                -> ESS with the log's own lines as the message
  a complete log cclib cannot parse             -> ESS output_not_parsable (a retry reads the same file)
Energies: cclib stores `scfenergies` in eV, converted with its own factor (27.21138505); dividing by
it gives back exactly the Hartree value printed in the log (CODATA 2018's 27.211386246 would be
3e-6 Eh off at -76 Eh). Post-HF energies are not read: `energy_hartree` is the last SCF energy.
ORCA logs cclib cannot parse (all of ORCA 6 with cclib 1.8.1) are read by engines.orca_output
instead; `data.parser` says which reader was used.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from pipe_rules.contracts.xyz import xyz_dict_from_atoms
from pipe_rules.engines.base import EngineFailure, EngineResult, FailureClass, InvalidRequest, check_request
from pipe_rules.engines.common import (
    IMAGINARY_THRESHOLD_CM1,
    check_known_options,
    frequency_data,
    number_option,
    parse_system,
)

ESS, TRANSIENT = FailureClass.ESS, FailureClass.TRANSIENT
OPTIONS = {"command": None, "input_template": None, "output": None, "stdout": "program.stdout",
           "input_file": "input.inp", "program": None, "timeout_s": 86400.0,
           "imaginary_threshold_cm1": IMAGINARY_THRESHOLD_CM1}
OPT_FAMILIES = frozenset({"conf_opt", "ts_opt"})
# (pattern in the log, reason): the program's own words for an engine error
LOG_ERRORS = (
    (r"Number of steps exceeded|Optimization stopped|optimization did not converge", "opt_not_converged"),
    (r"Convergence failure -- run terminated|SCF NOT CONVERGED|SCF not fully converged", "scf_not_converged"),
    (r"Error termination|finished by error termination|ORCA TERMINATED ABNORMALLY|aborting the run",
     "error_termination"),
)
NORMAL_END = re.compile(r"Normal termination of Gaussian|ORCA TERMINATED NORMALLY")


class ExternalEngine:
    name = "external"
    families = frozenset({"conf_opt", "conf_sp", "species_sp", "species_freq", "ts_opt"})
    levels = None  # the input template decides the method; {level} can put it there

    def version(self) -> str:
        return f"cclib {metadata.version('cclib')}"

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult:
        check_request(self, family, level)
        settings = _options(options)
        xyz, charge, multiplicity = parse_system("external", payload)
        workdir = Path(workdir)
        coords = "\n".join(f"{s:<2} {x:15.8f} {y:15.8f} {z:15.8f}"
                           for s, (x, y, z) in zip(xyz["symbols"], xyz["coords"]))
        text = settings["input_template"]
        for key, value in (("{xyz}", coords), ("{charge}", str(charge)), ("{multiplicity}", str(multiplicity)),
                           ("{cores}", str(max(1, int(cores or 1)))), ("{level}", level)):
            text = text.replace(key, value)
        (workdir / settings["input_file"]).write_text(text if text.endswith("\n") else text + "\n")
        argv = [part.replace("{input}", settings["input_file"]) for part in settings["command"]]
        code = _execute(argv, workdir, settings)
        result = parse_output(workdir / settings["output"], family, settings, exit_code=code)
        if family not in OPT_FAMILIES:
            result.geometry = payload["xyz"]  # programs reorient; single points keep the staged geometry
        result.native_outputs = [name for name in dict.fromkeys(
            [settings["input_file"], settings["output"], settings["stdout"], "program.stderr"])
            if (workdir / name).is_file()]
        return result


def parse_output(path: Path, family: str, settings: dict | None = None, exit_code: int = 0) -> EngineResult:
    """Classify and read one program log (see the module docstring); raises EngineFailure."""
    settings = settings or {"program": "program", "imaginary_threshold_cm1": IMAGINARY_THRESHOLD_CM1}
    program, path = settings["program"], Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise EngineFailure(TRANSIENT, "no_output", f"{program} (exit code {exit_code}) wrote no output "
                            f"{path.name!r}; check options.output and program.stderr in the task folder")
    log_text = path.read_text(errors="replace")
    problem = _log_error(log_text)
    if problem:
        raise EngineFailure(ESS, problem[0], f"{program} (exit code {exit_code}): {problem[1]}")
    ended_normally = bool(NORMAL_END.search("\n".join(log_text.splitlines()[-25:])))
    data, parser = _parsed(path, program, ended_normally, log_text)
    if exit_code != 0 or not (ended_normally or data.metadata.get("success")):
        raise EngineFailure(TRANSIENT, "no_output", f"{program} log {path.name!r} ends without normal termination "
                            f"and without an error message (exit code {exit_code}): killed, out of disk or memory?")
    energies = getattr(data, "scfenergies", None)
    if energies is None or len(energies) == 0:
        raise EngineFailure(TRANSIENT, "no_output", f"{program} log {path.name!r} says normal termination "
                            "but cclib found no SCF energy in it")
    from cclib.parser.utils import convertor

    energy = float(convertor(float(energies[-1]), "eV", "hartree"))
    from ase.data import chemical_symbols

    geometry = xyz_dict_from_atoms([chemical_symbols[int(z)] for z in data.atomnos], data.atomcoords[-1])
    info: dict[str, Any] = {"program": program, "exit_code": exit_code, "parser": parser,
                            "package_version": str(data.metadata.get("package_version", ""))}
    if family in OPT_FAMILIES:
        done = getattr(data, "optdone", None)
        if not (done if isinstance(done, bool) else bool(done)):
            raise EngineFailure(ESS, "opt_not_converged", f"{program} log {path.name!r} has no converged "
                                "optimisation; for conf_opt/ts_opt the input template must request one")
        info["n_steps"] = max(len(data.atomcoords) - 1, 0)
    if family in ("species_freq", "ts_opt"):
        freqs = getattr(data, "vibfreqs", None)
        if freqs is None or len(freqs) == 0:
            raise EngineFailure(ESS, "no_frequencies", f"{program} log {path.name!r} has no vibrational "
                                f"frequencies; {family} needs a frequency job in the input template")
        freq = frequency_data(freqs, settings["imaginary_threshold_cm1"])
        if family == "ts_opt":
            if freq["n_imaginary"] != 1:
                raise EngineFailure(ESS, "wrong_imaginary_count", f"the saddle point needs exactly one imaginary "
                                    f"mode stronger than {settings['imaginary_threshold_cm1']:g} cm-1, found "
                                    f"{freq['n_imaginary']}")
            freq = {"imaginary_frequency_cm1": freq["frequencies_cm1"][0], **freq}
        info.update(freq)
    return EngineResult(energy_hartree=energy, geometry=geometry, converged=True, data=info)


def _parsed(path: Path, program: str, ended_normally: bool, log_text: str):
    """(cclib-like data, parser name): cclib, or the ORCA reader for an ORCA log cclib fails on."""
    from pipe_rules.engines.orca_output import is_orca_output

    try:
        return _cclib(path, program, ended_normally), f"cclib {metadata.version('cclib')}"
    except EngineFailure:
        if not is_orca_output(log_text):
            raise
    return _orca(path, program), "pipe_rules.engines.orca_output"


def _orca(path: Path, program: str) -> Any:
    """The ORCA reader's result with the attribute names of cclib's data (scfenergies in eV...)."""
    from types import SimpleNamespace

    from cclib.parser.utils import convertor

    from pipe_rules.engines.orca_output import read_orca_output

    try:
        out = read_orca_output(path)
    except ValueError as exc:
        raise EngineFailure(TRANSIENT, "no_output", f"{program} log {path.name!r}: {exc}") from None
    from ase.data import atomic_numbers

    data = SimpleNamespace(metadata={"package_version": out.version, "success": out.terminated_normally},
                           atomnos=[atomic_numbers[s] for s in out.symbols], atomcoords=[out.coords] * out.n_geometries,
                           optdone=out.optimisation_converged)
    if out.energy_hartree is not None:
        data.scfenergies = [convertor(out.energy_hartree, "hartree", "eV")]
    if out.frequencies_cm1:
        data.vibfreqs = out.frequencies_cm1
    return data


def _cclib(path: Path, program: str, ended_normally: bool):
    """Parsed data. A parser crash on a complete log is ESS (a retry reads the same file); on a log
    cut short it is the truncation's fault (TRANSIENT)."""
    from cclib.io import ccopen

    log = ccopen(str(path), loglevel=logging.CRITICAL)  # ccread would also try an Open Babel fallback
    if log is None:
        raise EngineFailure(TRANSIENT, "no_output", f"cclib does not recognise {path.name!r} as the log of a "
                            f"program it reads; is options.output the {program} log?")
    try:
        return log.parse()
    except Exception as exc:  # noqa: BLE001 - cclib's parsers fail with IndexError & co. on formats they lag behind
        if not ended_normally:
            raise EngineFailure(TRANSIENT, "no_output", f"{program} log {path.name!r} is cut short and cclib "
                                f"cannot parse it ({type(exc).__name__}: {exc})") from None
        raise EngineFailure(ESS, "output_not_parsable", f"cclib {metadata.version('cclib')} cannot parse "
                            f"{path.name!r} ({type(exc).__name__}: {exc}); a newer cclib may read this "
                            "program version") from None
    finally:
        log.inputfile.close()


def _log_error(text: str) -> tuple[str, str] | None:
    """(reason, the log's own lines) for the first known error pattern, or None."""
    lines = text.splitlines()
    for pattern, reason in LOG_ERRORS:
        hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        if hits:
            first = hits[0]
            context = [line.strip() for line in lines[max(0, first - 2):first + 2] if line.strip()]
            return reason, " | ".join(context)[:600]
    return None


def _execute(argv: list[str], workdir: Path, settings: dict) -> int:
    """Run in its own process group so a timeout or the worker's SIGTERM stops its children too."""
    program = settings["program"]
    with open(workdir / settings["stdout"], "wb") as out, open(workdir / "program.stderr", "wb") as err:
        try:
            proc = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise EngineFailure(TRANSIENT, "engine_not_found",
                                f"{program}: cannot execute {argv[0]!r} on {os.uname().nodename} "
                                f"({type(exc).__name__}: {exc.strerror or exc}); install it or load its module "
                                "on this node, or fix options.command") from None
        try:
            return proc.wait(timeout=settings["timeout_s"])
        except subprocess.TimeoutExpired:
            raise EngineFailure(TRANSIENT, "timeout", f"{program} ran longer than options.timeout_s="
                                f"{settings['timeout_s']:g} s and was killed") from None
        finally:
            if proc.poll() is None:
                _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _options(options: dict) -> dict[str, Any]:
    settings = check_known_options("external", options, OPTIONS)
    command = settings["command"]
    if isinstance(command, str):
        raise InvalidRequest("external engine: option command must be a list of argv strings such as "
                         '["g16", "{input}"], not a shell string')
    if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
        raise InvalidRequest(f"external engine: option command must be a non-empty list of strings, got {command!r}")
    template = settings["input_template"]
    if not isinstance(template, str) or "{xyz}" not in template:
        raise InvalidRequest("external engine: option input_template must be the input file's text with an {xyz} "
                         "placeholder where the geometry goes")
    for key in ("output", "stdout", "input_file"):
        name = settings[key]
        if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise InvalidRequest(f"external engine: option {key} must be a file name inside the task folder, "
                             f"got {name!r}")
    settings["program"] = str(settings["program"] or Path(command[0]).name)
    settings["timeout_s"] = number_option("external", "timeout_s", settings["timeout_s"])
    settings["imaginary_threshold_cm1"] = number_option("external", "imaginary_threshold_cm1",
                                                        settings["imaginary_threshold_cm1"], inclusive=True)
    return settings


ENGINE = ExternalEngine()
