"""The pure parts of the chaos soak (devcluster/chaos.py, devcluster/image.py): the image retagged for an
upgrade under traffic, and the account of the requests a fault found open."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

from devcluster.chaos import Tally
from devcluster.image import Image, retagged

BLOB = b"a layer's bytes, untouched"


def archive(path: Path, name: str) -> Image:
    manifest = {"digest": "sha256:0", "annotations": {"io.containerd.image.name": name}}
    index = {"schemaVersion": 2, "manifests": [manifest]}
    with tarfile.open(path, "w") as tar:
        for member, body in (("oci-layout", b"{}"), ("index.json", json.dumps(index).encode()), ("blobs/x", BLOB)):
            info = tarfile.TarInfo(member)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return Image(name, path)


def test_a_retagged_image_differs_from_its_source_in_the_names_of_its_index_alone(tmp_path: Path) -> None:
    source = archive(tmp_path / "hearth.oci.tar", "localhost/hearth:abc")
    image = retagged(source, "abc-up1", tmp_path / "out")
    assert image.ref == "localhost/hearth:abc-up1"
    with tarfile.open(image.archive) as tar:
        assert tar.getnames() == ["oci-layout", "index.json", "blobs/x"]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert tar.extractfile("blobs/x").read() == BLOB  # type: ignore[union-attr]
    annotations = index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == "localhost/hearth:abc-up1"
    assert annotations["org.opencontainers.image.ref.name"] == "localhost/hearth:abc-up1"
    assert index["manifests"][0]["digest"] == "sha256:0"
    with tarfile.open(source.archive) as tar:  # the source is left as it was
        assert "abc-up1" not in tar.extractfile("index.json").read().decode()  # type: ignore[union-attr]


def test_the_requests_open_at_a_moment_are_those_begun_before_and_ended_after() -> None:
    tally = Tally()
    now = time.monotonic()
    tally.add("answered", began=now - 10)  # open at now - 5
    tally.add("failed", "connection", began=now - 3)  # begun after now - 5
    tally.add("lost", "truncated", began=now - 6)  # open at now - 5
    assert tally.open_at(now - 5) == {"answered": 1, "lost": 1}
    assert tally.open_at(now + 1) == {}  # all ended by then
    assert (tally.sent, tally.answered, dict(tally.failed), dict(tally.lost)) == (
        3,
        1,
        {"connection": 1},
        {"truncated": 1},
    )
