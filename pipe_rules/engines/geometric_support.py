"""Running geomeTRIC inside a long-lived worker without letting it take over the process's logging.

`geometric.optimize.run_optimizer` (also behind PySCF's `geometric_solver.kernel`) calls
`logging.config.fileConfig` on every run. That closes every handler in the process, replaces the
ROOT logger's handlers with its own (stderr plus `<prefix>.log`) and leaves them there: after one
task the worker's own messages would go to that task's log file, and geomeTRIC's step-by-step
output (hundreds of lines per optimisation) would flood the shard log. `quiet_logging` hands
geomeTRIC a config that writes only to a file in the task's folder and puts the worker's root
handlers back afterwards, also when geomeTRIC raises.

geomeTRIC's own failures are mapped to EngineFailure(ESS) here: they are all deterministic.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from pipe_rules.engines.base import EngineFailure, FailureClass

_LOG_INI = """[loggers]
keys=root

[handlers]
keys=file_handler

[formatters]
keys=formatter

[logger_root]
level=INFO
handlers=file_handler

[handler_file_handler]
class=geometric.nifty.RawFileHandler
level=INFO
formatter=formatter
args=(r'%(logfilename)s',)

[formatter_formatter]
format=%(message)s
"""


@contextmanager
def quiet_logging(workdir: Path) -> Iterator[str]:
    """Yield the path of a geomeTRIC logIni that logs to `<prefix>.log` only; restore the root logger
    (handlers and level) on exit. Handlers geomeTRIC closed stay usable: stream handlers ignore
    close(), file handlers reopen on their next record."""
    ini = Path(workdir) / "geometric_log.ini"
    ini.write_text(_LOG_INI)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        yield str(ini)
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        ini.unlink(missing_ok=True)


def molecule(symbols: list[str], positions_angstrom: np.ndarray):  # -> geometric.molecule.Molecule
    """A geomeTRIC Molecule with its bond topology built. Built by hand (no xyz file) it lacks the
    topology, and run_optimizer fails with "'super' object has no attribute 'molecules'"."""
    from geometric.molecule import Molecule

    mol = Molecule()
    mol.elem = list(symbols)
    mol.xyzs = [np.asarray(positions_angstrom, dtype=float).reshape(-1, 3)]
    mol.build_topology()
    return mol


def classify(exc: Exception, what: str, max_steps: int) -> EngineFailure | None:
    """EngineFailure(ESS) for geomeTRIC's own errors, None for anything else (let it propagate)."""
    from geometric.errors import Error, GeomOptNotConvergedError, GeomOptStructureError, IRCError

    if isinstance(exc, GeomOptNotConvergedError):
        return EngineFailure(FailureClass.ESS, "max_opt_cycles",
                             f"geomeTRIC {what} did not converge within {max_steps} iterations; raise "
                             "options.max_steps or start from a better geometry")
    if isinstance(exc, IRCError):
        return EngineFailure(FailureClass.ESS, "irc_failed", f"geomeTRIC IRC: {str(exc).strip()}; "
                             "the IRC needs an optimised saddle point with exactly one imaginary mode")
    if isinstance(exc, GeomOptStructureError):
        return EngineFailure(FailureClass.ESS, "bad_geometry", f"geomeTRIC {what}: {str(exc).strip()}")
    if isinstance(exc, Error):
        return EngineFailure(FailureClass.ESS, "geometric_error",
                             f"geomeTRIC {what}: {type(exc).__name__}: {str(exc).strip()}")
    return None


def last_frame(trajectory: Path) -> tuple[dict | None, float | None]:
    """(ARC xyz dict, energy in Hartree) of the last frame of geomeTRIC's `<prefix>_optim.xyz`, where
    a search that failed stopped; (None, None) if it wrote no frame. The energy is read from the
    frame's comment line ("Iteration N Energy E")."""
    from geometric.molecule import Molecule

    from pipe_rules.contracts.xyz import xyz_dict_from_atoms

    try:
        if not trajectory.is_file() or trajectory.stat().st_size == 0:
            return None, None
        frames = Molecule(str(trajectory), ftype="xyz")
        words = frames.comms[-1].split()
        energy = float(words[words.index("Energy") + 1]) if "Energy" in words[:-1] else None
        return xyz_dict_from_atoms(frames.elem, frames.xyzs[-1]), energy
    except Exception:  # noqa: BLE001 - a half-written trajectory must not hide the classified failure
        return None, None
