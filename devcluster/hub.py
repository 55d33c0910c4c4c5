"""A small hub that speaks Hugging Face's API and ModelScope's (devcluster.hub_modelscope), so that the
real hub clients (`huggingface_hub.snapshot_download`, `modelscope_hub`) run against the local cluster and
the tests exactly as they run against huggingface.co and modelscope.cn.

It serves the endpoints that client uses (model info with file metadata, the recursive tree listing, and
`resolve` with HEAD, GET and byte ranges, with the headers the client reads: X-Repo-Commit, ETag,
X-Linked-Etag, X-Linked-Size) from folders of generated model files of a realistic layout: config.json,
tokenizer files, several safetensors shards and their index. A gated repository answers as the real hub
does (401 with X-Error-Code GatedRepo) unless the request carries one of its tokens. Every request is
counted, per repository and kind, at `/_hub/requests`, so a test can prove that a warm start asked nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from devcluster.gguf_model import generate_gguf as write_gguf
from nodecache.store import git_blob_id, sha256_of

CHUNK = 8 << 20
INDEX = ".hub-index.json"
LFS_SUFFIXES = (".safetensors", ".gguf")  # weights are LFS files on the real hub


def generate_model(folder: Path, size_mib: int, shards: int = 4, seed: int = 0) -> Path:
    """Writes a model of about `size_mib` MiB in the layout of a Llama-style repository (real safetensors
    headers, bf16 tensors of pseudo-random bytes) into `folder`; the same arguments give the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    hidden = 1024
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": shards * 2,
        "num_attention_heads": 16,
        "vocab_size": 32000,
        "torch_dtype": "bfloat16",
    }
    small = {
        "config.json": config,
        "generation_config.json": {"bos_token_id": 1, "eos_token_id": 2, "max_new_tokens": 256},
        "tokenizer_config.json": {"model_max_length": 8192, "tokenizer_class": "LlamaTokenizerFast"},
        "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>"},
        "tokenizer.json": {
            "version": "1.0",
            "model": {"type": "BPE", "vocab": {f"tok{i}": i for i in range(2000)}, "merges": []},
        },
    }
    for name, content in small.items():
        (folder / name).write_text(json.dumps(content, indent=1) + "\n")
    rng = random.Random(seed)  # noqa: S311 - reproducible filler bytes, not secrets
    per_shard = max(1, (size_mib << 20) // shards)
    rows = max(1, per_shard // (hidden * 2))
    weight_map: dict[str, str] = {}
    for index in range(shards):
        name = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        tensor = f"model.layers.{index}.mlp.weight"
        length = rows * hidden * 2
        header = {
            "__metadata__": {"format": "pt"},
            tensor: {"dtype": "BF16", "shape": [rows, hidden], "data_offsets": [0, length]},
        }
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with (folder / name).open("wb") as out:
            out.write(len(raw).to_bytes(8, "little") + raw)
            left = length
            while left:
                piece = min(left, CHUNK)
                out.write(rng.randbytes(piece))
                left -= piece
        weight_map[tensor] = name
    index_body = {"metadata": {"total_size": rows * hidden * 2 * shards}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_body, indent=1) + "\n")
    return folder


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    blob_id: str
    sha256: str | None  # LFS files (the weights) only, as on the real hub
    digest: str  # the SHA-256 of every file, which ModelScope lists

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path}
        if self.sha256 is not None:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return entry

    def sibling(self) -> dict[str, Any]:
        sibling: dict[str, Any] = {"rfilename": self.path, "size": self.size, "blobId": self.blob_id}
        if self.sha256 is not None:
            sibling["lfs"] = {"sha256": self.sha256, "size": self.size, "pointerSize": 134}
        return sibling


@dataclass
class Repo:
    repo_id: str
    folder: Path
    files: dict[str, HubFile]
    commit: str
    gated: bool = False
    tokens: frozenset[str] = frozenset()


