"""The README's config reference is generated from the schema that validates configs: it must
match the generator's output, describe every key, and state the defaults the code applies."""

from __future__ import annotations

import pytest
from conftest import REPO, pipe_rules_cli

from pipe_rules.cli.config_reference import (
    END,
    START,
    current_block,
    missing_descriptions,
    render_reference,
    replace_block,
    update_file,
)
from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.cli.schema_files import load as schema
from pipe_rules.inputs.run_settings import RunSettings

REGENERATE = "pipe-rules config-reference --update README.md"


def test_readme_block_matches_the_schema():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert current_block(readme) == render_reference().rstrip("\n"), (
        f"README's config reference is out of date with pipe_rules/contracts/schemas/config.schema.json: run `{REGENERATE}`")


def test_every_key_of_the_schema_is_in_the_reference_with_a_description():
    doc = schema("config")
    text = render_reference(doc)
    keys = [*doc["properties"], *doc["$defs"]["RunSettings"]["properties"], *doc["$defs"]["RunConfig"]["properties"],
            *doc["$defs"]["Species"]["properties"], *doc["$defs"]["Reaction"]["properties"]]
    for key in keys:
        assert f"| `{key}` |" in text
    assert missing_descriptions(doc) == [], "give these keys a 'description' in config.schema.json"


def test_defaults_stated_by_the_schema_are_the_ones_the_code_applies():
    """One source: the schema's defaults are the model's, and a run given nothing gets exactly them."""
    settings = schema("config")["$defs"]["RunSettings"]["properties"]
    applied = RunSettings()
    stated = {key: prop["default"] for key, prop in settings.items() if "default" in prop}
    assert set(stated) >= {"engine", "level", "cores", "memory_mb", "walltime_min", "shards", "lease_s", "n_images"}
    for key, value in stated.items():
        code = getattr(applied, key)
        assert (list(code) if isinstance(code, tuple) else code) == value, key
    text = render_reference()
    assert "| `walltime_min` | integer, >= 1 | `60` |" in text
    assert "| `campaign` | string, matching" in text and "| required |" in text


def test_render_is_table_safe_and_the_update_command_rewrites_only_the_block(tmp_path):
    doc = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string", "description": "runs go to <run_root>/x | y"},
        "b": {"type": "array", "items": {"enum": ["p", "q"]}, "minItems": 1, "default": ["p"], "description": "b."}}}
    for name in ("RunSettings", "RunConfig", "Species", "Reaction"):
        doc.setdefault("$defs", {})[name] = {"properties": {}}
    text = render_reference(doc)
    assert "| `a` | string | required | runs go to &lt;run_root>/x \\| y |" in text
    assert "| `b` | list of (one of: p, q), at least 1 item | `[p]` | b. |" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{START}\nstale\n{END}\n\nafter\n")
    proc = pipe_rules_cli("config-reference", "--update", str(readme), check=True)
    assert "rewritten" in proc.stdout
    assert readme.read_text() == f"# title\n\n{START}\n{render_reference().rstrip()}\n{END}\n\nafter\n"
    assert update_file(readme) is False  # idempotent
    with pytest.raises(PipeRulesError, match="needs exactly one"):
        replace_block("no markers here", "x")
