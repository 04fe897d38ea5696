"""Benchmark: the camera pose source. Run ``.venv/bin/python tests/benchmarks/camera.py [SECONDS]``.

1. Accuracy: the emulated camera (640x480, 30 fps, 1 m above the floor, lens distortion,
   noise 2 grey levels, blur 0.7 px) films 20 s of the sine gait at 0.5; the tracker's
   error against the simulation's truth, with the camera's exact model and with the
   model found by the ChArUco and floor calibration from emulated views.
2. Detection + pose time per frame on one thread (tracking, and a full-frame search).
3. Beside a real-time daemon (simulation, 50 Hz, walking): the loop's lateness and
   overruns without and with ``plend track --camera emulated --socket`` at 30 fps, and
   the pose latency from capture to the daemon. SECONDS per run (default 20).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from calibration.camera import board_points, fit_intrinsics, measure_floor  # noqa: E402
from plend.core.config import Config  # noqa: E402
from plend.track.detect import make_tracker  # noqa: E402
from plend.track.emulated import EmulatedCamera  # noqa: E402
from plend.track.geometry import Pose  # noqa: E402
from plend.track.markers import cv2_module  # noqa: E402
from plend.track.rehearse import rehearse  # noqa: E402
from tests.support import Daemon  # noqa: E402


def accuracy() -> None:
    config = Config()
    camera = EmulatedCamera(config.track)
    views = [v for v in map(board_points, camera.board_views(15)) if v is not None]
    record = measure_floor(
        fit_intrinsics(views, camera.size, "emulated"), [camera.render(None)] * 5, config.track
    )
    print("accuracy, 20 s walk at 0.5 (emulated camera 640x480 30 fps, 1 m up, noise 2, blur 0.7 px)")
    print(f"{'model':<22}{'frames':>7}{'lost':>6}{'pos p50':>9}{'p95':>7}{'max mm':>8}{'yaw p50':>9}"
          f"{'p95':>6}{'max deg':>8}{'dist m':>8}{'truth m':>8}")  # fmt: skip
    for name, model in (("exact", None), (f"charuco ({record.rms_px:.2f} px)", record.model())):
        r = rehearse(config, 0.5, 20.0, model)
        p, y = r["position_error_mm"], r["yaw_error_deg"]
        print(f"{name:<22}{r['frames']:>7}{r['lost']:>6}{p['p50']:>9.2f}{p['p95']:>7.2f}{p['max']:>8.2f}"
              f"{y['p50']:>9.3f}{y['p95']:>6.2f}{y['max']:>8.2f}{r['distance_m']:>8.3f}"
              f"{r['truth']['distance_m']:>8.3f}")  # fmt: skip
        if name == "exact":
            d = r["detect_ms"]
            print(f"{'':<22}detection + pose, tracking: p50 {d['p50']:.2f} ms  p99 {d['p99']:.2f} ms  "
                  f"max {d['max']:.2f} ms (one thread)")  # fmt: skip


def full_frame_search() -> None:
    config = Config()
    camera = EmulatedCamera(config.track)
    times = []
    for i in range(100):
        truth = Pose.from_euler((0.02 * (i % 30), 0.01, 0.15), (0.0, 0.0, 0.05 * i))
        image = camera.render(truth)
        tracker = make_tracker(config.track, camera.model())  # no region of interest yet
        times.append(tracker.observe(image, 0.0).detect_s * 1000)
    p50, p99 = np.percentile(times, [50, 99])
    print(f"{'':<22}detection + pose, full-frame search: p50 {p50:.2f} ms  p99 {p99:.2f} ms")


def beside_the_loop(seconds: float) -> None:
    print(
        f"\nloop timing beside the tracker: daemon on the simulation at 50 Hz, walking, {seconds:.0f} s each"
    )
    print(f"{'tracker':<9}{'lateness p50':>13}{'p99':>8}{'max ms':>8}{'overruns':>9}{'compute p99':>12}"
          f"{'pose latency p50':>17}{'p99 ms':>8}{'rate Hz':>8}")  # fmt: skip
    for with_tracker in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            d = Daemon(Path(tmp), "--gait", "sine")
            tracker = None
            if with_tracker:
                tracker = subprocess.Popen(
                    [sys.executable, "-m", "plend.main", "--config", str(Path(tmp) / "plend.toml"), "track",
                     "--camera", "emulated", "--socket", str(d.socket), "--summary", "none"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            time.sleep(seconds)
            status = d.status()
            if tracker is not None:
                tracker.terminate()
                tracker.wait()
            d.stop()
        late, comp = status["lateness_ms"], status["compute_ms"]
        pose = status.get("pose", {})
        lat = pose.get("latency_ms", {"p50": float("nan"), "p99": float("nan")})
        label = "yes" if with_tracker else "no"
        print(f"{label:<9}{late['p50']:>13.3f}{late['p99']:>8.3f}{late['max']:>8.3f}"
              f"{status['overruns']:>9}{comp['p99']:>12.3f}{lat['p50']:>17.2f}{lat['p99']:>8.2f}"
              f"{pose.get('rate_hz', 0.0):>8.1f}")  # fmt: skip


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    cv2_module().setNumThreads(1)
    print(f"machine load (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    accuracy()
    full_frame_search()
    beside_the_loop(seconds)


if __name__ == "__main__":
    main()