def load_repo(repo_id: str, folder: Path, gated: bool = False, tokens: frozenset[str] = frozenset()) -> Repo:
    """A repository served from `folder`; hashes are kept in the folder's index and recomputed only for
    files whose size or modification time changed."""
    cached: dict[str, Any] = {}
    index_file = folder / INDEX
    if index_file.is_file():
        cached = json.loads(index_file.read_text())
    files: dict[str, HubFile] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(INDEX)):
        name = path.relative_to(folder).as_posix()
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        known = cached.get(name)
        if known and known["stamp"] == stamp and "digest" in known:
            files[name] = HubFile(name, stat.st_size, known["blob_id"], known["sha256"], known["digest"])
            continue
        digest = sha256_of(path)
        lfs = digest if name.endswith(LFS_SUFFIXES) else None
        files[name] = HubFile(name, stat.st_size, git_blob_id(path), lfs, digest)
    scratch = index_file.with_name(f"{INDEX}.{os.getpid()}")
    scratch.write_text(
        json.dumps(
            {
                n: {
                    "stamp": [f.size, (folder / n).stat().st_mtime_ns],
                    "blob_id": f.blob_id,
                    "sha256": f.sha256,
                    "digest": f.digest,
                }
                for n, f in files.items()
            }
        )
    )
    scratch.replace(index_file)
    commit = hashlib.sha1(
        "".join(f"{f.path}:{f.blob_id}\n" for f in files.values()).encode(), usedforsecurity=False
    ).hexdigest()
    return Repo(repo_id, folder, files, commit, gated, tokens)


@dataclass
class Hub:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, repo_id: str, kind: str) -> None:
        with self._lock:
            self.requests[f"{repo_id} {kind}"] += 1
            self.requests["total"] += 1


def access(hub: Hub, repo_id: str, token: str, revision: str, branches: tuple[str, ...]) -> Repo | str:
    """The repository, or why not: missing, no-token or bad-token (gated, or private on ModelScope),
    revision (neither a branch of `branches` nor the commit)."""
    repo = hub.repos.get(repo_id)
    if repo is None:
        return "missing"
    if repo.gated and token not in repo.tokens:
        return "bad-token" if token else "no-token"
    if revision not in (*branches, repo.commit):
        return "revision"
    return repo


