"""Command-line flags generated from a service's settings model, so that each default, type, bound and
help text is written once, on the model's field.

    class Settings(BaseModel):
        port: int = Field(8080, ge=1, le=65535, description="port to listen on")
        idle: Duration = Field(600.0, description="longest silence")

    add_flags(parser, Settings)                      # --port PORT, --idle IDLE (help ends "(default 10m)")
    settings = settings_from(parser, args, Settings)  # pydantic validates; a bad value is a usage error

Conventions: a field becomes `--field-name` (or `--NAME` with `json_schema_extra={"name": NAME}`); a `bool`
is a switch; a tuple or list repeats (`action=append`);
a `Literal` gives the choices; `json_schema_extra={"flag": False}` keeps a field off the command line;
`{"env": "NAME"}` lets an environment variable stand in for a flag that is not given. A flag that is not
given is not passed at all: the model's own default applies.
"""

from __future__ import annotations

import argparse
import os
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo

from policies import Collector, duration_seconds, format_duration

M = TypeVar("M", bound=BaseModel)
MAX_DURATION = 7 * 86400


def parse_duration(value: object) -> object:
    """300s, 5m, 1h30m, 250ms or plain seconds (as in the annotations), into seconds; other values pass."""
    if not isinstance(value, str):
        return value
    if value.replace(".", "", 1).isdigit():
        return float(value)
    errors = Collector()
    seconds = duration_seconds(errors, "duration", value, 0, MAX_DURATION, "30s")
    if seconds is None:
        raise ValueError(str(errors.problems[0]))
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration), "duration"]
BaseURL = Annotated[str, AfterValidator(lambda url: url.rstrip("/"))]  # joined with paths: no trailing slash


def _namespace_slash_name(value: str) -> str:
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"takes NAMESPACE/NAME of a ServiceAccount (e.g. hearth-system/hearth-scaler), not {value!r}")
    return value


ServiceAccountRef = Annotated[str, AfterValidator(_namespace_slash_name)]  # NAMESPACE/NAME (common.callers checks them)


def _extra(info: FieldInfo) -> Mapping[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, Mapping) else {}


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(info: FieldInfo) -> str | None:
    """The default as help shows it, or None when there is none worth showing."""
    if info.is_required() or info.default is None or info.default_factory is not None:
        return None
    if "duration" in info.metadata or "duration" in typing.get_args(info.annotation):
        return format_duration(float(info.default))
    if isinstance(info.default, bool | tuple | list | dict):
        return None
    return str(info.default)


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        extra = _extra(info)
        if extra.get("flag") is False:
            continue
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        help_text = info.description or ""
        shown = _shown(info)
        if shown is not None:
            help_text += f" (default {shown})"
        if extra.get("env"):
            help_text += f" (env {extra['env']})"
        annotation = info.annotation
        origin = typing.get_origin(annotation)
        if annotation is bool:
            kwargs["action"] = "store_true"
        elif origin in (tuple, list) or extra.get("repeat"):
            kwargs["action"] = "append"
        elif origin is Literal:
            kwargs["choices"] = [str(choice) for choice in typing.get_args(annotation)]
        if info.is_required():
            kwargs["required"] = True
        flag = _flag_name(extra.get("name") or name)
        if annotation is not bool:
            duration = "duration" in info.metadata
            kwargs["metavar"] = extra.get("metavar") or ("DURATION" if duration else flag[2:].upper().replace("-", "_"))
        parser.add_argument(flag, help=help_text, **kwargs)


def settings_from(parser: argparse.ArgumentParser, args: argparse.Namespace, model: type[M], **given: Any) -> M:
    """The settings from the flags that were given (and `given`); a value the model refuses is reported as
    a usage error naming the flag (argparse exits with status 2)."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        env = _extra(info).get("env")
        if name in vars(args):
            values[name] = getattr(args, name)
        elif env and os.environ.get(env):
            values[name] = os.environ[env]
    values.update(given)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            field = model.model_fields.get(where)
            flag = _flag_name(_extra(field).get("name") or where) if field is not None else "settings"
            problems.append(f"{flag}: {error.get('msg')}")
        parser.error("; ".join(problems))


def duration_arg(text: str) -> float:
    """An argparse `type` for durations, for parsers written by hand (the simulator's, as vLLM's)."""
    try:
        return float(typing.cast(float, parse_duration(text)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
