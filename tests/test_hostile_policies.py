"""Policy files made to hurt the daemon: numbers out of range in their metadata, graphs
that would allocate gigabytes, names no file can have; and the inference check at load,
which stops as soon as its verdict is clear."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from policies import library  # noqa: E402
from policies.contract import METADATA_KEY, NUMBER_RANGES, PolicyError  # noqa: E402
from policies.graph_sizes import MAX_ELEMENTS, GraphSizeError, check_sizes  # noqa: E402
from policies.onnx_file import MAX_NODES, read_model  # noqa: E402
from policies.runner import load_runner  # noqa: E402
from policies.timing import CHECK_EVERY, RUNS, time_inference  # noqa: E402
from tests.support import Daemon  # noqa: E402
from tests.test_policy import SPEC  # noqa: E402  (the policy those tests build)

N_OBS = SPEC.observation_size


def save(
    path: Path, nodes: list[Any], initialisers: Sequence[Any] = (), metadata: str | None = None,
    input_shape: list[Any] | None = ["batch", N_OBS],  # noqa: B006 - never changed
) -> Path:  # fmt: skip
    """A policy whose graph is ``nodes``, reading ``observation`` and making ``action``."""
    x = helper.make_tensor_value_info("observation", TensorProto.FLOAT, input_shape)
    y = helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 12])
    graph = helper.make_graph(nodes, "p", [x], [y], list(initialisers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: metadata if metadata is not None else SPEC.to_json()})
    onnx.save(model, path)
    return path


def const(name: str, values: Any, dtype: Any = np.int64) -> Any:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def zero_policy(path: Path, metadata: str | None = None) -> Path:
    weights = const("W", np.zeros((N_OBS, 12)), np.float32)
    return save(path, [helper.make_node("MatMul", ["observation", "W"], ["action"])], [weights], metadata)


def first_twelve_plus(total: str) -> tuple[list[Any], list[Any]]:
    """Nodes giving ``action`` = the observation's first 12 values + the scalar ``total``."""
    nodes = [
        helper.make_node("Slice", ["observation", "zero", "twelve", "one"], ["first"]),
        helper.make_node("Add", ["first", total], ["action"]),
    ]
    return nodes, [const("zero", [0]), const("twelve", [12]), const("one", [1])]


def bomb_nodes(count: int) -> tuple[list[Any], list[Any]]:
    """ConstantOfShape([count]) -> ReduceSum: ``count`` floats made only to be summed."""
    tail, tail_init = first_twelve_plus("sum")
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=fill),
        helper.make_node("ReduceSum", ["big"], ["sum"], keepdims=0),
        *tail,
    ]
    return nodes, [const("shape", [count]), *tail_init]


def metadata_with(path: str, value: float) -> str:
    data = json.loads(SPEC.to_json())
    if path == "action.offset":
        data["action"].update(mode="absolute", offset=[0.0] * 11 + [value])
    elif path.startswith("action."):
        data["action"][path.split(".")[1]][3] = value
    elif path == "observation size":
        data["observation"][0]["size"] = value
    else:
        data[path] = value
    return json.dumps(data)  # json writes NaN and Infinity, as a crafted file may


@pytest.mark.parametrize(
    "field", ["action.scale", "action.offset", "rate_hz", "gait_speed", "observation size"]
)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e308])
def test_a_number_out_of_range_in_the_metadata_is_refused_naming_it(
    tmp_path: Path, field: str, value: float
) -> None:
    path = zero_policy(tmp_path / "p.onnx", metadata_with(field, value))
    with pytest.raises(PolicyError) as info:
        load_runner(path, 50.0, "sim", None)
    message = str(info.value)
    low, high, _ = NUMBER_RANGES[field]
    assert "\n" not in message and str(path) in message, message
    if field == "observation size" and not np.isfinite(value):
        assert "malformed" in message  # not even an integer
        return
    assert field in message and f"[{low:.4g}, {high:.4g}]" in message, message
    assert repr(value)[:12] in message, message


def test_metadata_nested_past_any_policy_is_one_line_and_listed_as_a_problem(tmp_path: Path) -> None:
    data = json.loads(SPEC.to_json())
    text = json.dumps(data)[:-1] + ', "notes": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = zero_policy(tmp_path / "deep.onnx", text)
    with pytest.raises(PolicyError, match="malformed") as info:
        load_runner(path, 50.0, "sim", None)
    assert "\n" not in str(info.value)
    problem = library.describe(path)["problem"]  # what 'plenctl policy list' shows for it
    assert "not a plend policy" in problem and "nested" in problem


