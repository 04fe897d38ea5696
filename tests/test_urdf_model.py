"""Another model of the robot: a user's URDF checked before anything moves, and variants."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from plend.core.errors import ConfigError
from plend.main import main
from plend.model.robot import urdf_path
from plend.model.sim_world import SimWorld
from plend.model.urdf_model import check_robot_urdf, make_variant, sole_points

PACKAGED = urdf_path().read_text()


def write(tmp_path: Path, text: str, name: str = "robot.urdf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def edit_joint(text: str, name: str, old: str, new: str) -> str:
    start = text.index(f'<joint name="{name}"')
    end = text.index("</joint>", start)
    block = text[start:end]
    assert old in block
    return text[:start] + block.replace(old, new) + text[end:]


def rotated_model() -> str:
    """The packaged model with the left knee's frame turned 180 deg about x and its axis
    flipped to match: the same robot, described differently."""
    text = edit_joint(PACKAGED, "l_knee_l_shin", 'rpy="0 0 0"', 'rpy="3.14159265 0 0"')
    text = edit_joint(text, "l_knee_l_shin", '<axis xyz="0 1 0"/>', '<axis xyz="0 -1 0"/>')
    # The child's own children must be turned back so the rest of the leg is unchanged.
    return edit_joint(text, "l_shin_l_ankle", 'rpy="0 0 0"', 'rpy="-3.14159265 0 0"')


BROKEN = {
    "missing joint": (
        lambda t: re.sub(r'<joint name="r_knee_r_shin".*?</joint>', "", t, flags=re.S),
        "lacks joint(s) r_knee_r_shin",
    ),
    "extra driven joint": (
        lambda t: t.replace(
            "</robot>",
            '<link name="tail"/><joint name="tail_joint" type="revolute"><parent link="torso"/>'
            '<child link="tail"/><axis xyz="0 0 1"/><limit lower="-1" upper="1" effort="1" velocity="1"/>'
            "</joint></robot>",
        ),
        "has driven joint(s) the robot does not: tail_joint",
    ),
    "different axis": (
        lambda t: edit_joint(t, "r_knee_r_shin", '<axis xyz="0 -1 0"/>', '<axis xyz="1 0 0"/>'),
        "joint r_knee_r_shin turns about (+1.000 +0.000 +0.000) in the torso frame; "
        "the robot's turns about (+0 -1 +0)",
    ),
    "reversed axis": (
        lambda t: edit_joint(t, "l_knee_l_shin", '<axis xyz="0 1 0"/>', '<axis xyz="0 -1 0"/>'),
        "joint l_knee_l_shin turns about",
    ),
    "prismatic joint": (
        lambda t: edit_joint(t, "r_knee_r_shin", 'type="revolute"', 'type="prismatic"'),
        "joint r_knee_r_shin is 'prismatic'; it must be revolute",
    ),
    "bad numbers": (
        lambda t: edit_joint(t, "r_knee_r_shin", '<axis xyz="0 -1 0"/>', '<axis xyz="0 -1"/>'),
        "joint r_knee_r_shin axis xyz must be three numbers",
    ),
    "not XML": (lambda t: t[: len(t) // 2], "is not valid XML"),
    "not URDF": (lambda t: "<sdf version='1.6'></sdf>", "is not a URDF file (its root element is <sdf>"),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_a_model_that_is_not_the_robot_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    change, message = BROKEN[case]
    path = write(tmp_path, change(PACKAGED))
    with pytest.raises(ConfigError) as caught:
        check_robot_urdf(path)
    assert message in str(caught.value), str(caught.value)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_an_unreadable_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the robot model .*nothing\.urdf"):
        check_robot_urdf(tmp_path / "nothing.urdf")
    binary = tmp_path / "binary.urdf"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read the robot model"):
        check_robot_urdf(binary)


def test_the_packaged_and_a_differently_framed_model_pass(tmp_path: Path) -> None:
    model = check_robot_urdf(urdf_path())
    assert model.root == "torso" and model.feet == {"right": "r_foot", "left": "l_foot"}
    check_robot_urdf(write(tmp_path, rotated_model()))


def test_plend_run_refuses_a_bad_model_before_anything_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BROKEN["different axis"][0](PACKAGED))
    assert main(["run", "--fast", "--urdf", str(path), "--duration", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "plend: error: robot model" in captured.err
    assert captured.out == ""  # no summary: nothing ran


def test_variant_moves_the_torso_com_and_lowers_a_sole(tmp_path: Path) -> None:
    model = check_robot_urdf(urdf_path())
    world = SimWorld(torso_com_mm=(1.0, -2.0, 3.0), sole_height_left_mm=4.0)
    root = ET.parse(make_variant(model, world, tmp_path)).getroot()
    nominal = ET.fromstring(PACKAGED)

    def inertial(tree: ET.Element, link: str) -> np.ndarray:
        node = tree.find(f"link[@name='{link}']/inertial/origin")
        return np.array([float(v) for v in node.get("xyz").split()])  # type: ignore[union-attr]

    def sole_z(tree: ET.Element, link: str) -> float:
        node = tree.find(f"link[@name='{link}']/collision/origin")
        return float(node.get("xyz").split()[2])  # type: ignore[union-attr]

    np.testing.assert_allclose(
        inertial(root, "torso") - inertial(nominal, "torso"), [0.001, -0.002, 0.003], atol=1e-9
    )
    assert sole_z(root, "l_foot") == pytest.approx(sole_z(nominal, "l_foot") - 0.004)
    assert sole_z(root, "r_foot") == pytest.approx(sole_z(nominal, "r_foot"))


def test_rounded_soles_replace_the_box_with_a_mesh(tmp_path: Path) -> None:
    model = check_robot_urdf(urdf_path())
    root = ET.parse(make_variant(model, SimWorld(sole_edge_radius_mm=4.0), tmp_path)).getroot()
    for foot in ("r_foot", "l_foot"):
        mesh = root.find(f"link[@name='{foot}']/collision/geometry/mesh")
        assert mesh is not None and Path(mesh.get("filename", "")).is_file()
    # A model whose foot is not one box cannot be rounded: told so.
    root2 = ET.fromstring(PACKAGED)
    foot_link = root2.find("link[@name='r_foot']")
    assert foot_link is not None
    foot_link.append(ET.fromstring('<collision><geometry><sphere radius="0.01"/></geometry></collision>'))
    path = write(tmp_path, ET.tostring(root2, encoding="unicode"), "two_shapes.urdf")
    with pytest.raises(
        ConfigError, match="rounded or convex soles need the foot link r_foot to collide as one box"
    ):
        make_variant(check_robot_urdf(path), SimWorld(sole_edge_radius_mm=4.0), tmp_path)


def test_sole_points_round_the_edges_and_keep_the_lowest_point() -> None:
    size = np.array([0.063, 0.041, 0.004])
    flat = sole_points(size, 0.0, 0.0)
    rounded = sole_points(size, 0.004, 0.0)
    crowned = sole_points(size, 0.004, 0.001)
    lowest = flat[:, 2].min()
    assert rounded[:, 2].min() == pytest.approx(lowest) and crowned[:, 2].min() == pytest.approx(lowest)
    # At the lowest level, a rounded sole is narrower than a flat one by the radius.
    bottom = rounded[np.isclose(rounded[:, 2], lowest)]
    assert np.abs(bottom[:, 0]).max() == pytest.approx(np.abs(flat[:, 0]).max() - 0.004)
    # A crowned sole touches at its centre only: its rim is higher.
    rim = crowned[np.isclose(np.abs(crowned[:, 0]), np.abs(crowned[:, 0]).max())]
    assert rim[:, 2].min() > lowest + 0.0009


def test_a_model_pybullet_cannot_load_is_one_line_and_leaves_nothing_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pybullet")
    from plend.core.errors import HalError
    from plend.hal.sim import SimHal

    # It passes every check, but names a mesh in a format PyBullet does not read.
    text = PACKAGED.replace(
        '<geometry><box size="0.036 0.056 0.066"/></geometry>',
        '<geometry><mesh filename="torso.ply"/></geometry>',
    )
    (tmp_path / "torso.ply").write_text("ply\n")
    path = write(tmp_path, text)
    hal = SimHal(SimWorld(urdf=str(path)))
    with pytest.raises(HalError, match="PyBullet could not load the robot model"):
        hal.open(0.02)
    with pytest.raises(HalError, match="not open"):
        hal.read()
