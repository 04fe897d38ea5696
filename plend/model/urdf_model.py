"""Other models of the robot: a user's URDF checked against the joint table, and variants.

:func:`check_robot_urdf` refuses, in one line naming the joint or the problem, a file that
is not this robot: unreadable, not URDF, a joint of the table missing, an extra driven
joint, a joint that is not revolute or turns about another axis (compared in the torso
frame at zero pose, so a file may orient its frames as it likes). First it refuses what
would hang or crash PyBullet, or feed it nonsense (:mod:`plend.model.urdf_checks`).

:func:`make_variant` writes the model as a world changes it: the torso's centre of mass
moved, a sole lowered or raised, soles with rounded edges or a convex bottom (a convex
hull mesh, which PyBullet collides stably, in place of the sole box).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plend.core.errors import ConfigError
from plend.model.robot import JOINTS, LEG_JOINT_NAMES, Side
from plend.model.sim_world import SimWorld
from plend.model.urdf_checks import check_files, check_numbers, check_structure, parse_model, read_model_text

AXIS_TOLERANCE_RAD = math.radians(2.0)
# PyBullet inflates a mesh's convex hull by this collision margin; the sole's points are
# drawn in by as much so that a rounded sole stands as high as the box it replaces.
MESH_MARGIN_M = 0.001
DRIVEN_TYPES = ("revolute", "continuous", "prismatic", "planar", "floating")


@dataclass(frozen=True)
class RobotModel:
    """A URDF that passed :func:`check_robot_urdf`: its text, where it came from, its root
    link, the foot link of each side, and the mesh and texture files it names (each
    ``filename`` as written, mapped to the absolute path of the file that was checked)."""

    path: Path
    text: str
    root: str
    feet: dict[Side, str]
    files: dict[str, Path] = field(default_factory=dict)


def check_robot_urdf(path: Path) -> RobotModel:
    """Parse ``path`` and check it is this robot; raise :class:`ConfigError` otherwise."""
    text = read_model_text(path)
    root = parse_model(path, text)
    if root.tag != "robot":
        raise ConfigError(
            f"robot model {path} is not a URDF file (its root element is <{root.tag}>, not <robot>)"
        )
    check_structure(path, root)
    check_numbers(path, root)
    # Direct children only, as URDF readers take them: a <transmission> names joints too.
    joints = {j.get("name", ""): j for j in root.findall("joint")}
    _check_joint_set(path, joints)
    frames = _joint_frames(path, joints)
    for j in JOINTS:
        _check_joint(path, joints[j.name], frames[j.name], j.axis)
    children = {j.find("child").get("link") for j in joints.values()}  # type: ignore[union-attr]
    roots = [link.get("name", "") for link in root.findall("link") if link.get("name") not in children]
    if len(roots) != 1:
        raise ConfigError(
            f"robot model {path} must have one root link (the torso); it has {len(roots)}: {roots}"
        )
    feet: dict[Side, str] = {
        side: joints[LEG_JOINT_NAMES[side][5]].find("child").get("link", "")  # type: ignore[union-attr]
        for side in ("right", "left")
    }
    return RobotModel(path=path, text=text, root=roots[0], feet=feet, files=check_files(path, root))


def _check_joint_set(path: Path, joints: dict[str, ET.Element]) -> None:
    names = {j.name for j in JOINTS}
    missing = [j.name for j in JOINTS if j.name not in joints]
    if missing:
        raise ConfigError(
            f"robot model {path} lacks joint(s) {', '.join(missing)}; "
            "the robot's 18 joints must all be there by name"
        )
    extra = [n for n, j in joints.items() if n not in names and j.get("type") in DRIVEN_TYPES]
    if extra:
        raise ConfigError(
            f"robot model {path} has driven joint(s) the robot does not: {', '.join(extra)}; "
            "make them fixed or remove them"
        )
    for name in names:
        element = joints[name]
        if element.get("type") != "revolute":
            raise ConfigError(
                f"robot model {path}: joint {name} is {element.get('type')!r}; it must be revolute"
            )
        for tag in ("parent", "child"):
            if element.find(tag) is None or not element.find(tag).get("link"):  # type: ignore[union-attr]
                raise ConfigError(f"robot model {path}: joint {name} has no <{tag} link=...>")


def _numbers(path: Path, where: str, text: str | None, default: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in (text if text is not None else default).split()])
    except ValueError:
        raise ConfigError(f"robot model {path}: {where} must be three numbers, got {text!r}") from None
    if values.shape != (3,) or not np.all(np.isfinite(values)):
        raise ConfigError(f"robot model {path}: {where} must be three numbers, got {text!r}")
    return values


def _rpy_matrix(rpy: np.ndarray) -> np.ndarray:
    r, p, y = rpy
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _joint_frames(path: Path, joints: dict[str, ET.Element]) -> dict[str, np.ndarray]:
    """Orientation of every joint's frame in the root link's frame at zero pose."""
    by_child = {j.find("child").get("link"): j for j in joints.values()}  # type: ignore[union-attr]

    def frame(joint: ET.Element, depth: int = 0) -> np.ndarray:
        if depth > len(joints):
            raise ConfigError(f"robot model {path}: the joints form a loop at {joint.get('name')}")
        origin = joint.find("origin")
        rpy = _numbers(
            path,
            f"joint {joint.get('name')} origin rpy",
            None if origin is None else origin.get("rpy"),
            "0 0 0",
        )
        parent = by_child.get(joint.find("parent").get("link"))  # type: ignore[union-attr]
        above = np.eye(3) if parent is None else frame(parent, depth + 1)
        return above @ _rpy_matrix(rpy)

    return {name: frame(j) for name, j in joints.items()}


def _check_joint(path: Path, element: ET.Element, frame: np.ndarray, expected: tuple[float, ...]) -> None:
    name = element.get("name")
    axis_element = element.find("axis")
    axis = _numbers(
        path, f"joint {name} axis", None if axis_element is None else axis_element.get("xyz"), "1 0 0"
    )
    norm = float(np.linalg.norm(axis))
    if norm < 1e-9:
        raise ConfigError(f"robot model {path}: joint {name} has a zero axis")
    found = frame @ (axis / norm)
    if float(np.dot(found, expected)) < math.cos(AXIS_TOLERANCE_RAD):
        shown = " ".join(f"{v:+.3f}" for v in found)
        want = " ".join(f"{v:+.0f}" for v in expected)
        raise ConfigError(
            f"robot model {path}: joint {name} turns about ({shown}) in the torso frame; "
            f"the robot's turns about ({want})"
        )


# -- variants ------------------------------------------------------------------------------


def make_variant(model: RobotModel, world: SimWorld, directory: Path) -> Path:
    """Write ``model`` as ``world`` changes it into ``directory``; return the URDF's path."""
    root = ET.fromstring(model.text)
    _checked_files(root, model.files)
    links = {link.get("name"): link for link in root.findall("link")}
    _move_com(model, links[model.root], world.torso_com_mm)
    for side, height in (("right", world.sole_height_right_mm), ("left", world.sole_height_left_mm)):
        foot = links[model.feet[side]]  # type: ignore[index]
        if world.sole_edge_radius_mm or world.sole_crown_mm:
            _round_sole(model, foot, world, directory / f"{side}_sole.obj")
        _lower(foot, height / 1000.0)
    out = directory / "robot.urdf"
    out.write_text(ET.tostring(root, encoding="unicode"), encoding="utf-8")
    return out