def test_numbers_in_range_still_load(tmp_path: Path) -> None:
    data = json.loads(SPEC.to_json())
    data["action"]["scale"] = [-np.pi] + [np.pi] * 11
    runner = load_runner(zero_policy(tmp_path / "edge.onnx", json.dumps(data)), 50.0, "sim", None)
    assert runner.spec.action_scale[0] == -np.pi


def test_a_graph_that_would_allocate_gigabytes_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = save(tmp_path / "bomb.onnx", *bomb_nodes(10**9))
    with pytest.raises(PolicyError) as info:
        load_runner(path, 50.0, "sim", None)
    message = str(info.value)
    assert "\n" not in message and "ConstantOfShape node big would hold 1,000,000,000 values" in message
    assert f"over the {MAX_ELEMENTS:,}" in message


def _bombs() -> Iterator[tuple[str, list[Any], list[Any], str]]:
    tail, init = first_twelve_plus("sum")
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [1], [1.0])
    reduce = helper.make_node("ReduceSum", ["big"], ["sum"], keepdims=0)
    yield "expand", [helper.make_node("Expand", ["one_f", "shape"], ["big"]), reduce, *tail], [
        const("one_f", [1.0], np.float32), const("shape", [100_000, 100_000]), *init,
    ], "Expand node big"  # fmt: skip
    yield "tile", [helper.make_node("Tile", ["row", "reps"], ["big"]), reduce, *tail], [
        const("row", np.ones((1, 1000)), np.float32), const("reps", [100_000, 1]), *init,
    ], "Tile node big"  # fmt: skip
    yield "range", [helper.make_node("Range", ["r0", "r1", "r2"], ["big"]), reduce, *tail], [
        const("r0", 0.0, np.float32), const("r1", 1e9, np.float32), const("r2", 1.0, np.float32), *init,
    ], "Range node big"  # fmt: skip
    # Two modest vectors whose outer product is 10^8 values: sizes grow through broadcasting too.
    yield "outer product", [helper.make_node("MatMul", ["col", "row"], ["big"]), reduce, *tail], [
        const("col", np.ones((10_000, 1)), np.float32), const("row", np.ones((1, 10_000)), np.float32), *init,
    ], "MatMul node big would hold 100,000,000"  # fmt: skip
    many = [helper.make_node("ConstantOfShape", ["shape"], [f"big{i}"], value=fill) for i in range(4)]
    sums = [helper.make_node("Sum", [f"big{i}" for i in range(4)], ["big"]), reduce]
    yield "many under the limit", [*many, *sums, *tail], [const("shape", [9_000_000]), *init], "in all"
    # A size that depends on what the policy is fed cannot be checked before it runs.
    shape_from_input = [
        helper.make_node("Cast", ["observation"], ["as_int"], to=TensorProto.INT64),
        helper.make_node("Slice", ["as_int", "zero", "one", "one"], ["n"]),
        helper.make_node("Reshape", ["n", "one"], ["n1"]),
        helper.make_node("ConstantOfShape", ["n1"], ["big"], value=fill), reduce, *tail,
    ]  # fmt: skip
    yield "size from the input", shape_from_input, init, "shape is computed at run time"
    loop_body = helper.make_graph([], "body", [], [])
    yield (
        "a loop",
        [helper.make_node("Loop", ["", ""], ["sum"], body=loop_body), *tail],
        init,
        "operator Loop",
    )


@pytest.mark.parametrize("case", [c[0] for c in _bombs()])
def test_every_way_to_a_huge_tensor_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    _, nodes, init, fragment = next(c for c in _bombs() if c[0] == case)
    path = save(tmp_path / "bomb.onnx", nodes, init)
    with pytest.raises(GraphSizeError, match=fragment) as info:
        check_sizes(read_model(path.read_bytes()))
    assert "\n" not in str(info.value)
    with pytest.raises(PolicyError, match=fragment):
        load_runner(path, 50.0, "sim", None)


