"""`hearth dev` commands find the cluster a state folder holds: `down`, `env` and `status` use the ports and
address range `up` was given (a `down` with the defaults once left another range's pods and bridge running)."""

from __future__ import annotations

from pathlib import Path

from devcluster.layout import Layout
from hearth.cli import build_parser
from hearth.dev_cmd import _layout


def test_a_state_folder_remembers_its_layout(tmp_path: Path) -> None:
    assert Layout.of(tmp_path) == Layout(tmp_path, 16400, 10)  # nothing recorded: the defaults
    Layout.of(tmp_path, 36400, 40).record()
    assert Layout.of(tmp_path) == Layout(tmp_path, 36400, 40)
    assert Layout.of(tmp_path, pod_net=41) == Layout(tmp_path, 36400, 41)  # a value given wins
    (tmp_path / "layout.json").write_text("{broken")
    assert Layout.of(tmp_path) == Layout(tmp_path, 16400, 10)


def test_down_without_flags_stops_what_up_started(tmp_path: Path) -> None:
    parser = build_parser()
    up = parser.parse_args(["dev", "up", "--state-dir", str(tmp_path), "--port-base", "36400", "--pod-net", "40"])
    _layout(up).record()  # what `hearth dev up` does before starting
    down = parser.parse_args(["dev", "down", "--state-dir", str(tmp_path)])
    assert _layout(down).network.bridge == "hearth40" and _layout(down).port_base == 36400