def _refused(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": message}, status, headers={"X-Error-Code": code, "X-Error-Message": message})


def create_app(hub: Hub) -> FastAPI:
    app = FastAPI(title="hearth local hub", docs_url=None, redoc_url=None, openapi_url=None)

    def repo_for(request: Request, repo_id: str, revision: str) -> Repo | Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        repo = access(hub, repo_id, token, revision, ("main",))
        if repo == "missing":
            message = (
                f"Repository Not Found for url: {request.url}. Please make sure you specified the correct `repo_id`."
            )
            return _refused(401, "RepoNotFound", message)
        if repo in ("no-token", "bad-token"):
            message = f"Access to model {repo_id} is restricted. You must be authenticated to access it."
            return _refused(401 if repo == "no-token" else 403, "GatedRepo", message)
        if isinstance(repo, str):
            return _refused(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo

    @app.get("/api/models/{org}/{name}")
    @app.get("/api/models/{org}/{name}/revision/{revision}")
    async def info(request: Request, org: str, name: str, revision: str = "main") -> Response:
        repo_id = f"{org}/{name}"
        hub.count(repo_id, "info")
        repo = repo_for(request, repo_id, revision)
        if isinstance(repo, Response):
            return repo
        with_blobs = request.query_params.get("blobs", "").lower() == "true"
        siblings = [f.sibling() if with_blobs else {"rfilename": f.path} for f in repo.files.values()]
        gguf = any(path.endswith(".gguf") for path in repo.files)
        body = {
            "_id": repo.commit[:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": repo.commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": ["gguf" if gguf else "safetensors", "llama"],
            "library_name": "llama.cpp" if gguf else "transformers",
            "siblings": siblings,
        }
        return JSONResponse(body)

    @app.get("/api/models/{org}/{name}/tree/{revision}")
    @app.get("/api/models/{org}/{name}/tree/{revision}/{path:path}")
    async def tree(request: Request, org: str, name: str, revision: str, path: str = "") -> Response:
        repo_id = f"{org}/{name}"
        hub.count(repo_id, "tree")
        repo = repo_for(request, repo_id, revision)
        if isinstance(repo, Response):
            return repo
        prefix = path.strip("/")
        entries = [f.tree_entry() for f in repo.files.values() if not prefix or f.path.startswith(prefix + "/")]
        return JSONResponse(entries)

    @app.api_route("/{org}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    async def resolve(request: Request, org: str, name: str, revision: str, path: str) -> Response:
        repo_id = f"{org}/{name}"
        hub.count(repo_id, "download" if request.method == "GET" else "head")
        repo = repo_for(request, repo_id, revision)
        if isinstance(repo, Response):
            return repo
        entry = repo.files.get(path)
        if entry is None:
            return _refused(404, "EntryNotFound", f"{path} does not exist on {revision}")
        etag = f'"{entry.sha256 or entry.blob_id}"'
        headers = {
            "X-Repo-Commit": repo.commit,
            "ETag": etag,
            "X-Linked-Etag": etag,
            "X-Linked-Size": str(entry.size),
            "Accept-Ranges": "bytes",
        }
        if request.method == "HEAD":
            return Response(headers={**headers, "Content-Length": str(entry.size)})
        return FileResponse(repo.folder / path, headers=headers, media_type="application/octet-stream")

    from devcluster.hub_modelscope import add_modelscope_routes

    add_modelscope_routes(app, hub)

    @app.get("/_hub/requests")
    async def requests_seen() -> Response:
        return JSONResponse(dict(hub.requests))

    @app.post("/_hub/reload")
    async def reload() -> Response:
        """Reads every repository's folder again (a test that changed a file moves its revision)."""
        for repo_id, repo in list(hub.repos.items()):
            hub.repos[repo_id] = load_repo(repo_id, repo.folder, repo.gated, repo.tokens)
        return JSONResponse({repo_id: repo.commit for repo_id, repo in hub.repos.items()})

    return app


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        repo, sep, value = item.partition("=")
        if not sep or repo.count("/") != 1 or not value:
            raise ValueError(f"{flag} {item!r}: write ORG/NAME=VALUE")
        pairs[repo] = value
    return pairs


def _generated(target: Path, write: Callable[[Path], object]) -> None:
    """`target` written once by `write` into a scratch folder renamed into place (two hubs may start at once)."""
    if target.is_dir():
        return
    scratch = target.with_name(f".{target.name}.{os.getpid()}")
    write(scratch)
    try:
        scratch.rename(target)
    except OSError:  # the other one won
        shutil.rmtree(scratch, ignore_errors=True)


def is_repository(folder: Path) -> bool:
    """A model repository: a Transformers layout (config.json) or llama.cpp's (GGUF files only)."""
    return (folder / "config.json").is_file() or any(folder.glob("*.gguf"))


def serve_folder(folder: Path, generate: list[str], gated: list[str], generate_gguf: Sequence[str] = ()) -> FastAPI:
    """The hub app for every repository under `folder` (ORG/NAME/), generating the missing ones asked for
    as ORG/NAME=MIB (safetensors shards of at most 128 MiB, at least 2) and, for llama.cpp, one GGUF file of
    a random-weight Llama (devcluster.gguf_model)."""
    for repo, mib in _pairs(generate, "--generate").items():
        shards = max(2, -(-int(mib) // 128))
        _generated(folder / repo, functools.partial(generate_model, size_mib=int(mib), shards=shards))
    for repo, mib in _pairs(list(generate_gguf), "--generate-gguf").items():
        _generated(folder / repo, functools.partial(write_gguf, size_mib=int(mib), name=repo))
    tokens = _pairs(gated, "--gated")
    hub = Hub()
    for repo_folder in sorted(p for p in folder.glob("*/*") if p.is_dir() and is_repository(p)):
        repo_id = repo_folder.relative_to(folder).as_posix()
        token = tokens.get(repo_id)
        hub.repos[repo_id] = load_repo(repo_id, repo_folder, gated=token is not None, tokens=frozenset({token or ""}))
    app = create_app(hub)

    @app.get("/_hub/health")
    async def health() -> dict[str, int]:
        return {"repositories": len(hub.repos)}

    return app
