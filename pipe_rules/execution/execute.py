"""Run one claimed task: load its spec, call the engine in its own attempt folder, classify the outcome.

Everything after the claim happens inside one try, so a task can never be left RUNNING because
its spec was corrupt (ARC F6); its attempt folder is made by the claim (store/attempts.py), so a
folder that cannot be made fails the claim and the task stays PENDING. The engine runs with the attempt's
work folder as cwd, and the worker's cwd is restored afterwards, also on errors (F4).
"""

from __future__ import annotations

import os
import traceback
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from pipe_rules.contracts.errors import SpecError
from pipe_rules.contracts.result import ResultRecord
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.engines import engine_version, get_engine
from pipe_rules.engines.base import EngineFailure, EngineResult, FailureClass, InvalidRequest
from pipe_rules.execution.identity import worker_identity
from pipe_rules.execution.metering import TaskMeter
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import Claim
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import load_spec


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT (walltime, scancel): release the task, then exit."""


class OwnershipInterrupted(BaseException):
    """Raised in the main thread when the heartbeat found the running task taken away: stop the engine."""


@dataclass
class Outcome:
    state: TaskState
    result: ResultRecord
    failure_class: str | None = None
    reason: str | None = None
    terminated: bool = False


def _classify(spec: TaskSpec, result: EngineResult) -> tuple[TaskState, str | None, str | None]:
    """A converged run whose numbers are missing is never COMPLETED (ARC F3/F5)."""
    if not result.converged:
        return TaskState.FAILED_ESS, "ess", "not_converged"
    if result.energy_hartree is None:
        return TaskState.FAILED_RETRYABLE, "transient", "no_output"
    if spec.family in ("conf_opt", "ts_opt") and not result.geometry:
        return TaskState.FAILED_RETRYABLE, "transient", "no_output"
    return TaskState.COMPLETED, None, None


def execute(layout: RunLayout, run_id: str, claim: Claim, shard: str | None,
            guard: AbstractContextManager = nullcontext()) -> Outcome:
    """`guard` is entered around the engine call only: signals may interrupt the engine, nothing else.

    The attempt's cost (CPU, the task's own peak memory) goes into result.json; the worker copies it
    into its cost ledger once the result is on disk."""
    meter = TaskMeter()
    attempt_dir = layout.attempt_dir(claim.task_id, claim.attempt_index)
    base = dict(run_id=run_id, task_id=claim.task_id, attempt_index=claim.attempt_index,
                worker=worker_identity(claim.worker_id, shard), family="", owner_type="", owner_key="",
                engine="", level="")
    spec: TaskSpec | None = None
    engine_result: EngineResult | None = None
    state, fclass, reason, message = TaskState.FAILED_RETRYABLE, "transient", "worker_error", None
    terminated = False
    cwd = os.getcwd()
    moved = False
    try:
        spec = load_spec(layout.spec(claim.task_id))
        base.update(family=spec.family, owner_type=spec.owner_type, owner_key=spec.owner_key,
                    engine=spec.engine, level=spec.level, ingestion_metadata=spec.ingestion_metadata)
        engine = get_engine(spec.engine)
        base["engine_version"] = engine_version(engine)
        workdir = attempt_dir  # engine files sit beside result.json; one folder less to create per task
        if getattr(engine, "writes_files", True):  # an engine that writes no file needs no cwd (noop)
            os.chdir(workdir)
            moved = True
        with guard:
            engine_result = engine.run(spec.family, spec.level, spec.input_payload, spec.options, workdir,
                                       spec.cores)
        state, fclass, reason = _classify(spec, engine_result)
    except EngineFailure as exc:
        ess = exc.failure_class is FailureClass.ESS
        state = TaskState.FAILED_ESS if ess else TaskState.FAILED_RETRYABLE
        fclass, reason, message = exc.failure_class.value, exc.reason, exc.message
        if exc.last_geometry is not None:  # where it stopped: never converged, never COMPLETED
            engine_result = EngineResult(exc.last_energy_hartree, exc.last_geometry, converged=False)
    except SpecError as exc:  # retrying an invalid spec cannot help
        state, fclass, reason, message = TaskState.FAILED_TERMINAL, "terminal", "invalid_spec", str(exc)
    except InvalidRequest as exc:  # unknown engine, family, level or option; malformed payload
        state, fclass, reason, message = TaskState.FAILED_TERMINAL, "terminal", "unsupported", str(exc)
    except Terminated as exc:
        state, fclass, reason, message = TaskState.FAILED_RETRYABLE, "transient", "terminated", str(exc)
        terminated = True
    except OwnershipInterrupted as exc:  # finish() then finds the task gone and writes nothing
        state, fclass, reason, message = TaskState.FAILED_RETRYABLE, "transient", "ownership_lost", str(exc)
    except MemoryError:
        state, fclass, reason, message = TaskState.FAILED_RETRYABLE, "transient", "out_of_memory", "MemoryError"
    except OSError as exc:  # disk full, lost mount...: the environment, not the input
        state, fclass, reason, message = TaskState.FAILED_RETRYABLE, "transient", f"os_error_{exc.errno}", str(exc)
    except Exception as exc:  # noqa: BLE001 - an engine bug (any other error): keep the traceback, retry
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if attempt_dir.is_dir():
            (attempt_dir / "traceback.txt").write_text(traceback.format_exc())
    finally:
        if moved:
            os.chdir(cwd)
    timings, resources = meter.read(spec.cores if spec else 0, spec.memory_mb if spec else 0)
    result = _record(base, timings, resources, state, fclass, reason, message, engine_result)
    return Outcome(state, result, fclass, reason, terminated)


def _record(base: dict, timings: dict, resources: dict, state: TaskState, fclass, reason, message,
            engine_result: EngineResult | None) -> ResultRecord:
    record = ResultRecord(
        **base, status="COMPLETED" if state is TaskState.COMPLETED else "FAILED", outcome=state.value,
        failure_class=fclass, failure_reason=reason, engine_message=message, timings=timings,
        resources=resources,
    )
    if engine_result is not None:
        record.energy_hartree = engine_result.energy_hartree
        record.geometry = engine_result.geometry
        record.converged = bool(engine_result.converged)
        record.data = engine_result.data
        record.native_outputs = list(engine_result.native_outputs)
    return record
