"""Files and paths named on the command line that are built to break a parser or a path
lookup: the config file, calibration files, answers files and the files plenctl sends.
Each gives one line saying what is wrong and what to do, at once, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plend.core.checks import shown
from plend.core.config import HAL_NAMES
from plend.core.files import (
    MAX_KEY_PARTS,
    MAX_NESTING,
    FileRefusedError,
    parse_json,
    parse_toml,
    text_problem,
)
from plend.main import main as plend
from plend.plenctl import main as plenctl

DEEP = 5000
TOO_LONG = "x" * 300  # one name over NAME_MAX (255)


def one_line(capsys: pytest.CaptureFixture[str], program: str, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{program}: error: ") and "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def loop(tmp_path: Path) -> Path:
    """A symbolic link that leads back to itself through another."""
    first, second = tmp_path / "loop-a", tmp_path / "loop-b"
    first.symlink_to(second)
    second.symlink_to(first)
    return first


HOSTILE_CONFIGS = {
    "arrays nested 5000 deep": ("a = " + "[" * DEEP + "]" * DEEP + "\n", "nested deeper than"),
    "inline tables nested 3000 deep": (
        "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n",
        "nested deeper than",
    ),
    "a 5000-digit integer": ("[sim]\nsubsteps = " + "9" * 5000 + "\n", "a number of 5000 characters"),
    "a key of 50000 dotted parts": ("a" + ".a" * 50_000 + " = 1\n", "a dotted key of 50001 parts"),
    "a table header of 8000 parts": ("[" + ".".join(["a"] * 8000) + "]\n", "a dotted key of 8000 parts"),
}


@pytest.mark.parametrize("case", HOSTILE_CONFIGS.values(), ids=HOSTILE_CONFIGS.keys())
def test_a_config_built_to_break_the_parser_is_refused_at_once(
    tmp_path: Path, case: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    text, fragment = case
    path = tmp_path / "plend.toml"
    path.write_text(text)
    start = time.monotonic()
    assert plend(["--config", str(path), "--dump-config"]) == 2
    assert time.monotonic() - start < 5.0
    one_line(capsys, "plend", f"config file {path}: ", fragment, "correct the file")


@pytest.mark.parametrize("value", ["5", '"pi"', "true"])
def test_hal_takes_only_a_backend_name(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from plend.hal import backend_names

    assert backend_names() == HAL_NAMES
    path = tmp_path / "plend.toml"
    path.write_text(f"hal = {value}\n")
    assert plend(["--config", str(path), "--dump-config"]) == 2
    one_line(capsys, "plend", "hal = ", "is not valid; choose one of: sim, hardware")


@pytest.mark.parametrize("digits", [99, 400])
def test_a_long_number_is_not_echoed_whole(
    tmp_path: Path, digits: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plend.toml"
    path.write_text("[sim]\nsubsteps = " + "9" * digits + "\n")
    assert plend(["--config", str(path), "--dump-config"]) == 2
    err = one_line(capsys, "plend")
    assert "9" * 61 not in err and len(err) < 250, err
    assert f"an integer of {digits} digits" in err or "a number of 400 characters" in err, err


def test_shown_quotes_at_most_about_sixty_characters() -> None:
    assert shown(12345) == "12345"
    assert shown(10**5000) == "an integer of 5001 digits"  # repr would raise: over 4300 digits
    assert shown(-(10**300) + 1) == "an integer of 300 digits"
    assert len(shown("x" * 10_000)) < 90 and "(10002 characters)" in shown("x" * 10_000)


HOSTILE_CALIBRATIONS = {
    "nested 100000 deep": ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
    "nested 900 deep": ('{"version": 3, "x": ' + "[" * 900 + "]" * 900 + "}", "nested deeper than"),
    "a 5000-digit version": ('{"version": ' + "9" * 5000 + "}", "a number of 5000 characters"),
}


@pytest.mark.parametrize("case", HOSTILE_CALIBRATIONS.values(), ids=HOSTILE_CALIBRATIONS.keys())
def test_a_calibration_file_built_to_break_the_parser_is_one_line(
    tmp_path: Path, case: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from calibration.drafts import load_draft

    text, fragment = case
    path = tmp_path / "calibration.json"
    path.write_text(text)
    assert plenctl(["calibration", "show", "--file", str(path)]) == 1
    one_line(capsys, "plenctl", f"calibration file {path}: ", fragment, "calibration wizard")
    assert plend(["run", "--fast", "--duration", "0.1", "--servo-model", str(path)]) == 2
    one_line(capsys, "plend", f"sim.servo_model: calibration file {path}: ", fragment)
    (tmp_path / "calibration.draft.json").write_text(text)
    assert load_draft(path) is None  # an unusable draft is set aside


@pytest.mark.parametrize("given", ["", "/", "."])
def test_a_servo_model_that_names_no_file_is_one_line(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert plend(["run", "--fast", "--duration", "0.1", "--servo-model", given]) == 2
    one_line(capsys, "plend", "--servo-model" if not given else "is a directory", "calibration file")


def test_calibration_show_of_a_directory_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert plenctl(["calibration", "show", "--file", "/"]) == 1
    one_line(capsys, "plenctl", "is a directory; give a calibration file")


def test_calibration_show_of_an_empty_path_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    """An empty --file (an unset shell variable) is not taken for the current directory."""
    with pytest.raises(SystemExit) as exit_:
        plenctl(["calibration", "show", "--file", ""])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "plenctl calibration show: error: argument --file: needs a file name; it was given ''"


HOSTILE_ANSWERS = {
    "nested 100000 deep": ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than"),
    "a 5000-digit integer": ("save = " + "9" * 5000 + "\n", "a number of 5000 characters"),
    "not TOML": ("save = \n", "is not valid TOML"),
    "not UTF-8": (b"save = \xff\n", "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
def test_an_answers_file_built_to_break_the_parser_is_one_line(
    tmp_path: Path, case: tuple[str | bytes, str], capsys: pytest.CaptureFixture[str]
) -> None:
    content, fragment = case
    path = tmp_path / "answers.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert plenctl(["--socket", str(tmp_path / "none.sock"), "calibrate", "--answers", str(path)]) == 1
    one_line(capsys, "plenctl", f"answers file {path}", fragment)


def test_answers_of_the_wrong_shape_are_one_line() -> None:
    from calibration.operators import ScriptedOperator
    from calibration.session import WizardError

    cases: list[tuple[dict[str, Any], str]] = [
        ({"joints": 5}, "joints must be tables"),
        ({"joints": {"r_knee": 1}}, "[joints.r_knee]"),
    ]
    for answers, fragment in cases:
        with pytest.raises(WizardError, match=fragment.replace("[", r"\[")):
            ScriptedOperator(answers).known("r_knee")
    assert ScriptedOperator({"bad_feedback": [1]}).ask("bad_feedback", "?", "sqr", "q") == "q"


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_an_answers_file_that_is_not_a_file_is_refused_without_waiting(tmp_path: Path, kind: str) -> None:
    path = Path(kind)
    if kind == "fifo":
        path = tmp_path / "answers.toml"
        os.mkfifo(path)
    # A process of its own: a reader that waited on the FIFO, or read /dev/zero to its end,
    # would hang or fill the memory of the test run.
    run = subprocess.run(
        [sys.executable, "-m", "plend.plenctl", "--socket", str(tmp_path / "none.sock"),
         "calibrate", "--answers", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    err = run.stderr.strip()
    assert run.returncode == 1 and err.startswith("plenctl: error: answers file") and "\n" not in err, err
    assert "not a regular file" in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "{loop}"],
        ["policy", "load", "{loop}"],
        ["replay", "{loop}/inside.csv"],
    ],
)
def test_plenctl_names_a_symlink_loop_in_one_line(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    link = loop(tmp_path)
    argv = [a.format(loop=link) for a in argv]
    # Refused before connecting: no daemon needs to run.
    assert plenctl(["--socket", str(tmp_path / "none.sock"), *argv]) == 1
    one_line(capsys, "plenctl", f"{link}", "a symbolic link loop; point the link at a real file")


def test_plend_names_a_policy_symlink_loop_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = loop(tmp_path)
    assert plend(["run", "--fast", "--duration", "0.1", "--policy", str(link)]) == 2
    one_line(capsys, "plend", f"--policy {link}: a symbolic link loop")


def test_a_path_too_long_is_called_so_not_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long = tmp_path / TOO_LONG
    too_long = "the path is too long"
    assert plenctl(["calibration", "show", "--file", str(long)]) == 1
    err = one_line(capsys, "plenctl", too_long, "give a shorter path")
    assert "calibrate the robot first" not in err and "wizard" not in err
    assert plend(["run", "--fast", "--duration", "0.1", "--servo-model", str(long)]) == 2
    err = one_line(capsys, "plend", too_long, "give a shorter path")
    assert "not found" not in err and "wizard" not in err
    assert plend(["--config", str(long), "--dump-config"]) == 2
    one_line(capsys, "plend", too_long, "give a shorter path")
    assert plenctl(["--socket", str(tmp_path / "none.sock"), "calibrate", "--answers", str(long)]) == 1
    one_line(capsys, "plenctl", too_long)
    for argv in (["replay", str(long)], ["policy", "load", str(long)]):
        assert plenctl(["--socket", str(tmp_path / "none.sock"), *argv]) == 1
        one_line(capsys, "plenctl", too_long)


def test_ordinary_files_pass_the_scan(tmp_path: Path) -> None:
    from plend.model.worlds import world_toml

    root = Path(__file__).resolve().parents[1]
    assert text_problem((root / "pyproject.toml").read_text()) is None
    config = world_toml(plend_world(3))
    assert text_problem(config) is None and parse_toml(config, "world") is not None
    quoted = (
        'a = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ 99999999999999999999999999999999999999999999999999'
        "9999999999999999999999999999999999999999999999999999 a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a"
        '.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a"\n# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n'
        "b = '''\n{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\n'''\n"
    )
    assert text_problem(quoted) is None  # what strings and comments hold does not count
    edge = ".".join(["k"] * MAX_KEY_PARTS) + " = " + "[" * MAX_NESTING + "]" * MAX_NESTING + "\n"
    assert text_problem(edge) is None and parse_toml(edge, "edge")
    assert parse_json('{"a": [1.5, -2, "x"]}', "json") == {"a": [1.5, -2, "x"]}
    with pytest.raises(FileRefusedError, match=r"^json: is not JSON \("):
        parse_json("{", "json")


def plend_world(seed: int):  # type: ignore[no-untyped-def]
    from plend.core.config import Config
    from plend.model.worlds import draw_world

    return draw_world(seed, Config().sim, None)
