"""Starting a trainer's actor from a policy file (``python -m policies.train --init-actor FILE``).

A policy file written by :func:`policies.export.export_actor` holds the actor as a chain
of ONNX ``Gemm`` layers (weights and biases as initialisers) with ``Relu`` between them
and ``Tanh`` at the end, exactly stable-baselines3's TD3 actor. :func:`read_actor` reads
those weights back (with plend's own ONNX reader, so no ``onnx`` package is needed) and
checks the file against the spec the trainer is about to learn under: the same
observation layout, action joints, mode and scale, rate and gait, so the weights mean the
same thing there. :func:`load_actor` copies them into a model's actor (and its target).
Anything that does not fit is refused with one line naming what differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plend.core.files import FileRefusedError, read_limited
from policies.contract import METADATA_KEY, PolicyError, PolicySpec
from policies.onnx_file import Graph, OnnxFormatError, read_model

MAX_ACTOR_BYTES = 64 << 20  # an actor of 4096-unit layers is about 70 MB; walking ones are < 1 MB
PASS_THROUGH = {"Cast", "Flatten", "Identity"}  # shape/type plumbing around the layers
ACTIVATIONS = {"Relu": "ReLU", "Tanh": "Tanh"}  # ONNX op -> torch module name


@dataclass(frozen=True)
class ActorWeights:
    """An actor read from a policy file: its spec, its layers' (weight [out, in], bias
    [out]) and the activation after each layer ("ReLU", "Tanh" or "" for none)."""

    spec: PolicySpec
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    activations: tuple[str, ...]

    @property
    def hidden(self) -> list[int]:
        """The hidden layers' sizes (``--net-arch``)."""
        return [int(w.shape[0]) for w, _ in self.layers[:-1]]


def read_actor(path: Path) -> ActorWeights:
    """The actor in the policy file at ``path``; :class:`PolicyError` (one line) if it is
    not one this trainer wrote."""
    path = Path(path)
    try:
        model = read_model(read_limited(path, MAX_ACTOR_BYTES, 10.0, "--init-actor"))
    except FileRefusedError as exc:
        raise PolicyError(str(exc)) from None
    except OSError as exc:
        raise PolicyError(f"--init-actor {path}: cannot read it ({exc.strerror or exc})") from None
    except OnnxFormatError as exc:
        raise PolicyError(f"--init-actor {path}: not a valid ONNX model ({exc})") from None
    if METADATA_KEY not in model.metadata:
        raise PolicyError(f"--init-actor {path}: no '{METADATA_KEY}' metadata; it is not a plend policy")
    try:
        spec = PolicySpec.from_json(model.metadata[METADATA_KEY])
    except PolicyError as exc:
        raise PolicyError(f"--init-actor {path}: {exc}") from None
    layers, activations = _layers(path, model.graph)
    return ActorWeights(spec, layers, activations)


def _layers(path: Path, graph: Graph) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], tuple[str, ...]]:
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    activations: list[str] = []
    for node in graph.nodes:
        if node.op_type in PASS_THROUGH:
            continue
        if node.op_type in ACTIVATIONS and layers and not activations[-1]:
            activations[-1] = ACTIVATIONS[node.op_type]
        elif node.op_type == "Gemm":
            layers.append(_gemm(path, node, graph))
            activations.append("")
        else:
            raise PolicyError(
                f"--init-actor {path}: has a {node.op_type} node where policies.train's actor has "
                "Gemm/Relu/Tanh layers; only actors this trainer exported can start one"
            )
    if not layers:
        raise PolicyError(f"--init-actor {path}: has no Gemm layers; it is not a policies.train actor")
    return tuple(layers), tuple(activations)


def _gemm(path: Path, node: Any, graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    names = list(node.inputs)
    found = [graph.initializers.get(n) for n in names[1:3]]
    attrs = node.attributes
    plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
    if len(found) != 2 or found[0] is None or found[1] is None or not plain:
        raise PolicyError(f"--init-actor {path}: a Gemm layer is not a plain weight and bias layer")
    weight, bias = (np.asarray(a, dtype=np.float32) for a in found)
    if not attrs.get("transB", 0):
        weight = weight.T
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise PolicyError(
            f"--init-actor {path}: a Gemm layer's weight {weight.shape} and bias {bias.shape} disagree"
        )
    return weight, bias


def check_fits(actor: ActorWeights, spec: PolicySpec, hidden: list[int], path: Path) -> None:
    """Refuse (one line) an actor whose weights would not mean the same under ``spec``
    with hidden layers ``hidden``."""
    found = actor.spec
    checks = [
        ("observation layout", _layout(found), _layout(spec)),
        ("action joints", list(found.action_joints), list(spec.action_joints)),
        ("action mode", found.action_mode, spec.action_mode),
        ("action scale", list(found.action_scale), list(spec.action_scale)),
        ("rate (Hz)", found.rate_hz, spec.rate_hz),
        ("gait balance", found.gait_balance, spec.gait_balance),
        ("hidden layers (--net-arch)", actor.hidden, list(hidden)),
    ]
    for what, theirs, ours in checks:
        if theirs != ours:
            raise PolicyError(f"--init-actor {path}: its {what} is {theirs}, this training's is {ours}")
    sizes = [(int(w.shape[1]), int(w.shape[0])) for w, _ in actor.layers]
    if sizes[0][0] != spec.observation_size or sizes[-1][1] != len(spec.action_joints):
        raise PolicyError(
            f"--init-actor {path}: its layers take {sizes[0][0]} and give {sizes[-1][1]} values, the spec "
            f"declares {spec.observation_size} and {len(spec.action_joints)}"
        )
    if any(a != "ReLU" for a in actor.activations[:-1]) or actor.activations[-1] != "Tanh":
        raise PolicyError(
            f"--init-actor {path}: its activations are {list(actor.activations)}, a TD3 actor's are ReLU "
            "between the layers and Tanh at the end"
        )


def _layout(spec: PolicySpec) -> list[str]:
    return [f"{name}[{size}]" for name, size in spec.observation]


def load_actor(model: Any, actor: ActorWeights) -> None:
    """Copy ``actor``'s weights into a stable-baselines3 TD3 ``model``'s actor and its
    target (checked with :func:`check_fits` first)."""
    import torch

    linears = [m for m in model.actor.mu if isinstance(m, torch.nn.Linear)]
    shapes = [tuple(m.weight.shape) for m in linears]
    wanted = [tuple(w.shape) for w, _ in actor.layers]
    if shapes != wanted:
        raise PolicyError(f"--init-actor: the file's layers are {wanted}, the model's {shapes}")
    with torch.no_grad():
        for module, (weight, bias) in zip(linears, actor.layers, strict=True):
            module.weight.copy_(torch.from_numpy(weight))
            module.bias.copy_(torch.from_numpy(bias))
    model.actor_target.load_state_dict(model.actor.state_dict())