def _checked_files(root: ET.Element, files: dict[str, Path]) -> None:
    """Name each mesh and texture by the file that was checked: the variant is written
    elsewhere, where PyBullet would look for relative names in other places."""
    for element in [*root.iter("mesh"), *root.iter("texture")]:
        name = element.get("filename", "")
        if name in files:
            element.set("filename", str(files[name]))


def _move_com(model: RobotModel, link: ET.Element, offset_mm: tuple[float, float, float]) -> None:
    if not any(offset_mm):
        return
    inertial = link.find("inertial")
    if inertial is None:
        raise ConfigError(f"robot model {model.path}: the torso link {model.root} has no <inertial> to move")
    origin = inertial.find("origin")
    if origin is None:
        origin = ET.SubElement(inertial, "origin")
    xyz = _numbers(model.path, f"link {model.root} inertial origin", origin.get("xyz"), "0 0 0")
    origin.set("xyz", " ".join(f"{v:.6g}" for v in xyz + np.asarray(offset_mm) / 1000.0))


def _lower(foot: ET.Element, metres: float) -> None:
    """Move the foot's shapes down (its frame's -z) by ``metres``."""
    if not metres:
        return
    for tag in ("collision", "visual"):
        for shape in foot.findall(tag):
            origin = shape.find("origin")
            if origin is None:
                origin = ET.SubElement(shape, "origin")
            xyz = [float(v) for v in (origin.get("xyz") or "0 0 0").split()]
            xyz[2] -= metres
            origin.set("xyz", " ".join(f"{v:.6g}" for v in xyz))


