"""read_json: pipe_rules' own files go through orjson, every other file through the json module;
both accept what they always did and word a broken file the same way."""

from __future__ import annotations

import math

import pytest

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.fsio import compact_json, read_json


@pytest.mark.parametrize("own", [False, True])
def test_a_file_orjson_refuses_but_json_accepts_still_reads(tmp_path, own):
    path = tmp_path / "result.json"
    path.write_text('{"energy": NaN, "big": 123456789012345678901234567890, "s": "\\ud800"}')
    data = read_json(path, "task result", own=own)
    assert math.isnan(data["energy"]) and data["s"] == "\ud800"
    assert data["big"] == 123456789012345678901234567890 and isinstance(data["big"], int)


def test_a_user_file_keeps_an_integer_beyond_64_bits_exact(tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text('{"n": 18446744073709551617}')  # 2**64 + 1: orjson would read a float
    assert read_json(path, "tasks file") == {"n": 18446744073709551617}


def test_an_own_file_reads_back_what_compact_json_wrote(tmp_path):
    data = {"energy_hartree": -1.0000000000000002, "geometry": {"coords": [[0.0, -0.0, 1e-300]]}, "n": 2**63 - 1}
    path = tmp_path / "result.json"
    path.write_bytes(compact_json(data))
    assert read_json(path, "task result", own=True) == data


@pytest.mark.parametrize("own", [False, True])
@pytest.mark.parametrize("content, message", [
    (b'{"task_id": "a",', "task spec is corrupt or truncated (invalid JSON at line 1 column 17); fix it"),
    (b'{"task_id": "\xff"}', "task spec is corrupt (not UTF-8 text at byte 13); fix it"),
])
def test_a_broken_file_gets_the_same_line_either_way(tmp_path, own, content, message):
    path = tmp_path / "spec.json"
    path.write_bytes(content)
    with pytest.raises(StateError) as caught:
        read_json(path, "task spec", "; fix it", own=own)
    assert caught.value.message == message and caught.value.path == path
