"""What a user's URDF must be before it is parsed at length or handed to PyBullet.

A model or mesh file that is a FIFO hangs the process, ``/dev/zero`` is read until memory
runs out, and PyBullet crashes the whole process on a joint named twice or a link hanging
from two joints. So :func:`plend.model.urdf_model.check_robot_urdf` makes sure, before
PyBullet sees the model, that:

- the file is read with :func:`plend.core.files.read_limited`: a regular file of at most
  :data:`MAX_URDF_BYTES`, within :data:`READ_TIMEOUT_S`;
- the XML declares no entities (a "billion laughs" document) and nests at most
  :data:`MAX_XML_DEPTH` elements;
- links and joints have unique names, every joint's parent and child link exists, a link
  hangs from one joint at most, and the joints form no loop;
- every number PyBullet reads is a finite number within a plausible bound (:data:`RULES`);
- every mesh (and texture) is found where PyBullet would look, and is a regular file of at
  most :data:`MAX_MESH_BYTES` (:data:`MAX_MESHES_BYTES` for all of them together).

Every refusal is a :class:`ConfigError` of one line naming the path, the link or joint and
what to do.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from plend.core.errors import ConfigError
from plend.core.files import FileRefusedError, check_regular, read_limited, size_text

# The packaged model is 15 KiB; a model with detailed inline geometry is still far below.
MAX_URDF_BYTES = 4 * 2**20
READ_TIMEOUT_S = 5.0
# A URDF nests robot/link/visual/geometry/mesh: 5 levels; vendor extensions a few more.
MAX_XML_DEPTH = 64
MAX_MESH_BYTES = 32 * 2**20
MAX_MESHES_BYTES = 128 * 2**20
MESH_PREFIXES = ("package://", "model://")  # PyBullet drops these and searches as below

_READ_ADVICE = (
    ("symbolic link", "fix the link or give the file's own path"),
    ("no such file", "check the path given to --urdf (or sim.urdf)"),
    ("a directory", "give the URDF file inside it, not the directory"),
    ("too long", "give a shorter path (at most 255 bytes a name, 4096 in all)"),
    ("over the", "check this is the robot's URDF (the packaged one is 15 KiB)"),
    ("not a regular file", "give a URDF file on disk, not a pipe, device or socket"),
    ("permission denied", "make it readable by the user plend runs as"),
    ("Not a directory", "check the path: a part of it is a file, not a directory"),
)


def shown(path: Path | str) -> str:
    """``path`` for a message: a very long one (ENAMETOOLONG) is shortened in the middle."""
    text = str(path)
    return text if len(text) <= 200 else f"{text[:120]}...{text[-60:]} ({len(text)} characters)"


def absolute_model_path(path: Path) -> str:
    """``path`` made absolute, its symlinks resolved where they can be. A symlink loop or a
    name too long is left in place, for :func:`read_model_text` to refuse in one line."""
    try:
        return str(path.expanduser().resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python before 3.13)
        return os.path.abspath(path)


def read_model_text(path: Path) -> str:
    """The text of the URDF at ``path``, refusing what cannot be read safely."""
    prefix = f"cannot read the robot model {shown(path)}"
    if "\0" in str(path):
        raise ConfigError(
            f"cannot read the robot model {str(path)!r}: the path holds a NUL byte; check sim.urdf"
        )
    try:
        data = read_limited(path, MAX_URDF_BYTES, READ_TIMEOUT_S, label="robot model")
    except FileRefusedError as exc:
        given = getattr(exc, "advice", "")  # what to do, where the path itself is at fault
        reason = str(exc).removeprefix(f"robot model {path}").lstrip(": ").removesuffix(f"; {given}")
        reason = f"it {reason}" if reason.startswith("is ") else reason
        advice = given or next((a for key, a in _READ_ADVICE if key in reason), "check the file and its disk")
        raise ConfigError(f"{prefix}: {reason}; {advice}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{prefix}: it is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "give the URDF file (XML text)"
        ) from None


class _TooDeepError(Exception):
    pass


class _DepthLimitedBuilder(ET.TreeBuilder):
    """Stops the parse at the first element deeper than :data:`MAX_XML_DEPTH`."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        self.depth += 1
        if self.depth > MAX_XML_DEPTH:
            raise _TooDeepError
        return super().start(tag, attrs)

    def end(self, tag: str) -> ET.Element:
        self.depth -= 1
        return super().end(tag)


def parse_model(path: Path, text: str) -> ET.Element:
    """The root element of ``text``; entities (which can expand a few bytes into gigabytes)
    and deep nesting are refused before the tree is built."""
    if "<!ENTITY" in text:
        raise ConfigError(
            f"robot model {shown(path)} declares XML entities (<!ENTITY ...>); a URDF needs none: "
            "write the values out (run xacro first if it is a xacro file)"
        )
    parser = ET.XMLParser(target=_DepthLimitedBuilder())
    try:
        parser.feed(text)
        return parser.close()
    except ET.ParseError as exc:
        raise ConfigError(f"robot model {shown(path)} is not valid XML: {exc}") from None
    except _TooDeepError:
        raise ConfigError(
            f"robot model {shown(path)} nests elements more than {MAX_XML_DEPTH} deep; "
            "a URDF needs fewer than 10 levels"
        ) from None


