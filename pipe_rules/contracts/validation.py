"""Load the JSON schemas shipped with the package and turn violations into one-line errors.

Valid documents are checked by a compiled validator (fastjsonschema, ~10 us a spec); only an
invalid one goes through jsonschema, whose errors say best what is wrong and where.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator

FAST = ("task_spec", "result")  # hot-path schemas; config.schema uses 2020-12 keywords fastjsonschema lacks


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    text = resources.files("pipe_rules.contracts").joinpath("schemas", f"{name}.schema.json").read_text()
    return json.loads(text)


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema(name))
    return Draft202012Validator(schema(name))


@lru_cache(maxsize=None)
def _fast(name: str):
    return fastjsonschema.compile(schema(name))


def first_error(name: str, document: Any) -> tuple[str, str] | None:
    """Return (field path, message) of the most relevant violation, or None if `document` is valid."""
    if name in FAST:
        try:
            _fast(name)(document)
            return None
        except fastjsonschema.JsonSchemaException:
            pass
    errors = list(validator(name).iter_errors(document))
    if not errors:
        return None
    # An error inside a subschema also makes its properties "unevaluated": report the real one.
    specific = [e for e in errors if e.validator != "unevaluatedProperties"] or errors
    errors = sorted(specific, key=lambda e: (-len(e.absolute_path), [str(p) for p in e.absolute_path]))
    err = errors[0]
    field = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    return field, _short(err)


def _short(err) -> str:
    if err.validator == "additionalProperties":
        return err.message.replace("Additional properties are not allowed", "unknown field(s)")
    if err.validator == "enum":
        allowed = ", ".join(map(str, err.validator_value))
        return f"{err.instance!r} is not one of: {allowed}"
    # "give exactly one of" rules (a species' smiles / xyz / ts_guesses), said in words
    if err.validator == "not" and set(err.validator_value) == {"required"}:
        return f"give only one of: {', '.join(err.validator_value['required'])}"
    if err.validator == "not" and set(err.validator_value) == {"anyOf"} and all(
            set(b) == {"required"} for b in err.validator_value["anyOf"]):
        keys = dict.fromkeys(k for b in err.validator_value["anyOf"] for k in b["required"])
        return f"give at most one of: {', '.join(keys)}"
    if err.validator in ("anyOf", "oneOf") and all(set(b) == {"required"} for b in err.validator_value):
        return f"needs one of: {', '.join(k for b in err.validator_value for k in b['required'])}"
    return err.message
