"""The planner groups ready tasks as staging would (one kind per run), pipes only big groups, and says why."""

from __future__ import annotations

import re

import pytest

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.contracts.xyz import xyz_dict_from_text
from pipe_rules.host.planner import DEFAULT_MIN_BATCH_SIZE, plan
from pipe_rules.inputs.config import parse_campaign

NAME = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,63}$")  # the config schema's run-name pattern


def spec(task_id: str, family: str = "conf_opt", level: str = "GFN2-xTB", cores: int = 1,
         memory_mb: int = 2000, engine: str = "tblite") -> TaskSpec:
    bond = 0.70 + (sum(map(ord, task_id)) % 500) / 1000
    return TaskSpec.create(task_id=task_id, family=family, owner_type="species", owner_key=task_id.split("_")[0],
                           engine=engine, level=level, cores=cores, memory_mb=memory_mb, walltime_min=60,
                           input_payload={"xyz": xyz_dict_from_text(f"H 0 0 0\nH 0 0 {bond:.3f}"),
                                          "charge": 0, "multiplicity": 1})


def test_alike_tasks_are_piped_and_small_groups_go_back_with_their_reason():
    confs = [spec(f"m{i}_conf_opt_0") for i in range(24)]
    sps = [spec(f"m{i}_sp", family="species_sp", level="GFN1-xTB") for i in range(3)]
    big = [spec(f"m{i}_conf_opt_1", cores=4) for i in range(10)]
    lone = [spec("m0_freq", family="species_freq")]
    tasks = [sps[0], *confs[:12], lone[0], *big, *sps[1:], *confs[12:]]  # mixed, as a scheduler sees them
    result = plan(tasks)
    assert result.min_batch_size == DEFAULT_MIN_BATCH_SIZE == 10
    assert [len(r.tasks) for r in result.runs] == [24, 10]  # in order of first appearance
    conf_run, big_run = result.runs
    assert [t.task_id for t in conf_run.tasks] == [t.task_id for t in confs]
    assert conf_run.key == {"family": "conf_opt", "engine": "tblite", "level": "GFN2-xTB", "cores": 1,
                            "memory_mb": 2000, "walltime_min": 60}
    assert re.fullmatch(r"conf_opt_tblite_GFN2-xTB_[0-9a-f]{8}", conf_run.name)
    assert big_run.name.startswith("conf_opt_tblite_GFN2-xTB_") and big_run.name != conf_run.name
    assert [t.task_id for t in result.individual] == ["m0_sp", "m0_freq", "m1_sp", "m2_sp"]  # the host's order
    assert result.reason("m5_conf_opt_0") == (f"piped: run {conf_run.name} with 24 alike tasks "
                                              "(conf_opt, tblite, GFN2-xTB, 1 core, 2000 MB, 60 min)")
    assert result.reason("m3_conf_opt_1") == (f"piped: run {big_run.name} with 10 alike tasks "
                                              "(conf_opt, tblite, GFN2-xTB, 4 cores, 2000 MB, 60 min)")
    assert result.reason("m1_sp") == ("not piped: only 3 alike tasks (species_sp, tblite, GFN1-xTB, 1 core, "
                                      "2000 MB, 60 min), below min_batch_size 10")
    assert result.reason("m0_freq") == ("not piped: only 1 alike task (species_freq, tblite, GFN2-xTB, 1 core, "
                                        "2000 MB, 60 min), below min_batch_size 10")
    assert set(result.reasons) == {t.task_id for t in tasks}


def test_threshold_is_inclusive_and_configurable():
    nine = [spec(f"a{i}_conf_opt_0") for i in range(9)]
    assert plan(nine).runs == () and len(plan(nine).individual) == 9
    assert plan(nine).reason("a0_conf_opt_0").startswith("not piped: only 9 alike tasks ")
    assert len(plan(nine + [spec("a9_conf_opt_0")]).runs) == 1  # exactly min_batch_size is piped
    small = plan(nine[:3], min_batch_size=3)
    assert len(small.runs) == 1 and small.individual == ()
    assert small.reason("a1_conf_opt_0") == (f"piped: run {small.runs[0].name} with 3 alike tasks "
                                             "(conf_opt, tblite, GFN2-xTB, 1 core, 2000 MB, 60 min)")


def test_resources_split_groups_and_names_are_stable_and_valid_run_names():
    tasks = [spec(f"b{i}_conf_opt_0", memory_mb=2000 if i % 2 else 4000) for i in range(20)]
    result = plan(tasks)
    assert sorted(r.key["memory_mb"] for r in result.runs) == [2000, 4000]
    assert [r.name for r in plan(tasks).runs] == [r.name for r in result.runs]  # same tasks, same names
    odd = plan([spec(f"c{i}", level="wB97X-D/def2-TZVP", engine="noop") for i in range(10)], prefix="arc.")
    assert re.fullmatch(r"arc\.conf_opt_noop_wB97X-D_def2-TZVP_[0-9a-f]{8}", odd.runs[0].name)
    for run in result.runs + odd.runs:  # every name is accepted as a run name by the config
        assert NAME.match(run.name)
        parse_campaign({"campaign": "x", "runs": [{"name": run.name, "family": "conf_opt", "tasks_file": "t.json"}]})


def test_bad_input_is_one_line():
    with pytest.raises(PipeRulesError) as err:
        plan([spec("d0"), spec("d1"), spec("d0")])
    assert str(err.value) == "field 'tasks.2.task_id': task id 'd0' is given twice"
    with pytest.raises(PipeRulesError) as err:
        plan([spec("d0")], min_batch_size=0)
    assert str(err.value) == "field 'min_batch_size': 0 must be at least 1"
