"""A model simulator that speaks vLLM's OpenAI-compatible API, for the dev cluster and the tests.

The preferred simulator, the Go module github.com/llm-d/llm-d-inference-sim, is not served by the Go
module proxy reachable here (it answers 403 for every version), so Hearth ships this one. It mimics what
Hearth depends on: `/health` answers 503 while "loading" for a configurable start-up time, completions
stream as vLLM's SSE chunks ending in `data: [DONE]`, errors are vLLM-shaped JSON, and `/metrics` has
`vllm:num_requests_running` and `vllm:num_requests_waiting`. Time to first token and inter-token latency
are configurable; a client that disconnects cancels its request, which is counted.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from devcluster.weights import Loaded, LoadError, load

Handler = Callable[[Request], Awaitable[Response]]
EMBEDDING_SIZE = 8
WORDS = ("Hearth", " keeps", " idle", " GPUs", " at", " zero", " and", " wakes", " them", " on", " demand", ".")


def said(tokens: int) -> str:
    """The whole text the simulator answers for `tokens` tokens: its words in turn (deterministic)."""
    return "".join(WORDS[i % len(WORDS)] for i in range(tokens))


@dataclass
class SimSettings:
    served_names: list[str]
    startup_seconds: float = 0.0
    ttft_seconds: float = 0.0
    itl_seconds: float = 0.0
    max_num_seqs: int = 256
    default_max_tokens: int = 16
    fail_start: bool = False  # loads for startup_seconds, then reports a dead engine (start-failure tests)
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)  # for cold-start breakdowns across processes
    loaded_wall: float | None = None
    model_dir: Path | None = None  # a model folder to load first (devcluster.weights), as a runtime does
    load_rate_mib: float = 1000.0
    loaded: float | None = None  # when the weights were in (monotonic); without model_dir, at start
    load_error: str | None = None
    load_report: Loaded | None = None

    def load(self) -> None:
        """Loads the model folder (in a thread of its own); the start-up time counts from its end."""
        assert self.model_dir is not None
        try:
            self.load_report = load(self.model_dir, self.load_rate_mib)
        except (LoadError, OSError, ValueError, KeyError) as error:
            self.load_error = str(error)
            print(f"loading {self.model_dir} failed: {error}", flush=True)
            return
        report = self.load_report
        print(f"loaded {report.files} shards, {report.bytes / 2**20:.1f} MiB in {report.seconds:.2f}s", flush=True)
        self.loaded = time.monotonic()
        self.loaded_wall = time.time()


def _error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status)


def create_app(settings: SimSettings) -> Starlette:
    # Starlette, not FastAPI: a process in every simulated model pod, it starts in less CPU without
    # FastAPI's import (about 0.1 s), and its handlers read their requests themselves anyway.
    routes: list[Route] = []

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            routes.append(Route(path, handler, methods=[method]))
            return handler

        return add

    registry = CollectorRegistry()
    running = Gauge("vllm:num_requests_running", "Requests in the batch.", ["model_name"], registry=registry)
    waiting = Gauge("vllm:num_requests_waiting", "Requests waiting for a slot.", ["model_name"], registry=registry)
    finished = Counter("hearth_sim_requests", "Requests by outcome.", ["outcome"], registry=registry)
    slots = asyncio.Semaphore(settings.max_num_seqs)
    name = settings.served_names[0]

    if settings.model_dir is None:
        settings.loaded = settings.started
    else:
        threading.Thread(target=settings.load, daemon=True, name="load-weights").start()

    def ready() -> bool:
        loaded = settings.loaded
        return not settings.fail_start and loaded is not None and time.monotonic() - loaded >= settings.startup_seconds

    @route("GET", "/health")
    async def health(request: Request) -> Response:
        loading = time.monotonic() - settings.started < settings.startup_seconds
        if settings.fail_start and not loading:  # vLLM answers 500 once its engine is dead
            return Response("engine failed to start", status_code=500)
        if settings.load_error is not None:
            return Response(f"loading the model failed: {settings.load_error}", status_code=500)
        return Response(status_code=200 if ready() else 503)

    @route("GET", "/metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @route("GET", "/v1/models")
    async def models(request: Request) -> Response:
        created = int(time.time())
        data = [
            {"id": n, "object": "model", "created": created, "owned_by": "vllm", "root": n, "max_model_len": 4096}
            for n in settings.served_names
        ]
        return JSONResponse({"object": "list", "data": data})

    @route("GET", "/sim/stats")
    async def stats(request: Request) -> Response:
        values = {
            s.labels["outcome"]: s.value
            for m in registry.collect()
            if m.name == "hearth_sim_requests"
            for s in m.samples
            if s.name.endswith("_total")
        }
        report = settings.load_report
        load_info = None
        if report is not None:
            load_info = {
                "bytes": report.bytes,
                "seconds": report.seconds,
                "started_at": settings.started_wall,
                "loaded_at": settings.loaded_wall,
            }
        return JSONResponse({"running": running.labels(name)._value.get(), "outcomes": values, "load": load_info})

    async def complete(request: Request, chat: bool) -> Response:
        body = await accepted(request)
        if isinstance(body, JSONResponse):
            return body
        model = body["model"]
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or settings.default_max_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return _error(400, "max_tokens must be a positive integer", "BadRequestError", "max_tokens")
        stream = bool(body.get("stream"))
        usage_chunk = bool((body.get("stream_options") or {}).get("include_usage"))
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        if stream:
            gen = _stream(rid, str(model), int(max_tokens), chat, usage_chunk)
            return StreamingResponse(gen, media_type="text/event-stream")
        async with _slot():
            await asyncio.sleep(settings.ttft_seconds + settings.itl_seconds * (max_tokens - 1))
            finished.labels("completed").inc()
        text = said(max_tokens)
        usage = {"prompt_tokens": 8, "completion_tokens": max_tokens, "total_tokens": 8 + max_tokens}
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        kind = "chat.completion" if chat else "text_completion"
        return JSONResponse(
            {
                "id": rid,
                "object": kind,
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        )

    class _slot:
        async def __aenter__(self) -> None:
            waiting.labels(name).inc()
            try:
                await slots.acquire()
            finally:
                waiting.labels(name).dec()
            running.labels(name).inc()

        async def __aexit__(self, *exc: object) -> None:
            running.labels(name).dec()
            slots.release()

    async def _stream(rid: str, model: str, max_tokens: int, chat: bool, usage_chunk: bool) -> AsyncIterator[bytes]:
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"
        outcome = "cancelled"

        def chunk(piece: str | None, finish: str | None, role: bool = False) -> bytes:
            choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
                if piece is not None:
                    delta["content"] = piece
                choice["delta"] = delta
            else:
                choice["text"] = piece or ""
            payload = {"id": rid, "object": kind, "created": created, "model": model, "choices": [choice]}
            return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

        async with _slot():
            try:
                # As vLLM: the first chunk (the role) comes with the first token, after the prefill.
                await asyncio.sleep(settings.ttft_seconds)
                if chat:
                    yield chunk(None, None, role=True)
                for i in range(max_tokens):
                    if i:
                        await asyncio.sleep(settings.itl_seconds)
                    last = i == max_tokens - 1
                    yield chunk(WORDS[i % len(WORDS)], "length" if last else None)
                if usage_chunk:
                    usage = {"prompt_tokens": 8, "completion_tokens": max_tokens, "total_tokens": 8 + max_tokens}
                    payload = {
                        "id": rid,
                        "object": kind,
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                    yield b"data: " + json.dumps(payload).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"
                outcome = "completed"
            finally:
                finished.labels(outcome).inc()

    @route("POST", "/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await complete(request, chat=True)

    @route("POST", "/v1/completions")
    async def completions(request: Request) -> Response:
        return await complete(request, chat=False)

    async def accepted(request: Request) -> dict[str, Any] | JSONResponse:
        """The JSON body of a request this model may answer now, or the error vLLM would give."""
        if not ready():
            return _error(503, "model is still loading", "ServiceUnavailableError")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "request body is not valid JSON", "BadRequestError")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object", "BadRequestError")
        if body.get("model") not in settings.served_names:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError", "model")
        return body

    # --- the rest of vLLM's OpenAI surface, answered in its shapes (the content is made up) ---------
    def texts(value: object) -> list[str]:
        return [value] if isinstance(value, str) else [str(v) for v in value] if isinstance(value, list) else []

    def vector(text: str, index: int) -> list[float]:
        seed = sum(text.encode()) + index
        return [round(((seed * (i + 7)) % 97) / 97.0, 4) for i in range(EMBEDDING_SIZE)]

    @route("POST", "/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = await accepted(request)
        if isinstance(body, JSONResponse):
            return body
        inputs = texts(body.get("input"))
        await asyncio.sleep(settings.ttft_seconds)
        finished.labels("completed").inc()
        data = [{"object": "embedding", "index": i, "embedding": vector(t, i)} for i, t in enumerate(inputs)]
        tokens = sum(len(t.split()) for t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": usage})

    @route("POST", "/v1/responses")
    async def responses(request: Request) -> Response:
        body = await accepted(request)
        if isinstance(body, JSONResponse):
            return body
        tokens = int(body.get("max_output_tokens") or settings.default_max_tokens)
        if body.get("stream"):
            return StreamingResponse(response_events(str(body["model"]), tokens), media_type="text/event-stream")
        await asyncio.sleep(settings.ttft_seconds + settings.itl_seconds * (tokens - 1))
        finished.labels("completed").inc()
        return JSONResponse(response_object(str(body["model"]), tokens, said(tokens)))

    async def response_events(model: str, tokens: int) -> AsyncIterator[bytes]:
        """As vLLM streams /v1/responses: named events, no `data: [DONE]`; the last is response.completed."""
        started = response_object(model, tokens, "")
        yield _event("response.created", {"response": {**started, "status": "in_progress"}}, 0)
        await asyncio.sleep(settings.ttft_seconds)
        item = started["output"][0]["id"]
        for i in range(tokens):
            if i:
                await asyncio.sleep(settings.itl_seconds)
            delta = {
                "item_id": item,
                "output_index": 0,
                "content_index": 0,
                "delta": WORDS[i % len(WORDS)],
                "logprobs": [],
            }
            yield _event("response.output_text.delta", delta, 1 + i)
        finished.labels("completed").inc()
        yield _event("response.completed", {"response": response_object(model, tokens, said(tokens))}, 1 + tokens)

    def _event(kind: str, payload: dict[str, Any], sequence: int) -> bytes:
        data = json.dumps({"type": kind, "sequence_number": sequence, **payload}, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()

    def response_object(model: str, tokens: int, text: str) -> dict[str, Any]:
        message = {
            "type": "message",
            "id": f"msg_{uuid.uuid4().hex}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        return {
            "id": f"resp_{uuid.uuid4().hex}",
            "object": "response",
            "created_at": int(time.time()),
            "model": model,
            "status": "completed",
            "output": [message],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 8,
                "output_tokens": tokens,
                "total_tokens": 8 + tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }

    def relevance(query: str, document: str) -> float:
        shared = set(query.lower().split()) & set(document.lower().split())
        return round(len(shared) / (1 + len(document.split())), 4)

    @route("POST", "/v1/rerank")
    async def rerank(request: Request) -> Response:
        body = await accepted(request)
        if isinstance(body, JSONResponse):
            return body
        query, documents = str(body.get("query", "")), texts(body.get("documents"))
        scored = sorted(
            (
                {"index": i, "document": {"text": d}, "relevance_score": relevance(query, d)}
                for i, d in enumerate(documents)
            ),
            key=lambda r: -float(r["relevance_score"]),  # type: ignore[arg-type]
        )
        usage = {"total_tokens": sum(len(d.split()) for d in documents) + len(query.split())}
        return JSONResponse(
            {"id": f"rerank-{uuid.uuid4().hex}", "model": body["model"], "usage": usage, "results": scored}
        )

    @route("POST", "/v1/score")
    async def score(request: Request) -> Response:
        body = await accepted(request)
        if isinstance(body, JSONResponse):
            return body
        first, second = texts(body.get("text_1")), texts(body.get("text_2"))
        pairs = [(first[0] if len(first) == 1 else first[i], t) for i, t in enumerate(second)]
        data = [{"index": i, "object": "score", "score": relevance(a, b)} for i, (a, b) in enumerate(pairs)]
        created = int(time.time())
        return JSONResponse(
            {
                "id": f"score-{uuid.uuid4().hex}",
                "object": "list",
                "created": created,
                "model": body["model"],
                "data": data,
            }
        )

    @route("POST", "/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        if not ready():
            return _error(503, "model is still loading", "ServiceUnavailableError")
        form = await request.form()
        model, upload = form.get("model"), form.get("file")
        if model not in settings.served_names:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        if upload is None or isinstance(upload, str):
            return _error(400, "the form needs a `file`", "BadRequestError", "file")
        audio = await upload.read()
        finished.labels("completed").inc()
        # One word per KiB of audio: the answer shows the whole file came through.
        words = max(1, len(audio) // 1024)
        text = said(words).strip()
        return JSONResponse({"text": text, "usage": {"type": "duration", "seconds": max(1, len(audio) // 32000)}})

    return Starlette(routes=routes)
