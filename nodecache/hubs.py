"""The hubs the node cache fetches from, each through its own client: what a listing says (the revision
and every file's size and hash), how the listed files are downloaded, and what the client's errors mean.

  - Hugging Face: `huggingface_hub` (model info with file metadata; `snapshot_download`). The revision is
    the hub's commit id.
  - ModelScope: `modelscope_hub`, the client the `modelscope` package delegates its hub calls to (the file
    listing, then the download of the listed files, one request per file). Its listing carries no commit
    id of the whole tree, so the revision is a digest of the listing (every path, size and SHA-256): a
    branch that moved is seen as a listing that changed.

Both are imported when first needed, with their settings pointed at the cache's own folder (the pod's
root file system is read-only) and at the endpoint given, whatever the environment said.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# What a failure of the hub's client means for the fetch: the credentials do not reach the model, the
# model or revision is not there, the hub refused for another reason, or another try may work.
DENIED, MISSING, NO_REVISION, REFUSED, RETRY = "denied", "missing", "no-revision", "refused", "retry"


@dataclass(frozen=True)
class Listed:
    """A file as the hub lists it, before the fetcher has checked any of it."""

    path: object
    size: object
    sha256: object  # SHA-256 of the content (Hugging Face: LFS files only)
    blob_id: object  # git's object id (Hugging Face)


class HubApi(Protocol):
    kind: str
    token_variable: str  # what an error message tells the user to set

    def listing(self, repo: str) -> tuple[str, list[Listed]]:
        """The revision the default branch is at now, and its files."""
        ...

    def download(self, repo: str, revision: str, local_dir: Path, files: list[Listed]) -> None:
        """Downloads exactly `files` of `revision` into `local_dir` (run in a child process)."""
        ...

    def failure(self, error: BaseException) -> str | None:
        """What a client error means (DENIED...RETRY); None for an error that is not the hub's."""
        ...


class HuggingFace:
    kind = "huggingface"
    token_variable = "HF_TOKEN"  # noqa: S105 - a variable's name

    def __init__(self, home: Path, endpoint: str) -> None:
        # The client reads these once, when imported: set first.
        os.environ["HF_HOME"] = str(home / "hf-home")
        os.environ["HF_ENDPOINT"] = endpoint
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        import huggingface_hub

        self.module = huggingface_hub
        self.endpoint = endpoint
        self.api = huggingface_hub.HfApi(endpoint=endpoint)

    def listing(self, repo: str) -> tuple[str, list[Listed]]:
        info = self.api.model_info(repo, files_metadata=True)
        files = [
            Listed(s.rfilename, s.size, s.lfs.sha256 if s.lfs is not None else None, s.blob_id)
            for s in info.siblings or []
        ]
        return str(info.sha or ""), files

    def download(self, repo: str, revision: str, local_dir: Path, files: list[Listed]) -> None:
        paths = [str(f.path) for f in files]
        self.module.snapshot_download(
            repo, revision=revision, local_dir=local_dir, allow_patterns=paths, endpoint=self.endpoint
        )

    def failure(self, error: BaseException) -> str | None:
        from huggingface_hub import errors

        if isinstance(error, errors.GatedRepoError):
            return DENIED
        if isinstance(error, errors.RevisionNotFoundError):
            return NO_REVISION
        if isinstance(error, errors.RepositoryNotFoundError):
            return MISSING
        status = getattr(getattr(error, "response", None), "status_code", None)
        if isinstance(error, errors.HfHubHTTPError) or _transport(error):
            return REFUSED if status is not None and status < 500 and status != 429 else RETRY
        return None


class ModelScope:
    kind = "modelscope"
    token_variable = "MODELSCOPE_API_TOKEN"  # noqa: S105 - a variable's name
    branch = "master"  # what a modelscope:// URI without a revision loads, as the client does

    def __init__(self, home: Path, endpoint: str) -> None:
        os.environ["MODELSCOPE_HOME"] = str(home / "modelscope-home")  # the client's config and credentials
        os.environ["MODELSCOPE_CACHE"] = str(home / "modelscope-cache")
        os.environ["MODELSCOPE_ENDPOINT"] = endpoint
        os.environ["MODELSCOPE_DOWNLOAD_FILE_LOCK"] = "false"  # the fetch holds the model's own lock
        os.environ["TQDM_DISABLE"] = "1"  # no progress bars in a pod's log
        from modelscope_hub import HubApi as Client

        token = os.environ.get(self.token_variable) or None
        self.api = Client(endpoint=endpoint, token=token)

    def listing(self, repo: str) -> tuple[str, list[Listed]]:
        entries = self.api.list_repo_files(repo, "model", revision=self.branch)
        files = [Listed(e.path, e.size, e.sha256, None) for e in entries if getattr(e, "type", "blob") != "tree"]
        canonical = sorted(json.dumps([f.path, f.size, f.sha256], default=str) for f in files)
        revision = hashlib.sha1("\n".join(canonical).encode(), usedforsecurity=False).hexdigest()
        return revision, files

    def download(self, repo: str, revision: str, local_dir: Path, files: list[Listed]) -> None:
        # The listing checked here is the client's too (file_list): it asks the hub for no second one. The
        # branch is asked for, not `revision` (a digest of ours); every file is checked against the listing.
        listed = [{"Path": f.path, "Size": f.size, "Sha256": f.sha256, "Type": "blob"} for f in files]
        self.api.download_repo(
            repo, "model", revision=self.branch, local_dir=local_dir, file_list=listed, max_workers=4
        )

    def failure(self, error: BaseException) -> str | None:
        import modelscope_hub as ms

        if isinstance(error, ms.FileDownloadError):
            causes = list((getattr(error, "failed_files", None) or {}).values())
            meanings = [self.failure(cause) for cause in causes]
            for meaning in (DENIED, MISSING, REFUSED):
                if meaning in meanings:
                    return meaning
            return RETRY
        if isinstance(error, ms.AuthenticationError | ms.PermissionDeniedError):
            return DENIED
        if isinstance(error, ms.NotExistError):
            return MISSING
        if isinstance(error, ms.RateLimitError | ms.ServerError | ms.NetworkError):
            return RETRY
        if isinstance(error, ms.APIError | ms.FileIntegrityError):
            return REFUSED
        return RETRY if _transport(error) else None


def client(kind: str, home: Path, endpoint: str) -> HubApi:
    """The client of the hub of `kind` (huggingface, modelscope) against `endpoint`."""
    return ModelScope(home, endpoint) if kind == "modelscope" else HuggingFace(home, endpoint)


def _transport(error: BaseException) -> bool:
    """A connection, timeout or protocol failure of the client's HTTP library (worth another try)."""
    libraries = ("httpx", "requests", "urllib3")  # huggingface_hub's is httpx2
    return any(kind.__module__.split(".")[0].startswith(libraries) for kind in type(error).__mro__) or isinstance(
        error, ConnectionError | TimeoutError
    )


def describe(error: BaseException) -> str:
    """The client error as one line (some carry the response body)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"
