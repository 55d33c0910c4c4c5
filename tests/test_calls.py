"""Reading what a call asks for (gateway.calls): JSON bodies and the multipart forms of audio uploads, built
by httpx exactly as the OpenAI SDK sends them. Renaming the model changes only its value: checked against
Starlette's own form parser as the oracle."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from gateway.calls import BadCall, read_call


def form(fields: dict[str, str], audio: bytes) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST", "http://door/v1/audio/transcriptions", data=fields, files={"file": ("a.wav", audio, "audio/wav")}
    )
    return request.read(), request.headers["content-type"]


def parsed(body: bytes, content_type: str) -> dict[str, object]:
    """What Starlette (python-multipart) reads from the form: text fields and the file's bytes."""

    async def read() -> dict[str, object]:
        sent = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, object]:
            return sent.pop()

        scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}
        fields = await Request(scope, receive).form()
        return {k: (await v.read() if hasattr(v, "read") else v) for k, v in fields.multi_items()}

    return asyncio.run(read())


names = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(model=names, served=names, language=names, audio=st.binary(max_size=2000), stream=st.booleans())
def test_a_form_is_renamed_in_place_and_reads_the_same_otherwise(
    model: str, served: str, language: str, audio: bytes, stream: bool
) -> None:
    body, content_type = form({"model": model, "language": language, "stream": str(stream).lower()}, audio)
    call = read_call(body, content_type)
    assert (call.model, call.stream) == (model, stream)
    renamed = call.renamed(served)
    expected = parsed(body, content_type) | {"model": served}
    assert parsed(renamed, content_type) == expected
    assert len(renamed) - len(body) == len(served.encode()) - len(model.encode())


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (*form({"language": "en"}, b"x"), "missing_model"),
        (*form({"model": "whisper", "stream": "yes"}, b"x"), "invalid_type"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x", "invalid_form"),
        (b"{}", "multipart/form-data", "invalid_form"),
        (b"{not json", "application/json", "invalid_json"),
        (b'{"model": 3}', "application/json", "missing_model"),
    ],
    # Fixed ids: a form's boundary is random, and pytest-xdist's workers must collect the same names.
    ids=["form-no-model", "form-bad-stream", "broken-form", "form-without-boundary", "bad-json", "json-model-not-text"],
)
def test_a_call_that_cannot_be_routed_says_why(body: bytes, content_type: str, code: str) -> None:
    with pytest.raises(BadCall) as bad:
        read_call(body, content_type)
    assert bad.value.code == code


def test_a_file_part_named_model_is_not_the_model() -> None:
    request = httpx.Request(
        "POST", "http://door/x", data={"model": "whisper"}, files={"model": ("model.bin", b"weights", "application/x")}
    )
    call = read_call(request.read(), request.headers["content-type"])
    assert call.model == "whisper"
