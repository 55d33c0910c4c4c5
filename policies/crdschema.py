"""A CRD's structural schema written from the pydantic model that validates the object, so that the two
cannot disagree: types, required fields, bounds, lengths, patterns, enums and every description come from
one place. Covers the shapes Hearth's models use (nested models, str, int, bool, lists, Literal, optional
fields, int-or-string unions and free-form objects); anything else is refused loudly, not guessed."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

Schema = dict[str, Any]

# pydantic's constraint -> (its attribute, the schema's keyword for numbers, for strings, for arrays)
_BOUNDS = {
    annotated_types.Ge: ("ge", "minimum", "minimum", "minimum"),
    annotated_types.Le: ("le", "maximum", "maximum", "maximum"),
    annotated_types.MinLen: ("min_length", "minLength", "minLength", "minItems"),
    annotated_types.MaxLen: ("max_length", "maxLength", "maxLength", "maxItems"),
}


def model_schema(model: type[BaseModel]) -> Schema:
    """The object schema of `model`: properties by alias, `required` for fields without a default."""
    properties: Schema = {}
    required = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        properties[key] = field_schema(field)
        if field.is_required():
            required.append(key)
    schema: Schema = {"type": "object"}
    if required:
        schema["required"] = required
    schema["properties"] = properties
    return schema


def field_schema(field: FieldInfo) -> Schema:
    schema = type_schema(field.annotation)
    for constraint in field.metadata:
        for kind, (attribute, number, text, items) in _BOUNDS.items():
            if isinstance(constraint, kind):
                keyword = {"array": items, "string": text}.get(schema.get("type", ""), number)
                schema[keyword] = getattr(constraint, attribute)
        pattern = getattr(constraint, "pattern", None)
        if pattern is not None:
            schema["pattern"] = pattern
    if field.description:
        schema["description"] = " ".join(field.description.split())
    return schema


def type_schema(annotation: Any) -> Schema:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if len(kept) == 1:
            return type_schema(kept[0])
        kinds = {type_schema(a).get("type") for a in kept}
        if kinds == {"integer", "string"}:
            return {"x-kubernetes-int-or-string": True}
        raise TypeError(f"no structural schema for the union {annotation}")
    if origin is Literal:
        if not all(isinstance(a, str) for a in args):
            raise TypeError(f"only string literals have a schema here: {annotation}")
        return {"type": "string", "enum": list(args)}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0])}
    if origin is dict:
        if args[1] is str:
            return {"type": "object", "additionalProperties": {"type": "string"}}
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if origin is typing.Annotated:
        return type_schema(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_schema(annotation)
    simple = {str: "string", bool: "boolean", int: "integer"}
    if annotation in simple:
        return {"type": simple[annotation]}
    raise TypeError(f"no structural schema for {annotation}")