def test_an_input_declared_without_a_shape_is_sized_as_it_is_fed(tmp_path: Path) -> None:
    tail, init = first_twelve_plus("sum")
    nodes = [helper.make_node("Tile", ["observation", "reps"], ["big"]),
             helper.make_node("ReduceSum", ["big"], ["sum"], keepdims=0), *tail]  # fmt: skip
    path = save(tmp_path / "shapeless.onnx", nodes, [const("reps", [1_000_000, 1]), *init], input_shape=None)
    with pytest.raises(PolicyError, match=f"Tile node big would hold {N_OBS * 1_000_000:,} values"):
        load_runner(path, 50.0, "sim", None)


def test_a_graph_of_very_many_nodes_is_refused_without_decoding_it_all(tmp_path: Path) -> None:
    chain = [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"]) for i in range(MAX_NODES + 5)]
    nodes = [helper.make_node("Identity", ["observation"], ["t0"]), *chain]
    last = helper.make_node("Slice", [f"t{MAX_NODES + 5}", "zero", "twelve", "one"], ["action"])
    path = save(tmp_path / "chain.onnx", [*nodes, last], first_twelve_plus("x")[1])
    with pytest.raises(PolicyError, match=f"over {MAX_NODES:,} nodes"):
        load_runner(path, 50.0, "sim", None)


def test_sizes_computed_from_constants_and_the_input_shape_are_followed(tmp_path: Path) -> None:
    """An MLP as exporters write it: the batch size read with Shape -> Gather, a Reshape to
    it, a Constant; all sized, and it loads."""
    nodes = [
        helper.make_node("Shape", ["observation"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero_s"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "zero"], ["batch1"]),
        helper.make_node("Constant", [], ["minus_one"], value_ints=[-1]),
        helper.make_node("Concat", ["batch1", "minus_one"], ["flat"], axis=0),
        helper.make_node("Reshape", ["observation", "flat"], ["x"]),
        helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1),
        helper.make_node("Tanh", ["h"], ["action"]),
    ]
    init = [const("zero_s", 0), const("zero", [0]), const("W", np.zeros((12, N_OBS)), np.float32),
            const("b", np.zeros(12), np.float32)]  # fmt: skip
    path = save(tmp_path / "mlp.onnx", nodes, init)
    assert check_sizes(read_model(path.read_bytes())) < 2000
    assert load_runner(path, 50.0, "sim", None).spec == SPEC
    shipped = Path(library.__file__).parent / "walk.onnx"
    assert check_sizes(read_model(shipped.read_bytes())) < 30_000


RSS_SCRIPT = """
import sys
from pathlib import Path
from policies.contract import PolicyError
from policies.runner import load_runner

def figures():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])

load_runner(Path(sys.argv[2]), 50.0, "sim", None)  # the engine and its imports, once
rss, peak = figures()
try:
    load_runner(Path(sys.argv[1]), 50.0, "sim", None)
except PolicyError:
    pass
after, after_peak = figures()
print(rss, peak, after, after_peak)
"""


@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
def test_a_refused_graph_leaves_the_memory_as_it_was(tmp_path: Path, engine: str) -> None:
    bomb = save(tmp_path / "bomb.onnx", *bomb_nodes(10**9))
    good = zero_policy(tmp_path / "good.onnx")
    env = {**os.environ, "PLEND_POLICY_ENGINE": engine}
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(bomb), str(good)], capture_output=True,
                         text=True, env=env, timeout=120, check=True).stdout  # fmt: skip
    rss, peak, after, after_peak = map(int, out.split())
    print(f"{engine}: VmRSS {rss} -> {after} KiB, peak {peak} -> {after_peak} KiB")
    assert after - rss < 20 * 1024 and after_peak - peak < 20 * 1024  # not the 4 GB the graph asks


def ticks(*durations: float) -> Callable[[], float]:
    readings = itertools.cycle([v for d in durations for v in (0.0, d)])
    return lambda: next(readings)


def test_a_clearly_fast_policy_is_timed_in_a_few_runs() -> None:
    calls: list[int] = []
    timing = time_inference(lambda: calls.append(1), 5.0, clock=ticks(2e-5), cpu_clock=ticks(2e-5))
    assert timing.runs == CHECK_EVERY == len(calls) and timing.attempts == 1 and timing.fits


