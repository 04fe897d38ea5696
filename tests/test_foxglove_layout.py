"""The Foxglove layout shipped in docs/ points at fields the recordings have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from plend.control.telemetry import TickRecord
from plend.core.recording_format import TICK_SCHEMA, TRUTH_SCHEMA, tick_message, truth_message
from plend.hal.base import ImuReading
from plend.hal.sim import TorsoTruth
from plend.model.robot import NUM_JOINTS

LAYOUT = Path(__file__).resolve().parents[1] / "docs" / "foxglove-layout.json"


def _panels(node: Any) -> set[str]:
    if isinstance(node, str):
        return {node}
    return _panels(node["first"]) | _panels(node["second"])


def _messages() -> dict[str, Any]:
    imu = ImuReading((1.0, 0.0, 0.0, 0.0), (0.1, 0.2, 0.3), (0.0, 0.0, 0.5), (0.0, 0.0, 9.8))
    truth = TorsoTruth((1.0, 2.0, 0.15), (0.1, 0.2, 0.3), (0.05, 0.0, 0.0))
    record = TickRecord(
        t=1.0, mode="sine", targets=np.zeros(NUM_JOINTS), measured=np.zeros(NUM_JOINTS), imu=imu,
        contacts=(True, False), compute_ms=1.0, lateness_ms=0.1, overruns=0, faults=(), torso=truth,
    )  # fmt: skip
    return {
        "/plend/tick": json.loads(tick_message(record)),
        "/plend/truth": json.loads(truth_message(record)),
    }


def _resolve(value: Any, schema: dict[str, Any], fields: list[str]) -> tuple[Any, dict[str, Any]]:
    for name in fields:
        value, schema = value[name], schema["properties"][name]
    return value, schema


def test_every_panel_is_placed_and_every_path_is_a_recorded_field() -> None:
    layout = json.loads(LAYOUT.read_text())
    assert _panels(layout["layout"]) == set(layout["configById"])
    messages = _messages()
    schemas = {"/plend/tick": TICK_SCHEMA, "/plend/truth": TRUTH_SCHEMA}
    paths = [p["value"] for c in layout["configById"].values() for p in c.get("paths", [])]
    assert len(paths) > 20
    for path in paths:
        topic, *fields = path.split(".")
        value, schema = _resolve(messages[topic], schemas[topic], fields)
        assert isinstance(value, (int, float, str, bool)), path
        assert schema.get("type") in ("number", "boolean", "string", ["number", "null"]), path
    raw = [c["topicPath"] for c in layout["configById"].values() if "topicPath" in c]
    assert raw == ["/plend/tick"]
