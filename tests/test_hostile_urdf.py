"""A URDF given with --urdf (or sim.urdf) that would hang, exhaust or crash the process.

Each is refused in one line before PyBullet sees it: a FIFO, a device or a huge file as
the model or as a mesh, XML entities, names used twice, a link with two parents, a loop,
numbers that are not numbers or not plausible.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from plend.core.errors import ConfigError
from plend.main import main
from plend.model.robot import urdf_path
from plend.model.sim_world import SimWorld
from plend.model.urdf_model import check_robot_urdf, make_variant

PACKAGED = urdf_path().read_text()
MAX_URDF_BYTES = 4 * 2**20  # plend.model.urdf_checks.MAX_URDF_BYTES
TORSO_BOX = '<geometry><box size="0.036 0.056 0.066"/></geometry>'


def write(tmp_path: Path, text: str, name: str = "robot.urdf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(path: Path, fragment: str) -> str:
    with pytest.raises(ConfigError) as caught:
        check_robot_urdf(path)
    message = str(caught.value)
    assert fragment in message, message
    assert "\n" not in message
    return message


def block(text: str, tag: str, name: str) -> str:
    found = re.search(rf'<{tag} name="{name}".*?</{tag}>', text, re.S)
    assert found is not None
    return found.group(0)


def with_mesh(filename: str) -> str:
    return PACKAGED.replace(TORSO_BOX, f'<geometry><mesh filename="{filename}"/></geometry>')


def sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


# -- the model file itself ----------------------------------------------------------------


def _loop(path: Path) -> None:
    other = path.with_name("other.urdf")
    other.symlink_to(path)
    path.symlink_to(other)


NOT_A_MODEL: dict[str, tuple[Callable[[Path], object], str, str]] = {
    "fifo": (lambda p: os.mkfifo(p), "is a FIFO (named pipe)", "give a URDF file on disk"),
    "directory": (lambda p: p.mkdir(), "is a directory", "not the directory"),
    "symlink loop": (_loop, "a symbolic link loop", "fix the link"),
    "too large": (lambda p: sparse(p, MAX_URDF_BYTES + 1), "over the 4.0 MiB limit", "15 KiB"),
    "missing": (lambda p: None, "no such file", "check the path given to --urdf"),
}


@pytest.mark.parametrize("case", NOT_A_MODEL.values(), ids=NOT_A_MODEL.keys())
def test_a_model_that_is_not_a_readable_file_is_refused_at_once_with_advice(
    tmp_path: Path, case: tuple[Callable[[Path], object], str, str]
) -> None:
    make, fragment, advice = case
    path = tmp_path / "robot.urdf"
    make(path)
    message = refused(path, fragment)
    assert message.startswith(f"cannot read the robot model {path}: ") and advice in message


def test_a_device_is_refused_unread() -> None:
    refused(Path("/dev/zero"), "it is a character device, not a regular file; give a URDF file on disk")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda tmp: tmp / "fifo.urdf", "is a FIFO (named pipe)"),
        (lambda tmp: tmp / "loop.urdf", "a symbolic link loop; fix the link"),
        (lambda tmp: tmp / ("x" * 300 + ".urdf"), "give a shorter path"),
        (lambda tmp: tmp / "dir", "is a directory, not a regular file; give the URDF file inside it"),
    ],
    ids=["fifo", "symlink loop", "name too long", "directory"],
)
def test_plend_run_says_in_one_line_what_is_wrong_with_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], Path], fragment: str
) -> None:
    os.mkfifo(tmp_path / "fifo.urdf")
    _loop(tmp_path / "loop.urdf")
    (tmp_path / "dir").mkdir()
    assert main(["run", "--fast", "--urdf", str(make(tmp_path)), "--duration", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "plend: error: cannot read the robot model" in captured.err
    assert fragment in captured.err and len(captured.err) < 400, captured.err
    assert captured.out == ""


def test_xml_entities_are_refused_before_any_expansion(tmp_path: Path) -> None:
    laughs = ['<!ENTITY lol0 "lol">']
    laughs += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    text = PACKAGED.replace("<robot", f"<!DOCTYPE robot [{''.join(laughs)}]>\n<robot", 1)
    text = text.replace('<link name="torso">', '<link name="torso">&lol9;', 1)
    refused(write(tmp_path, text), "declares XML entities (<!ENTITY ...>); a URDF needs none")


def test_deep_nesting_is_refused_before_the_tree_is_built(tmp_path: Path) -> None:
    deep = "<a>" * 100_000 + "</a>" * 100_000
    refused(
        write(tmp_path, PACKAGED.replace("</robot>", deep + "</robot>")), "nests elements more than 64 deep"
    )


# -- structure that crashes PyBullet ------------------------------------------------------

EXTRA = '<joint name="extra" type="fixed"><parent link="{p}"/><child link="{c}"/></joint></robot>'
STRUCTURE = {
    "joint twice": (
        lambda t: t.replace("</robot>", block(t, "joint", "r_knee_r_shin") + "</robot>"),
        "has more than one joint named r_knee_r_shin; each joint needs its own name",
    ),
    "link twice": (
        lambda t: t.replace("</robot>", block(t, "link", "r_shin") + "</robot>"),
        "has more than one link named r_shin",
    ),
    "child of two joints": (
        lambda t: t.replace("</robot>", EXTRA.format(p="torso", c="r_foot")),
        "link r_foot is the child of two joints, r_ankle_r_foot and extra",
    ),
    "missing child link": (
        lambda t: t.replace("</robot>", EXTRA.format(p="torso", c="ghost")),
        "joint extra names child link 'ghost', which the model does not define",
    ),
    "missing parent link": (
        lambda t: t.replace("</robot>", '<link name="tail"/>' + EXTRA.format(p="ghost", c="tail")),
        "joint extra names parent link 'ghost'",
    ),
    "loop": (
        lambda t: t.replace("</robot>", EXTRA.format(p="r_foot", c="torso")),
        "the joints form a loop through link",
    ),
    "unnamed link": (lambda t: t.replace("</robot>", "<link/></robot>"), "has a <link> without a name"),
}


@pytest.mark.parametrize("case", STRUCTURE, ids=list(STRUCTURE))
def test_structure_pybullet_crashes_or_fails_on_is_refused_by_name(tmp_path: Path, case: str) -> None:
    change, fragment = STRUCTURE[case]
    refused(write(tmp_path, change(PACKAGED)), fragment)


def test_a_transmission_naming_a_joint_is_not_a_second_joint(tmp_path: Path) -> None:
    transmission = '<transmission name="t"><joint name="r_knee_r_shin"/><actuator name="a"/></transmission>'
    check_robot_urdf(write(tmp_path, PACKAGED.replace("</robot>", transmission + "</robot>")))


# -- numbers ------------------------------------------------------------------------------


def inertia(link: str, attr: str, value: str) -> Callable[[str], str]:
    def change(t: str) -> str:
        original = block(t, "link", link)
        return t.replace(original, re.sub(rf'{attr}="[^"]*"', f'{attr}="{value}"', original, count=1))

    return change


def torso_mass(value: str) -> Callable[[str], str]:
    return lambda t: re.sub(
        r'(<link name="torso">.*?<mass value=")[^"]*', rf"\g<1>{value}", t, count=1, flags=re.S
    )


def joint_origin(attr: str, value: str) -> Callable[[str], str]:
    def change(t: str) -> str:
        original = block(t, "joint", "r_knee_r_shin")
        return t.replace(
            original, re.sub(rf'(<origin[^>]*{attr}=")[^"]*', rf"\g<1>{value}", original, count=1)
        )

    return change


NUMBERS = {
    "mass NaN": (
        torso_mass("nan"),
        "link torso inertial/mass value is 'nan'; must be above 0 and at most 10 kg",
    ),
    "mass inf": (torso_mass("inf"), "link torso inertial/mass value is 'inf'"),
    "mass 1e308": (torso_mass("1e308"), "link torso inertial/mass value is '1e308'"),
    "mass abc": (torso_mass("abc"), "link torso inertial/mass value must be a number, got 'abc'"),
    "mass zero": (torso_mass("0"), "link torso inertial/mass value is '0'"),
    "mass negative": (torso_mass("-0.1"), "link torso inertial/mass value is '-0.1'"),
    "inertia NaN": (
        inertia("r_shin", "ixx", "nan"),
        "link r_shin inertial/inertia ixx is 'nan'; must be from 0 to 1 kg m^2",
    ),
    "joint xyz huge": (
        joint_origin("xyz", "1e308 0 0"),
        "joint r_knee_r_shin origin xyz is '1e308 0 0'; each must be within ±1 m",
    ),
    "joint rpy inf": (joint_origin("rpy", "inf 0 0"), "joint r_knee_r_shin origin rpy is 'inf 0 0'"),
    "joint rpy 1e308": (joint_origin("rpy", "1e308 0 0"), "each must be within ±6.3 rad"),
    "box size": (
        lambda t: t.replace(TORSO_BOX, '<geometry><box size="0.036 5 0.066"/></geometry>', 1),
        "link torso visual/geometry/box size is '0.036 5 0.066'; each must be above 0 and at most 1 m",
    ),
    "too few": (joint_origin("xyz", "0 0"), "joint r_knee_r_shin origin xyz must be three numbers"),
}


@pytest.mark.parametrize("case", NUMBERS, ids=list(NUMBERS))
def test_numbers_that_are_not_plausible_are_refused_by_link_and_attribute(tmp_path: Path, case: str) -> None:
    change, fragment = NUMBERS[case]
    text = change(PACKAGED)
    assert text != PACKAGED
    refused(write(tmp_path, text), fragment)


# -- meshes -------------------------------------------------------------------------------


def fifo(path: Path, name: str) -> str:
    """Make a FIFO at ``path``; the mesh name that points at it."""
    os.mkfifo(path)
    return name


def folder(path: Path) -> str:
    path.mkdir()
    return path.name


MESHES: dict[str, tuple[Callable[[Path], str], str]] = {
    "fifo beside": (lambda d: fifo(d / "torso.stl", "torso.stl"), "is a FIFO (named pipe)"),
    "fifo by package://": (
        lambda d: fifo(d / "torso.stl", "package://torso.stl"),
        "link torso mesh 'package://torso.stl' resolves to",
    ),
    "device": (lambda d: "/dev/zero", "resolves to /dev/zero, which is a character device"),
    "huge": (lambda d: sparse(d / "big.stl", 33 * 2**20).name, "is 33.0 MiB, over the 32.0 MiB limit"),
    "directory": (lambda d: folder(d / "dir.stl"), "which is a directory"),
    "missing": (lambda d: "gone.stl", "link torso mesh 'gone.stl' is not found; put it beside the model"),
}


@pytest.mark.parametrize("case", MESHES.values(), ids=MESHES.keys())
def test_a_mesh_pybullet_would_hang_or_choke_on_is_refused_before_loading(
    tmp_path: Path, case: tuple[Callable[[Path], str], str]
) -> None:
    make, fragment = case
    message = refused(write(tmp_path, with_mesh(make(tmp_path))), fragment)
    assert "link torso" in message


def test_meshes_are_looked_for_where_pybullet_looks(tmp_path: Path) -> None:
    from plend.model.urdf_checks import mesh_candidates

    assert mesh_candidates("/a/b/robot.urdf", "package://m/x.stl") == [
        "m/x.stl", "/a/b/m/x.stl", "/a/m/x.stl", "/m/x.stl", "./m/x.stl", "../m/x.stl", "../../m/x.stl",
    ]  # fmt: skip
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "torso.stl").write_bytes(b"\0" * 84)
    model = check_robot_urdf(write(tmp_path, with_mesh("package://meshes/torso.stl")))
    assert model.files == {"package://meshes/torso.stl": tmp_path / "meshes" / "torso.stl"}
    # A variant, written elsewhere, names the very file that was checked.
    out = tmp_path / "variant"
    out.mkdir()
    root = ET.parse(make_variant(model, SimWorld(torso_com_mm=(1.0, 0.0, 0.0)), out)).getroot()
    mesh = root.find("link[@name='torso']/collision/geometry/mesh")
    assert mesh is not None and mesh.get("filename") == str(tmp_path / "meshes" / "torso.stl")


def test_a_texture_that_is_a_fifo_is_refused_and_a_missing_one_is_not(tmp_path: Path) -> None:
    texture = '<visual><material name="skin"><texture filename="{}"/></material>'
    text = PACKAGED.replace("<visual>", texture.format("gone.png"), 1)
    assert check_robot_urdf(write(tmp_path, text)).files == {}
    os.mkfifo(tmp_path / "skin.png")
    text = PACKAGED.replace("<visual>", texture.format("skin.png"), 1)
    refused(write(tmp_path, text), "texture 'skin.png' resolves to")
