"""Benchmark: a walking policy's inference in onnxruntime, numpy and torch, and the whole tick.

Run with ``.venv/bin/python tests/benchmarks/policy_timing.py [FILE]`` (default
policies/walk.onnx; needs the [train] extra for the torch side). Prints, on one thread:
the ONNX model's inference time as the daemon runs it, in plend's numpy evaluator (what
runs where onnxruntime is missing), the same network's forward pass in
torch (weights read back from the ONNX file), and the whole tick's compute time on the
policy path in the simulation, p50/p99 in microseconds or milliseconds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from plend.core.config import Config
from plend.daemon.headless import RunOptions, run
from policies.runner import load_runner

REPEATS = 2000


def percentiles_us(fn, repeats: int = REPEATS) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    p50, p99 = np.percentile(times, [50, 99]) * 1e6
    return float(p50), float(p99)


def torch_twin(path: Path):  # type: ignore[no-untyped-def]
    """The ONNX graph rebuilt as torch modules, node by node (an MLP: Gemm or MatMul + Add
    layers with Relu/Tanh between), with the file's own weights."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    layers: list[torch.nn.Module] = []
    for node in graph.node:
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            weight = init[node.input[1]]
            linear = torch.nn.Linear(1, 1)
            linear.weight = torch.nn.Parameter(weight if trans_b else weight.T)
            linear.bias = torch.nn.Parameter(init[node.input[2]]) if len(node.input) > 2 else None  # type: ignore[assignment]
            layers.append(linear)
        elif node.op_type == "MatMul" and node.input[1] in init:
            linear = torch.nn.Linear(1, 1, bias=False)
            linear.weight = torch.nn.Parameter(init[node.input[1]].T)
            layers.append(linear)
        elif node.op_type == "Add" and node.input[1] in init and isinstance(layers[-1], torch.nn.Linear):
            layers[-1].bias = torch.nn.Parameter(init[node.input[1]])
        elif node.op_type in ("Relu", "Tanh"):
            layers.append(torch.nn.ReLU() if node.op_type == "Relu" else torch.nn.Tanh())
    return torch.nn.Sequential(*layers).eval()


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "policies/walk.onnx").resolve()
    runner = load_runner(path, 50.0, "sim", None)
    obs = np.zeros((1, runner.spec.observation_size), dtype=np.float32)
    spec = runner.spec
    print(f"{path.name}: {spec.observation_size} observations -> {len(spec.action_joints)} actions")
    p50, p99 = percentiles_us(lambda: runner.act(obs))
    print(f"{runner.engine + ' (1 thread)':<24} inference p50 {p50:7.1f} us  p99 {p99:7.1f} us")
    from policies.numpy_onnx import NumpySession

    numpy_runner = NumpySession(path)  # what runs policies where onnxruntime cannot be installed
    p50, p99 = percentiles_us(lambda: numpy_runner.run(None, {"observation": obs}))
    print(f"numpy evaluator          inference p50 {p50:7.1f} us  p99 {p99:7.1f} us")
    try:
        import torch

        torch.set_num_threads(1)
        net = torch_twin(path)
        x = torch.from_numpy(obs)
        with torch.no_grad():
            p50, p99 = percentiles_us(lambda: net(x))
        print(f"torch (1 thread)         forward   p50 {p50:7.1f} us  p99 {p99:7.1f} us")
    except ImportError:
        print("torch not installed: ./install.sh --dev adds it")
    summary = run(Config(), RunOptions(duration_s=20.0, fast=True, policy=path))
    policy_tick = summary["tick_compute_ms"]
    gait_tick = run(Config(), RunOptions(speed=0.5, duration_s=20.0, fast=True))["tick_compute_ms"]
    print(
        f"whole tick, policy path  p50 {policy_tick['p50']:.3f} ms  p99 {policy_tick['p99']:.3f} ms "
        "(physics included)"
    )
    print(f"whole tick, sine gait    p50 {gait_tick['p50']:.3f} ms  p99 {gait_tick['p99']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