def test_a_clearly_slow_policy_is_refused_without_hundreds_of_runs() -> None:
    calls: list[int] = []
    waits: list[float] = []
    timing = time_inference(lambda: calls.append(1), 5.0, clock=ticks(0.02), cpu_clock=ticks(0.02),
                            pause=waits.append)  # fmt: skip
    assert len(calls) == CHECK_EVERY and not waits and not timing.fits
    assert timing.cpu_p50 == pytest.approx(20.0)


def test_an_unclear_verdict_is_measured_in_full() -> None:
    # Wall times near the budget, CPU well within it: neither clear, so all the runs.
    timing = time_inference(
        lambda: None, 5.0, clock=ticks(0.004), cpu_clock=ticks(1e-4), pause=lambda s: None
    )
    assert timing.runs == RUNS and timing.attempts == 1 and timing.fits and not timing.tail_over


def test_the_refusal_gives_the_figures_it_decided_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import policies.runner as runner_module

    monkeypatch.setattr(runner_module, "BUDGET_FRACTION", 1e-6)  # a budget of 0.02 us
    with pytest.raises(PolicyError) as info:
        load_runner(zero_policy(tmp_path / "p.onnx"), 50.0, "sim", None)
    message = str(info.value)
    assert "ms of CPU at the median of" in message and "wall median" in message and "p99" in message
    assert "over the 2e-05 ms budget (a quarter of the 20 ms tick)" in message and "fits" not in message


@pytest.mark.parametrize(
    ("wanted", "fragment"),
    [
        ("w" * 300, "is too long (300 bytes, a file name has at most 255)"),
        ("w" * 300 + ".onnx", "is too long"),
        ("/tmp/" + "w" * 300 + ".onnx", "is too long"),
        ("/" + "a/" * 2100 + "p.onnx", "is too long (a path has at most 4095 bytes"),
        ("walk\0.onnx", "contains a NUL character"),
    ],
)
def test_names_no_file_can_have_are_refused_in_one_line(tmp_path: Path, wanted: str, fragment: str) -> None:
    with pytest.raises(library.PolicyNotFoundError, match=re.escape(fragment)) as info:
        library.find(wanted, tmp_path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_symbolic_link_loops_are_refused_naming_them(tmp_path: Path) -> None:
    (tmp_path / "a.onnx").symlink_to(tmp_path / "b.onnx")
    (tmp_path / "b.onnx").symlink_to(tmp_path / "a.onnx")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "loop.onnx").symlink_to(tmp_path / "policies" / "loop.onnx")
    for wanted in (str(tmp_path / "a.onnx"), str(tmp_path / "a.onnx" / "x.onnx"), "loop"):
        with pytest.raises(library.PolicyNotFoundError, match="a symbolic link loop"):
            library.find(wanted, tmp_path)
    dangling = tmp_path / "dangling.onnx"
    dangling.symlink_to(tmp_path / "missing.onnx")
    assert library.find(str(dangling), tmp_path) == dangling  # the loader says what is wrong with it


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    pytest.importorskip("pybullet")
    d = Daemon(tmp_path_factory.mktemp("hostile_policies"))
    yield d
    d.stop()


def _rss_kib(pid: int) -> int:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0])


def test_the_daemon_refuses_each_hostile_policy_and_carries_on(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = zero_policy(tmp_path / "good.onnx")
    assert daemon.ctl("policy", "load", str(good)) == 0  # the engine loaded once, before measuring
    capsys.readouterr()
    before = _rss_kib(daemon.proc.pid)
    nan = zero_policy(tmp_path / "nan.onnx", metadata_with("action.scale", float("nan")))
    huge = zero_policy(tmp_path / "huge.onnx", metadata_with("action.scale", 1e308))
    for wanted, fragment in [
        (str(save(tmp_path / "bomb.onnx", *bomb_nodes(10**9))), "would hold 1,000,000,000 values"),
        (str(nan), "action.scale[3] = nan"),
        (str(huge), "action.scale[3] = 1e+308"),
        ("w" * 300, "is too long"),
    ]:
        assert daemon.ctl("policy", "load", wanted) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("plenctl: error: ") and "\n" not in err and fragment in err, err
        assert "internal" not in err and "Traceback" not in err
    grown = _rss_kib(daemon.proc.pid) - before
    print(f"daemon VmRSS {before} KiB, {grown:+} KiB after the hostile loads")
    assert grown < 20 * 1024
    assert daemon.status()["mode"] == "stand"