def _round_sole(model: RobotModel, foot: ET.Element, world: SimWorld, mesh_path: Path) -> None:
    collisions = foot.findall("collision")
    boxes = [c for c in collisions if c.find("geometry/box") is not None]
    if len(collisions) != 1 or len(boxes) != 1:
        raise ConfigError(
            f"robot model {model.path}: rounded or convex soles need the foot link {foot.get('name')} "
            "to collide as one box; use sim.sole_edge_radius_mm = 0 and sim.sole_crown_mm = 0 with this model"
        )
    collision = boxes[0]
    box = collision.find("geometry/box")
    size = _numbers(model.path, f"link {foot.get('name')} box size", box.get("size"), "")  # type: ignore[union-attr]
    mesh_path.write_text(
        sole_mesh_obj(size, world.sole_edge_radius_mm / 1000.0, world.sole_crown_mm / 1000.0)
    )
    geometry = collision.find("geometry")
    geometry.remove(box)  # type: ignore[union-attr, arg-type]
    ET.SubElement(geometry, "mesh", filename=str(mesh_path))  # type: ignore[arg-type]


def sole_points(size: np.ndarray, radius: float, crown: float) -> np.ndarray:
    """Points whose convex hull is a sole of ``size`` (x, y, z) centred on the origin, its
    bottom edges rounded with ``radius`` and its bottom bulging ``crown`` at the centre.

    The lowest point stays at the box's bottom, so the leg's length at the sole's centre
    is unchanged; the rim rises by ``crown``.
    """
    a, b, h = (float(v) / 2 - MESH_MARGIN_M for v in size)
    r = min(radius, a, b)
    rim = -h + crown
    top = max(h, rim + r)
    points = [(sx * a, sy * b, top) for sx in (-1, 1) for sy in (-1, 1)]
    for theta in np.linspace(0.0, math.pi / 2, 7):
        inset = r * (1.0 - math.sin(theta))
        z = rim + r * (1.0 - math.cos(theta))
        points += [(sx * (a - inset), sy * (b - inset), z) for sx in (-1, 1) for sy in (-1, 1)]
    if crown > 0:
        for u in np.linspace(-1.0, 1.0, 9):
            for v in np.linspace(-1.0, 1.0, 9):
                points.append((u * (a - r), v * (b - r), rim - crown * (1 - u * u) * (1 - v * v)))
    return np.asarray(points)


def sole_mesh_obj(size: np.ndarray, radius: float, crown: float) -> str:
    """A Wavefront OBJ of :func:`sole_points` for PyBullet, which collides with the convex
    hull of a mesh's vertices; the triangles only make every vertex part of the mesh."""
    points = sole_points(size, radius, crown)
    lines = [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in points]
    count = len(points)
    lines += [f"f {i + 1} {(i + 1) % count + 1} {(i + 2) % count + 1}" for i in range(0, count, 2)]
    return "\n".join(lines) + "\n"
