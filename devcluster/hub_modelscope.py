"""The local hub's ModelScope side: the `/api/v1/` endpoints the ModelScope client (`modelscope_hub`, which
the `modelscope` package and vLLM's VLLM_USE_MODELSCOPE path call) uses to download a model, over the same
repositories as the Hugging Face side.

  GET  /api/v1/models/ORG/NAME                               the repository's description
  GET  /api/v1/models/ORG/NAME/revisions                     its branches (master) and tags
  GET  /api/v1/models/ORG/NAME/repo/files?Revision=&Root=    the file listing: Path, Size, Sha256 of every file
  GET  /api/v1/models/ORG/NAME/repo?Revision=&FilePath=      a file, with byte ranges (HEAD too)

Answers are wrapped as ModelScope wraps them (`{"Code": 200, "Data": ..., "Success": true}`); a missing
model is a 404, a private one a 401 without a token and a 403 with a wrong one, each with a `Message`.
Requests are counted under `ORG/NAME ms-files`, `ms-download`, `ms-head`, `ms-info` at `/_hub/requests`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

if TYPE_CHECKING:
    from devcluster.hub import Hub, Repo

BRANCH = "master"


def _answer(data: Any) -> Response:
    body = {"Code": 200, "Data": data, "Message": "success", "RequestId": uuid.uuid4().hex, "Success": True}
    return JSONResponse(body)


def _error(status: int, message: str) -> Response:
    body = {"Code": status, "Message": message, "RequestId": uuid.uuid4().hex, "Success": False}
    return JSONResponse(body, status)


def _token(request: Request) -> str:
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return bearer or request.cookies.get("m_session_id", "")


def add_modelscope_routes(app: FastAPI, hub: Hub) -> None:
    from devcluster.hub import access

    def repo_for(request: Request, repo_id: str, revision: str) -> Repo | Response:
        repo = access(hub, repo_id, _token(request), revision or BRANCH, (BRANCH,))
        if repo == "missing":
            return _error(404, f"model {repo_id} not found")
        if repo == "no-token":
            return _error(401, f"model {repo_id} is private: log in (an access token) to download it")
        if repo == "bad-token":
            return _error(403, f"the access token has no permission on model {repo_id}")
        if isinstance(repo, str):
            return _error(404, f"revision {revision} of model {repo_id} not found")
        return repo

    @app.get("/api/v1/models/{org}/{name}")
    @app.get("/api/v1/models/{org}/{name}/revisions")
    async def info(request: Request, org: str, name: str) -> Response:
        repo_id = f"{org}/{name}"
        revisions = request.url.path.endswith("/revisions")
        hub.count(repo_id, "ms-revisions" if revisions else "ms-info")
        repo = repo_for(request, repo_id, BRANCH)
        if isinstance(repo, Response):
            return repo
        if revisions:
            return _answer({"RevisionMap": {"Branches": [{"Revision": BRANCH, "CreatedAt": 0}], "Tags": []}})
        return _answer({"Path": org, "Name": name, "Id": abs(hash(repo_id)) % 10**6, "Visibility": 5})

    @app.get("/api/v1/models/{org}/{name}/repo/files")
    async def files(request: Request, org: str, name: str) -> Response:
        repo_id = f"{org}/{name}"
        hub.count(repo_id, "ms-files")
        repo = repo_for(request, repo_id, request.query_params.get("Revision", BRANCH))
        if isinstance(repo, Response):
            return repo
        root = request.query_params.get("Root", "").strip("/")
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for f in repo.files.values():
            if root and not f.path.startswith(root + "/"):
                continue
            parts = f.path.split("/")
            folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
            entries.append(
                {
                    "Name": parts[-1],
                    "Path": f.path,
                    "Revision": repo.commit,
                    "Sha256": f.digest,
                    "Size": f.size,
                    "Type": "blob",
                    "IsLFS": f.sha256 is not None,
                    "Mode": "100644",
                }
            )
        entries += [{"Name": d.rsplit("/", 1)[-1], "Path": d, "Type": "tree", "Size": 0} for d in sorted(folders)]
        return _answer({"Files": entries})

    @app.api_route("/api/v1/models/{org}/{name}/repo", methods=["GET", "HEAD"])
    async def download(request: Request, org: str, name: str) -> Response:
        repo_id = f"{org}/{name}"
        hub.count(repo_id, "ms-download" if request.method == "GET" else "ms-head")
        repo = repo_for(request, repo_id, request.query_params.get("Revision", BRANCH))
        if isinstance(repo, Response):
            return repo
        path = request.query_params.get("FilePath", "")
        entry = repo.files.get(path)
        if entry is None:
            return _error(404, f"file {path} not found in model {repo_id}")
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{entry.digest}"'}
        if request.method == "HEAD":
            return Response(headers={**headers, "Content-Length": str(entry.size)})
        return FileResponse(repo.folder / path, headers=headers, media_type="application/octet-stream")
