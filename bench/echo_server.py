"""The floor for the admission benchmark: the same stack as the webhook (FastAPI on uvicorn over TLS,
a bounded body read, a JSON answer) with no admission work at all: it answers the body it was sent."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response

from common.bodies import read_bounded


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await read_bounded(request, 4 * 1024 * 1024, 30.0), media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok")

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-dir", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        ssl_certfile=str(args.cert_dir / "tls.crt"),
        ssl_keyfile=str(args.cert_dir / "tls.key"),
    )
