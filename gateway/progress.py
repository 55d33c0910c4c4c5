"""Cold-start progress a person can see (hearth.dev/cold-start-progress): while a streamed chat request is
held, the stages of the model's start arrive as `reasoning_content` deltas, which chat UIs that show a
reasoning model's thinking (Open WebUI, LibreChat, ...) display as it comes, then the model's own answer.

Each line is the real state the front door watches (policies.coldstart.progress_of: the pod scheduled,
its weights fetched, its server loading, ready) and the scaler's prediction of the start's length. A
line is sent when the state changes (looked at every 2 s, or every heartbeat interval when shorter);
between changes SSE comment heartbeats keep the stream alive. The deltas are valid chunks of the chat
completion stream, so SDKs parse them as any other.
"""

from __future__ import annotations

import time

import orjson

from gateway.framing import SSE, Framing
from gateway.sse import sse_comment
from gateway.table import ModelState

PROGRESS_EVERY = 2.0  # seconds between looks at the start's stage (a heartbeat comment when it has not moved)


def reasoning_chunk(model: str, text: str, *, first: bool = False) -> bytes:
    delta: dict[str, str] = {"role": "assistant", "content": ""} if first else {}
    delta["reasoning_content"] = text
    chunk = {
        "id": "chatcmpl-hearth-cold-start",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def left(state: ModelState, waited: float) -> str:
    """`; about 30s to go` from the scaler's prediction, while the wait is still within it."""
    if state.eta is None:
        return ""
    if state.eta > waited:
        return f"; about {max(1, round(state.eta - waited))}s to go"
    return f"; taking longer than the usual {round(state.eta)}s"


def progress_framing(state: ModelState, model: str) -> Framing:
    """SSE framing for one held chat stream that shows the start's progress; `model` is the name the client
    asked for (its chunks carry it, as the model's own will)."""
    shown = {"text": ""}

    def opening(key: str) -> bytes:
        shown["text"] = state.progress
        eta = f" (it usually takes about {round(state.eta)}s)" if state.eta is not None else ""
        intro = f"Starting {model} from zero{eta}.\n"
        return reasoning_chunk(model, intro + (f"{state.progress}\n" if state.progress else ""), first=True)

    def beat(waited: float) -> bytes:
        if state.progress and state.progress != shown["text"]:
            shown["text"] = state.progress
            return reasoning_chunk(model, f"{state.progress} ({waited:.0f}s{left(state, waited)})\n")
        return sse_comment(f"hearth: still starting ({waited:.0f}s)")

    def ready(waited: float) -> bytes:
        return reasoning_chunk(model, f"{model} is ready after {waited:.0f}s.\n\n")

    every = min(PROGRESS_EVERY, state.scale.heartbeat_interval)
    return Framing(opening, beat, SSE.error, SSE.media_type, SSE.events, ready=ready, every=every)
