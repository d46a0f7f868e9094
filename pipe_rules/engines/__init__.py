"""Engine registry. Engine modules are imported on first use: importing tblite or RDKit costs a
second that the noop engine (benchmarks) and the CLI should not pay."""

from __future__ import annotations

from importlib import import_module

from pipe_rules.engines.base import Engine, EngineFailure, EngineResult, FailureClass, InvalidRequest

__all__ = ["Engine", "EngineFailure", "EngineResult", "FailureClass", "InvalidRequest", "UnknownEngineError",
           "engine_version", "get_engine", "known_engines"]

# engine name -> module in this package that defines ENGINE
_MODULES = {"noop": "noop", "tblite": "tblite.engine", "pyscf": "pyscf_engine", "external": "external"}


class UnknownEngineError(InvalidRequest):
    pass


def known_engines() -> list[str]:
    return sorted(_MODULES)


def get_engine(name: str) -> Engine:
    if name not in _MODULES:
        raise UnknownEngineError(f"unknown engine {name!r}; known engines: {', '.join(known_engines())}. "
                                 "Set 'engine' in the campaign config to one of these.")
    return import_module(f".{_MODULES[name]}", __name__).ENGINE


_VERSIONS: dict[str, str] = {}


def engine_version(engine: Engine) -> str:
    """The engine's version, asked once per process: importlib.metadata costs ~0.6 ms a call, and a
    worker records it in every result."""
    if engine.name not in _VERSIONS:
        _VERSIONS[engine.name] = engine.version()
    return _VERSIONS[engine.name]
