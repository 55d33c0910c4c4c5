"""Hearth's internal endpoints answer only Hearth's own components: the front door's `/demand` only the
scaler, the scaler's `/activate` only the front doors.

A caller presents its ServiceAccount token, projected by the kubelet for the audience `hearth` (so the
token is good for nothing else, and no apiserver token is ever sent to a peer); the callee asks the
apiserver who it is (TokenReview, with that audience) and compares the username with the callers it
allows. No shared secret to create, distribute or rotate: the kubelet rotates the tokens, and the reviews
are cached for a minute by the token's digest (a bounded cache; a refusal is cached for 5 s)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

from common.kubeapi import ApiError, KubeAPI

log = logging.getLogger("hearth.callers")
AUDIENCE = "hearth"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - an API path
ALLOWED_FOR = 60.0
REFUSED_FOR = 5.0
MAX_REVIEWS = 4096


class NotAllowed(Exception):
    """`status` 401 (no token, or not a valid one) or 403 (a valid token of someone else)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of `Authorization: Bearer TOKEN` (the scheme in any case), or None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class CallerCheck:
    def __init__(
        self,
        api: KubeAPI,
        allowed: frozenset[str],
        audience: str = AUDIENCE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.allowed, self.audience, self.clock = api, allowed, audience, clock
        self._reviews: OrderedDict[bytes, tuple[str | None, float]] = OrderedDict()

    async def check(self, headers: Mapping[str, str]) -> str:
        """The caller's username when it is allowed, else NotAllowed."""
        token = bearer_token(headers)
        if token is None:
            raise NotAllowed(401, "this endpoint is Hearth's own: present a ServiceAccount token (audience hearth)")
        username = await self._review(token)
        if username is None:
            raise NotAllowed(401, "the token is not valid for the audience hearth")
        if username not in self.allowed:
            raise NotAllowed(403, f"{username} may not call this endpoint")
        return username

    async def _review(self, token: str) -> str | None:
        digest = hashlib.sha256(token.encode()).digest()
        now = self.clock()
        cached = self._reviews.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
        spec = {"token": token, "audiences": [self.audience]}
        try:
            answer = await self.api.post(TOKEN_REVIEWS, {**body, "spec": spec})
        except ApiError as exc:  # not cached: the apiserver's trouble is not the caller's
            log.warning("TokenReview failed (%s): refusing the call", exc)
            return None
        status = answer.get("status") or {}
        username = None
        if status.get("authenticated") and self.audience in (status.get("audiences") or [self.audience]):
            username = str((status.get("user") or {}).get("username") or "") or None
        self._reviews[digest] = (username, now + (ALLOWED_FOR if username else REFUSED_FOR))
        while len(self._reviews) > MAX_REVIEWS:
            self._reviews.popitem(last=False)
        return username


class CallerToken:
    """This component's own token for its peers, re-read from its projected file every minute (the kubelet
    renews the file well before the token expires)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic, reread: float = 60.0) -> None:
        self.path, self.clock, self.reread = path, clock, reread
        self._token, self._read_at = "", float("-inf")

    def headers(self) -> dict[str, str]:
        now = self.clock()
        if now - self._read_at >= self.reread:
            try:
                self._token = self.path.read_text().strip()
            except OSError as exc:
                log.warning("cannot read this component's token %s: %s", self.path, exc)
            self._read_at = now
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


def service_account(ref: str) -> str:
    """The username a ServiceAccount (NAMESPACE/NAME) authenticates as."""
    namespace, _, name = ref.partition("/")
    return f"system:serviceaccount:{namespace}:{name}"
