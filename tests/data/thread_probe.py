"""Run one real task of an engine with `cores` and print the thread pools seen while it computed.

Started in a fresh interpreter by tests/test_engines.py, so the pools start at the process defaults.
The spy wraps the engine library's own compute call (tblite's ASE calculate, PySCF's SCF kernel)
and reads threadpoolctl's view of every loaded OpenMP and BLAS library there; nothing is replaced.
Usage: thread_probe.py ENGINE CORES WORKDIR
"""

import json
import sys
from pathlib import Path

from threadpoolctl import threadpool_info

from pipe_rules.contracts.xyz import xyz_dict_from_text
from pipe_rules.engines import get_engine

WATER = xyz_dict_from_text("O 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469")


def pools() -> list:
    """(api, threads) of every pool; a BLAS built single-threaded (PySCF ships one) has none to limit."""
    return sorted({(info["user_api"], info["num_threads"]) for info in threadpool_info()
                   if info.get("threading_layer") != "disabled"})


def spy_on(owner, name, seen):
    original = getattr(owner, name)

    def spy(*args, **kwargs):
        seen.append(pools())
        return original(*args, **kwargs)
    setattr(owner, name, spy)


engine_name, cores, workdir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
seen: list = []
if engine_name == "tblite":
    from tblite.ase import TBLite
    spy_on(TBLite, "calculate", seen)
    level = "GFN2-xTB"
else:
    from pyscf.scf import hf
    spy_on(hf.SCF, "kernel", seen)
    level = "hf/sto-3g"
before = pools()
result = get_engine(engine_name).run("species_sp", level, {"xyz": WATER, "charge": 0, "multiplicity": 1}, {},
                                     workdir, cores)
print(json.dumps({"before": before, "during": seen, "after": pools(), "energy": result.energy_hartree}))