# -- structure ----------------------------------------------------------------------------


def check_structure(path: Path, root: ET.Element) -> None:
    """Unique names, existing parent and child links, one parent per link, no loop."""
    where = f"robot model {shown(path)}"
    link_names = _unique_names(where, root, "link")
    _unique_names(where, root, "joint")
    parent: dict[str, tuple[str, str]] = {}  # child link -> (joint, parent link)
    for joint in root.findall("joint"):
        name = joint.get("name", "")
        ends = [_end_link(where, joint, tag, link_names) for tag in ("parent", "child")]
        if ends[1] in parent:
            raise ConfigError(
                f"{where}: link {ends[1]} is the child of two joints, {parent[ends[1]][0]} and {name}; "
                "a link hangs from one joint only"
            )
        parent[ends[1]] = (name, ends[0])
    _check_no_loop(where, {child: up for child, (_, up) in parent.items()})


def _unique_names(where: str, root: ET.Element, tag: str) -> set[str]:
    names = [element.get("name", "") for element in root.findall(tag)]
    if "" in names:
        raise ConfigError(f"{where} has a <{tag}> without a name; give every {tag} a name")
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        raise ConfigError(
            f"{where} has more than one {tag} named {', '.join(twice)}; each {tag} needs its own name"
        )
    return set(names)


def _end_link(where: str, joint: ET.Element, tag: str, links: set[str]) -> str:
    element = joint.find(tag)
    link = "" if element is None else element.get("link", "")
    if not link:
        raise ConfigError(f"{where}: joint {joint.get('name')} has no <{tag} link=...>")
    if link not in links:
        raise ConfigError(
            f"{where}: joint {joint.get('name')} names {tag} link {link!r}, which the model does not "
            "define; add that <link> or correct the name"
        )
    return link


def _check_no_loop(where: str, parent: dict[str, str]) -> None:
    done: set[str] = set()
    for start in parent:
        seen: list[str] = []
        link: str | None = start
        while link is not None and link not in done:
            if link in seen:
                raise ConfigError(f"{where}: the joints form a loop through link {link}; a URDF is a tree")
            seen.append(link)
            link = parent.get(link)
        done.update(seen)


# -- numbers ------------------------------------------------------------------------------


class Rule(NamedTuple):
    """What a number must be: ``test`` (false for NaN and infinities) and in words."""

    test: Callable[[float], bool]
    words: str


LENGTH = Rule(lambda v: abs(v) <= 1.0, "within ±1 m")
ANGLE = Rule(lambda v: abs(v) <= 6.3, "within ±6.3 rad")
SIZE = Rule(lambda v: 0.0 < v <= 1.0, "above 0 and at most 1 m")
MASS = Rule(lambda v: 0.0 < v <= 10.0, "above 0 and at most 10 kg")
MOMENT = Rule(lambda v: 0.0 <= v <= 1.0, "from 0 to 1 kg m^2")
PRODUCT = Rule(lambda v: abs(v) <= 1.0, "within ±1 kg m^2")
SCALE = Rule(lambda v: 0.0 < abs(v) <= 100.0, "non-zero and within ±100")
DIRECTION = Rule(lambda v: abs(v) <= 1.0, "within ±1")
POSITIVE = Rule(lambda v: 0.0 <= v <= 1000.0, "from 0 to 1000")

_SHAPE = [
    ("geometry/box", "size", 3, SIZE),
    ("geometry/sphere", "radius", 1, SIZE),
    ("geometry/cylinder", "radius", 1, SIZE),
    ("geometry/cylinder", "length", 1, SIZE),
    ("geometry/capsule", "radius", 1, SIZE),
    ("geometry/capsule", "length", 1, SIZE),
    ("geometry/mesh", "scale", 3, SCALE),
    ("origin", "xyz", 3, LENGTH),
    ("origin", "rpy", 3, ANGLE),
]
# (element under the link or joint, attribute, how many numbers, rule)
RULES: dict[str, list[tuple[str, str, int, Rule]]] = {
    "link": [
        ("inertial/origin", "xyz", 3, LENGTH),
        ("inertial/origin", "rpy", 3, ANGLE),
        ("inertial/mass", "value", 1, MASS),
        *[("inertial/inertia", a, 1, MOMENT) for a in ("ixx", "iyy", "izz")],
        *[("inertial/inertia", a, 1, PRODUCT) for a in ("ixy", "ixz", "iyz")],
        *[(f"{kind}/{sub}", a, n, r) for kind in ("visual", "collision") for sub, a, n, r in _SHAPE],
    ],
    "joint": [
        ("origin", "xyz", 3, LENGTH),
        ("origin", "rpy", 3, ANGLE),
        ("axis", "xyz", 3, DIRECTION),
        ("limit", "lower", 1, ANGLE),
        ("limit", "upper", 1, ANGLE),
        ("limit", "effort", 1, POSITIVE),
        ("limit", "velocity", 1, POSITIVE),
        ("dynamics", "damping", 1, POSITIVE),
        ("dynamics", "friction", 1, POSITIVE),
    ],
}


