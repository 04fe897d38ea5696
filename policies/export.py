"""Writing policy files: an actor network to ONNX, with the contract in its metadata.

:func:`export_actor` turns any torch module mapping ``[batch, observation]`` to
``[batch, action]`` (for example a stable-baselines3 TD3 actor, ``model.policy.actor``)
into a checked policy file. :func:`add_metadata` writes a :class:`PolicySpec` into an ONNX
file exported elsewhere. Both write to a temporary file next to the target and move it
into place only once it checks out, so a failed export never replaces a working policy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from plend.core.errors import require_package
from policies.contract import METADATA_KEY, PolicyError, PolicySpec

OPSET = 17
TOLERANCE = 1e-4


def export_actor(actor: Any, spec: PolicySpec, path: Path) -> Path:
    """Export ``actor`` (a ``torch.nn.Module``) under ``spec`` to ``path`` and check it.

    The model has one input, "observation" [batch, observation size] float32, and one
    output, "action". After writing, onnxruntime must load it and agree with torch
    within 1e-4 on random observations, else :class:`PolicyError` is raised and ``path``
    is left as it was.
    """
    require_package("torch", "train")
    import torch

    spec.validate()
    path = Path(path)
    actor = actor.to("cpu").eval()
    sample = torch.zeros((1, spec.observation_size), dtype=torch.float32)
    with _staged(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            # The dynamo exporter needs onnxscript, which is not a dependency; the
            # TorchScript exporter handles an MLP exactly and warns that it is legacy.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                actor, (sample,), str(tmp), input_names=["observation"], output_names=["action"],
                dynamic_axes={"observation": {0: "batch"}, "action": {0: "batch"}},
                opset_version=OPSET, dynamo=False,
            )  # fmt: skip
        add_metadata(tmp, spec)
        _compare(actor, tmp, spec)
    return path


def add_metadata(path: Path, spec: PolicySpec) -> Path:
    """Write ``spec`` under ``plend.policy`` into the ONNX file at ``path`` (in place).

    Works on any single-input, single-output float model, however it was exported.
    Raises :class:`PolicyError` if the model's sizes disagree with ``spec``.
    """
    require_package("onnx", "train")
    import onnx

    spec.validate()
    path = Path(path)
    model = onnx.load(str(path))
    _check_signature(model, spec, path)
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=spec.to_json())
    with _staged(path) as tmp:
        onnx.save(model, str(tmp))
        if PolicySpec.from_json(_session(tmp).get_modelmeta().custom_metadata_map[METADATA_KEY]) != spec:
            raise PolicyError(f"{path}: the metadata did not read back as written")
    return path


def _check_signature(model: Any, spec: PolicySpec, path: Path) -> None:
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise PolicyError(f"{path}: needs one input and one output, has {len(inputs)} and {len(outputs)}")
    for kind, node, size in (
        ("input", inputs[0], spec.observation_size),
        ("output", outputs[0], len(spec.action_joints)),
    ):
        tensor = node.type.tensor_type
        if tensor.elem_type != 1:  # onnx.TensorProto.FLOAT
            raise PolicyError(f"{path}: the {kind} {node.name!r} must be float32")
        dims = tensor.shape.dim
        if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value != size:
            raise PolicyError(f"{path}: the {kind} has size {dims[-1].dim_value}, the spec needs {size}")


def _compare(actor: Any, path: Path, spec: PolicySpec) -> None:
    import torch

    observations = np.random.default_rng(0).normal(0.0, 1.0, (64, spec.observation_size)).astype(np.float32)
    session = _session(path)
    got = session.run(None, {session.get_inputs()[0].name: observations})[0]
    with torch.no_grad():
        want = actor(torch.from_numpy(observations)).numpy()
    error = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
    if not error <= TOLERANCE:
        raise PolicyError(f"{path}: onnxruntime differs from torch by {error:.3g} (over {TOLERANCE})")


def _session(path: Path) -> Any:
    require_package("onnxruntime", "onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path``, moved onto it (fsynced) if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    # mkstemp makes the file private (0600); a policy file is read by the daemon's user.
    tmp.chmod(path.stat().st_mode & 0o777 if path.exists() else 0o644)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
