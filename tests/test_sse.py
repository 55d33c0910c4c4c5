"""The relay's SSE framing (gateway.sse.WholeEvents), as pure logic: whole events out, however the stream
is cut into reads; any stream that stops early, or is not OpenAI-shaped SSE, is an error."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sse import MalformedStream, WholeEvents, last_events_of

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
events = st.lists(
    st.one_of(
        texts.map(lambda t: b"data: " + json.dumps({"choices": [{"delta": {"content": t}}]}).encode()),
        texts.map(lambda t: b": " + t.replace("\n", " ").replace("\r", " ").encode()),  # a comment
    ),
    max_size=8,
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A valid stream (LF or CRLF lines, ending with [DONE]) and the points where reads end."""
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    stream = b"".join(e + newline + newline for e in [*draw(events), b"data: [DONE]"])
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    return stream, cuts


def reads(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def relay(chunks: list[bytes]) -> bytes:
    framer = WholeEvents()
    out = b"".join(framer.feed(chunk) for chunk in chunks)
    framer.end()
    return out


@given(streams())
def test_a_whole_stream_comes_out_whole_however_it_is_read(case: tuple[bytes, list[int]]) -> None:
    stream, cuts = case
    assert relay(reads(stream, cuts)).replace(b"\r\n", b"\n") == stream.replace(b"\r\n", b"\n")


@given(streams(), st.data())
def test_a_stream_cut_anywhere_is_an_error_and_only_whole_events_come_out(
    case: tuple[bytes, list[int]], data: st.DataObject
) -> None:
    stream, cuts = case
    end = data.draw(st.integers(0, len(stream) - 1))
    framer = WholeEvents()
    out = b"".join(framer.feed(chunk) for chunk in reads(stream[:end], [c for c in cuts if c <= end]))
    with pytest.raises(MalformedStream) as caught:
        framer.end()
    assert caught.value.code == "stream_broken"
    assert out == b"" or out.endswith((b"\n\n", b"\r\n\r\n"))  # nothing partial was relayed
    assert stream.startswith(out)


@pytest.mark.parametrize(
    ("stream", "fragment"),
    [
        (b"data: {not json\n\n", "not JSON"),
        (b"<html>oops</html>\n\n", "not SSE"),
        (b"data: [DONE]\n\ndata: {}\n\n", "after `data: [DONE]`"),
    ],
)
def test_malformed_streams_are_refused_with_what_was_wrong(stream: bytes, fragment: str) -> None:
    good = b'data: {"choices": []}\n\n'
    with pytest.raises(MalformedStream) as caught:
        relay([good + stream])
    assert fragment in str(caught.value) and caught.value.code == "stream_malformed"
    # The good events before it, in the same read, still go out.
    assert caught.value.relayable == good + stream[: stream.index(b"\n\n") + 2] if b"DONE" in stream else good


def test_an_event_that_never_ends_is_refused_before_it_fills_memory() -> None:
    framer = WholeEvents()
    with pytest.raises(MalformedStream, match="event over"):
        for _ in range(2000):
            framer.feed(b"data: " + b"x" * 1024)


RESPONSES_STREAM = (
    b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed","sequence_number":2}\n\n'
)


def test_a_responses_stream_ends_at_its_last_event_not_at_done() -> None:
    """vLLM's /v1/responses stream (like OpenAI's) names its events and sends no `data: [DONE]`: it is
    whole after response.completed, and broken if it stops before."""
    last = last_events_of("/v1/responses")
    framer = WholeEvents(last)
    assert framer.feed(RESPONSES_STREAM) == RESPONSES_STREAM
    framer.end()
    cut = RESPONSES_STREAM[: RESPONSES_STREAM.index(b"event: response.completed")]
    framer = WholeEvents(last)
    assert framer.feed(cut) == cut
    with pytest.raises(MalformedStream, match="before its last event") as caught:
        framer.end()
    assert caught.value.code == "stream_broken"
    assert last_events_of("/v1/chat/completions") is None  # chat and the rest end with [DONE]
    with pytest.raises(MalformedStream, match=r"before `data: \[DONE\]`"):
        chat = WholeEvents(last_events_of("/v1/chat/completions"))
        chat.feed(RESPONSES_STREAM)
        chat.end()