def check_numbers(path: Path, root: ET.Element) -> None:
    """Refuse a value of :data:`RULES` that is not a number, not finite or out of bounds."""
    for kind, rules in RULES.items():
        for element in root.findall(kind):
            for sub, attr, count, rule in rules:
                for node in element.findall(sub):
                    text = node.get(attr)
                    if text is not None:
                        what = f"robot model {shown(path)}: {kind} {element.get('name')} {sub} {attr}"
                        _check_values(what, text, count, rule)


def _check_values(what: str, text: str, count: int, rule: Rule) -> None:
    shape = "a number" if count == 1 else "three numbers"
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise ConfigError(f"{what} must be {shape}, got {text[:40]!r}") from None
    if len(values) != count:
        raise ConfigError(f"{what} must be {shape}, got {text[:40]!r}")
    if not all(math.isfinite(v) and rule.test(v) for v in values):
        each = "" if count == 1 else "each "
        raise ConfigError(f"{what} is {text[:40]!r}; {each}must be {rule.words}")


# -- meshes -------------------------------------------------------------------------------


def check_files(path: Path, root: ET.Element) -> dict[str, Path]:
    """Every mesh and texture the model names, found as PyBullet would find it and checked;
    returns each filename as written mapped to the file's absolute path.

    A mesh that is not found is refused; a texture is only drawn in the window and
    PyBullet skips a missing one, so a missing texture is left out of the result.
    """
    where = f"robot model {shown(path)}"
    found: dict[str, Path] = {}
    total = 0
    for owner, element, required in _named_files(root):
        name = element.get("filename", "")
        if name in found or (not name and not required):
            continue
        what = f"{where}: {owner} {element.tag} {name!r}"
        if not name:
            raise ConfigError(f"{where}: {owner} has a <mesh> without a filename")
        file = _find_like_pybullet(str(path), name)
        if file is None:
            if required:
                raise ConfigError(
                    f"{what} is not found; put it beside the model ({shown(path.parent)}) "
                    "or give its absolute path"
                )
            continue
        total += _check_file(what, file)
        if total > MAX_MESHES_BYTES:
            raise ConfigError(
                f"{where}: its meshes come to over {size_text(MAX_MESHES_BYTES)}; "
                "simplify them (PyBullet collides with convex hulls)"
            )
        found[name] = Path(os.path.abspath(file))
    return found


def _named_files(root: ET.Element) -> list[tuple[str, ET.Element, bool]]:
    files = []
    for link in root.findall("link"):
        owner = f"link {link.get('name')}"
        for kind in ("visual", "collision"):
            files += [(owner, mesh, True) for mesh in link.findall(f"{kind}/geometry/mesh")]
        files += [(owner, texture, False) for texture in link.findall("visual/material/texture")]
    for material in root.findall("material"):
        files += [(f"material {material.get('name')}", t, False) for t in material.findall("texture")]
    return files


def mesh_candidates(urdf: str, name: str) -> list[str]:
    """Where PyBullet looks for the mesh ``name`` of the URDF ``urdf``, in its order: the name
    as it stands, then under each directory of the URDF's path from the deepest, then
    ``.``, ``..`` and ``../..``. It opens each in turn and takes the first that opens, so a
    FIFO among them blocks it."""
    for prefix in MESH_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    directories = [urdf[:i] for i, c in enumerate(urdf) if c in "/\\"]
    return [name, *(f"{d}/{name}" for d in reversed(directories)), f"./{name}", f"../{name}", f"../../{name}"]


def _find_like_pybullet(urdf: str, name: str) -> str | None:
    for candidate in mesh_candidates(urdf, name):
        try:
            os.stat(candidate)
        except (OSError, ValueError):  # PyBullet cannot open it either, and goes on
            continue
        return candidate
    return None


def _check_file(what: str, file: str) -> int:
    try:
        return check_regular(Path(file), MAX_MESH_BYTES, label="file")
    except FileRefusedError as exc:
        reason = str(exc).removeprefix(f"file {file}").lstrip(": ")
        reason = f", which {reason}" if reason.startswith("is ") else f": {reason}"
        raise ConfigError(
            f"{what} resolves to {shown(file)}{reason}; name a regular file of at most "
            f"{size_text(MAX_MESH_BYTES)}"
        ) from None
