"""What every file model shares: pydantic v2, unknown fields refused, one-line errors, clean schemas.

A model is the one source of a file's shape: it validates what is read, and it generates the JSON
schema other programs read (`pipe-rules schemas --update` writes them into contracts/schemas/).
Scalars are strict (a string is never turned into a number, 1.0 is not an integer), so the files
mean what they say; lists may stand where the model keeps tuples.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.json_schema import GenerateJsonSchema

from pipe_rules.contracts.errors import PipeRulesError

DRAFT = "https://json-schema.org/draft/2020-12/schema"


class FileModel(BaseModel):
    """Base of every model written to or read from a file: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)


def checked_as_given(value: Any, handler) -> Any:
    """A WrapValidator: check a mapping against its model but keep it as given, a plain dict (hot
    paths and fingerprints read the mapping as written, not a model's re-serialisation)."""
    handler(value)
    return value


class CleanSchema(GenerateJsonSchema):
    """Schemas as a person would write them: no generated titles, no `default: null` for keys that
    are simply optional, and the draft named."""

    def generate(self, schema, mode="validation"):
        document = super().generate(schema, mode=mode)
        document = _clean(document)
        return {"$schema": DRAFT, **document}


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _clean(v) for k, v in node.items()
                if not (k == "default" and v is None) and not (k == "title" and isinstance(v, str))}
        if isinstance(node.get("description"), str):
            node["description"] = " ".join(node["description"].split())
        return node
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def json_schema(model: type[BaseModel], schema_id: str, title: str) -> dict[str, Any]:
    document = model.model_json_schema(schema_generator=CleanSchema)
    document.pop("title", None)
    return {"$schema": document.pop("$schema"), "$id": f"https://pipe-rules/schemas/{schema_id}.schema.json",
            "title": title, **document}


# ----------------------------------------------------------------------------- one-line errors

def parse(model: type[BaseModel], data: Any, error: type[PipeRulesError], path: Any = None, prefix: str = "") -> Any:
    """`model` validated from `data`, or `error` naming the file and the field (under `prefix`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, text = first_problem(exc)
        where = f"{prefix}.{field}" if prefix and field != "(top level)" else prefix or field
        raise error(text, path=path, field=where) from None


def problem(model: type[BaseModel], data: Any) -> tuple[str, str] | None:
    """(field path, message) of what makes `data` no valid `model`, or None."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return first_problem(exc)
    return None


def first_problem(error: ValidationError, prefix: tuple = ()) -> tuple[str, str]:
    """(field path, message) of the most specific violation, in the words the CLI prints."""
    details = error.errors(include_url=False)
    # the deepest location first (a wrong value inside a list beats "the list is wrong"); then by name
    details.sort(key=lambda d: (-len(d["loc"]), [str(p) for p in d["loc"]]))
    detail = _preferred(details)
    if detail["type"] == "extra_forbidden":  # the last part is the unknown key itself, whatever it looks like
        parent = [*prefix, *(p for p in detail["loc"][:-1] if not _is_branch_tag(p))]
        return ".".join(map(str, parent)) or "(top level)", f"unknown field(s) ({detail['loc'][-1]!r} was unexpected)"
    loc = [*prefix, *(p for p in detail["loc"] if not _is_branch_tag(p))]
    return ".".join(map(str, loc)) or "(top level)", message(detail)


def _preferred(details: list[dict]) -> dict:
    """A union of types (str | mapping) reports one error per branch: keep the first of the deepest."""
    return details[0]


def _is_branch_tag(part: Any) -> bool:
    """pydantic names union branches in the location ('str', 'dict[str,any]', 'function-after[...]')."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "list", "dict") or "[" in part)


def message(detail: dict) -> str:
    kind, ctx, value = detail["type"], detail.get("ctx") or {}, detail.get("input")
    shown = _shown(value)
    if kind == "missing":
        return "is required"
    if kind in ("literal_error", "enum"):
        allowed = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{shown} is not one of: {allowed}"
    bounds = {"greater_than_equal": ("less than the minimum of", "ge"),
              "greater_than": ("less than or equal to the minimum of", "gt"),
              "less_than_equal": ("greater than the maximum of", "le"),
              "less_than": ("greater than or equal to the maximum of", "lt")}
    if kind in bounds:
        words, key = bounds[kind]
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number"
        return f"{shown} is {words} {ctx.get(key)}"
    if kind == "finite_number":
        return f"{value} is not a finite number"
    if kind in ("too_short", "too_long"):
        words = "at least" if kind == "too_short" else "at most"
        limit = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        what = "character" if isinstance(value, str) else "item"
        return f"{shown} has {ctx.get('actual_length', len(value) if hasattr(value, '__len__') else '?')} " \
               f"{what}s, needs {words} {limit}"
    if kind in ("string_too_short", "string_too_long"):
        words = "at least" if kind == "string_too_short" else "at most"
        limit = ctx.get("min_length") if kind == "string_too_short" else ctx.get("max_length")
        return f"{shown} needs {words} {limit} character{'s' if limit != 1 else ''}"
    if kind == "string_pattern_mismatch":
        return f"{shown} does not match {ctx.get('pattern')!r}"
    types = {"string_type": "string", "int_type": "integer", "float_type": "number", "bool_type": "boolean",
             "dict_type": "mapping", "list_type": "list", "tuple_type": "list", "model_type": "mapping",
             "model_attributes_type": "mapping", "int_from_float": "integer", "is_instance_of": "mapping"}
    if kind in types:
        return f"{shown} is not of type {types[kind]!r}"
    if kind == "value_error":
        return str(ctx.get("error", detail["msg"]))
    if kind == "set_item_not_hashable" or kind == "list_unique":
        return f"{shown} has repeated items"
    return detail["msg"]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
