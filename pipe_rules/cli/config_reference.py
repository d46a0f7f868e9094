"""The README's config reference, generated from pipe_rules/contracts/schemas/config.schema.json.

The schema is generated from the models that validate a config (inputs/campaign.py), so the
reference cannot list a key the validator refuses, miss one it accepts, or state a default the code
does not apply. A test fails when the README block between the markers differs from this output:
`pipe-rules config-reference --update README.md` rewrites it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.cli.schema_files import load as schema

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
NO_DESCRIPTION = "(no description in the schema)"
# (heading, where the keys are in the schema)
SECTIONS = (
    ("Top level", ()),
    ("Run settings: in `defaults` (every run inherits them) or in a run", ("$defs", "RunSettings")),
    ("Run keys: in each entry of `runs` only", ("$defs", "RunConfig")),
    ("Species: each entry of `species` (or of the `species_file` list)", ("$defs", "Species")),
    ("Reactions: each entry of `reactions`", ("$defs", "Reaction")),
)
REF_NAMES = {"RunSettings": "run settings", "RunConfig": "run entry", "Species": "species entry",
             "Reaction": "reaction entry"}


def render_reference(config_schema: dict | None = None) -> str:
    """Markdown: one table (key, type, default, description) per section."""
    doc = config_schema or schema("config")
    # no double hyphen inside an HTML comment (invalid there): the command is named in the README text
    lines = [("<!-- generated from pipe_rules/contracts/schemas/config.schema.json (itself generated from the models"
              " in pipe_rules/inputs/campaign.py) by pipe-rules config-reference; edit the models, not this block -->"),
             ""]
    for heading, where in SECTIONS:
        node = _at(doc, where)
        required = set(node.get("required", ()))
        lines += [f"#### {heading}", ""]
        if node.get("description"):
            lines += [_cell(node["description"]), ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for key, prop in node.get("properties", {}).items():
            lines.append(f"| `{key}` | {_cell(type_text(prop, doc))} | {_default(key, prop, required)} "
                         f"| {_cell(prop.get('description', NO_DESCRIPTION))} |")
        lines.append("")
    return "\n".join(lines)


def missing_descriptions(config_schema: dict | None = None) -> list[str]:
    """Keys of the reference sections without a description (a test keeps this list empty)."""
    doc = config_schema or schema("config")
    return [f"{'.'.join(where) or '(top level)'}: {key}" for _, where in SECTIONS
            for key, prop in _at(doc, where).get("properties", {}).items() if not prop.get("description")]


def type_text(prop: dict, doc: dict) -> str:
    """'integer, >= 1', 'list of (forward or reverse)', 'string or mapping', ..."""
    if "$ref" in prop:
        return _ref_name(prop["$ref"])
    if "anyOf" in prop and "type" not in prop:  # a union: "string or mapping"
        return " or ".join(type_text(branch, doc) for branch in prop["anyOf"])
    refs = [part["$ref"] for part in prop.get("allOf", ()) if "$ref" in part]
    if refs and "type" not in prop:
        return "mapping of " + " and ".join(_ref_name(ref) for ref in refs)
    if "enum" in prop:
        return "one of: " + ", ".join(str(v) for v in prop["enum"])
    kinds = prop.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = " or ".join({"object": "mapping", "array": "list", "number": "number"}.get(k, k) for k in kinds)
    if kinds == ["array"] and "items" in prop:
        inner = type_text(prop["items"], doc)
        words = f"list of ({inner})" if " " in inner else f"list of {inner}"
    limits = [f"{sign} {prop[keyword]}" for keyword, sign in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                               ("maximum", "<="), ("maxLength", "length <="))
              if keyword in prop]
    low, high = prop.get("minItems"), prop.get("maxItems")
    if low is not None and low == high:
        limits.append(f"exactly {low} items")
    else:
        limits += [f"{word} {n} item{'s' if n != 1 else ''}" for word, n in (("at least", low), ("at most", high))
                   if n is not None]
    if prop.get("uniqueItems"):
        limits.append("no repeats")
    if "pattern" in prop:
        limits.append(f"matching `{prop['pattern']}`")
    return ", ".join([words, *limits])


def replace_block(text: str, block: str, where: str = "README.md") -> str:
    """`text` with everything between the markers replaced by `block`."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise PipeRulesError(f"needs exactly one {START} followed by one {END} line", path=where)
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block.rstrip()}\n{END}{tail}"


def current_block(text: str, where: str = "README.md") -> str:
    """What is between the markers now (as replace_block would have written `render_reference()`)."""
    replace_block(text, "", where)  # checks the markers
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def update_file(path: Path) -> bool:
    """Rewrite the block in `path`; True if it changed."""
    text = path.read_text(encoding="utf-8")
    new = replace_block(text, render_reference(), str(path))
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def _at(doc: dict, where: tuple[str, ...]) -> dict:
    node = doc
    for key in where:
        node = node[key]
    return node


def _ref_name(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    return REF_NAMES.get(name, f"{name} entry")


def _default(key: str, prop: dict, required: set[str]) -> str:
    if key in required:
        return "required"
    if prop.get("default") not in (None, "", {}, []):
        return f"`{_value(prop['default'])}`"
    return ""


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _cell(text: str) -> str:
    """Table-safe: pipes escaped, and '<' before a letter (GitHub would read <run_root> as an HTML tag)."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", " ".join(str(text).split()).replace("|", "\\|"))
