"""What a call to a model asks for: which model, whether it streams, and its body with the model renamed
to the name the model's server serves. A JSON body (chat, completions, embeddings, responses, rerank,
score) or a multipart form (audio transcriptions and translations, where `model` and `stream` are form
fields). Pure: bytes in, a Call or a BadCall out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

FORM_FIELDS = frozenset({"model", "stream"})


class BadCall(Exception):
    """A body the front door cannot route: `code` and the message go to the client as a 400."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class Call:
    model: str
    stream: bool
    body: bytes
    payload: dict[str, Any] | None  # the JSON object (None for a form)
    model_span: tuple[int, int] | None  # where a form's model value lies in the body

    def renamed(self, name: str) -> bytes:
        """The body asking for `name` instead (only the model's value changes)."""
        if name == self.model:
            return self.body
        if self.payload is not None:
            return orjson.dumps({**self.payload, "model": name})
        assert self.model_span is not None
        start, end = self.model_span
        return self.body[:start] + name.encode() + self.body[end:]


def read_call(body: bytes, content_type: str | None) -> Call:
    media, options = parse_options_header(content_type or "")
    if media == b"multipart/form-data":
        return _form(body, options.get(b"boundary"))
    return _json(body)


def _json(body: bytes) -> Call:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadCall("request body is not valid JSON", "invalid_json") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
        raise BadCall("request body must be a JSON object with a string `model`", "missing_model")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):  # "false" is a string, and truthy: refuse it
        kind = type(stream).__name__
        raise BadCall(f"Invalid type for 'stream': expected a boolean, but got {kind} instead", "invalid_type")
    return Call(payload["model"], bool(stream), body, payload, None)


def _form(body: bytes, boundary: bytes | None) -> Call:
    if not boundary:
        raise BadCall("a multipart/form-data body needs a boundary in its Content-Type", "invalid_form")
    spans = form_spans(body, boundary, FORM_FIELDS)
    if "model" not in spans:
        raise BadCall("the form has no `model` field (or it is empty)", "missing_model")
    start, end = spans["model"]
    try:
        model = body[start:end].decode()
    except UnicodeDecodeError:
        raise BadCall("the form's `model` field is not UTF-8 text", "invalid_form") from None
    stream = False
    if "stream" in spans:
        value = body[slice(*spans["stream"])].strip().lower()
        if value not in (b"true", b"false"):
            raise BadCall("the form's `stream` field must be true or false", "invalid_type")
        stream = value == b"true"
    return Call(model, stream, body, None, (start, end))


def form_spans(body: bytes, boundary: bytes, wanted: frozenset[str]) -> dict[str, tuple[int, int]]:
    """Where the values of the `wanted` text fields lie in a multipart body (the first of each name),
    parsed by python-multipart from the whole body at once so that its offsets are the body's."""
    spans: dict[str, tuple[int, int]] = {}
    ended: list[bool] = []
    part: dict[str, Any] = {}
    header = [b"", b""]

    def begin() -> None:
        part.clear()
        part.update(headers={}, start=None, end=None)

    def header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def header_end() -> None:
        part["headers"][header[0].lower()] = header[1]
        header[0] = header[1] = b""

    def data(chunk: bytes, start: int, end: int) -> None:
        if part["start"] is None:
            part["start"] = start
        part["end"] = end

    def part_end() -> None:
        _, params = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode(errors="replace")
        if name in wanted and name not in spans and b"filename" not in params and part["start"] is not None:
            spans[name] = (part["start"], part["end"])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_part_data": data,
            "on_part_end": part_end,
            "on_end": lambda: ended.append(True),
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as bad:
        raise BadCall(f"the multipart form is malformed: {bad}", "invalid_form") from None
    if not ended:  # cut short: a value read now could be half of what was sent
        raise BadCall("the multipart form is incomplete: it has no closing boundary", "invalid_form")
    return spans
