"""The commands the link dialog and the landing page hand out, run for real against gunicorn with
this machine's curl and wget: run again after a download, after a refusal and after an
interruption, they never damage a good file, and the same command resumes."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from core.commands import fetch_commands
from tests.helpers import MIB, interrupted, link_record, make_file, outcome_events, token_of, wait_for

NAME = "db 2026's dump.sql.gz"  # a space and a quote: the command must quote it
TOOLS = ("curl", "wget")
# What each tool prints for a dead link: wget only the status line, curl only the status code.
REFUSED = {
    "curl": (22, "The requested URL returned error: 410"),
    "wget": (8, "ERROR 410: Link used up, expired, revoked or unknown."),
}


@pytest.fixture(scope="module")
def dump(live_server) -> bytes:
    return make_file(live_server.backups, NAME, 3 * MIB + 17)


@pytest.fixture(scope="module")
def big(live_server) -> bytes:
    return make_file(live_server.backups, "big dump.bin", 64 * MIB)


def copied(live_server, tool: str, path: str, **options) -> str:
    """The command as the link dialog shows it, for a freshly minted link."""
    return getattr(fetch_commands(live_server.link(path, **options), path), tool)


def run(command: str, folder: Path) -> subprocess.CompletedProcess:
    """As pasted into a shell."""
    return subprocess.run(["bash", "-c", command], cwd=folder, capture_output=True, text=True, timeout=120)


def url_in(command: str) -> str:
    return shlex.split(command)[-1]


def wait_until_counted(live_server, command: str) -> None:
    """The client exits once it has the last byte, a moment before the server records the use."""
    wait_for(lambda: "completed" in outcome_events(live_server, url_in(command)), "the use to be counted")


@pytest.mark.parametrize("tool", TOOLS)
def test_run_again_after_the_download_keeps_the_file(live_server, dump, tool, tmp_path):
    command = copied(live_server, tool, NAME)
    assert run(command, tmp_path).returncode == 0
    assert (tmp_path / NAME).read_bytes() == dump
    wait_until_counted(live_server, command)
    again = run(command, tmp_path)
    assert (again.returncode, REFUSED[tool][1] in again.stderr) == (REFUSED[tool][0], True), again.stderr
    assert (tmp_path / NAME).read_bytes() == dump  # byte for byte
    assert [path.name for path in tmp_path.iterdir()] == [NAME]
    assert link_record(live_server, url_in(command))[0].uses == 1


@pytest.mark.parametrize("tool", TOOLS)
def test_a_refused_command_leaves_no_file(live_server, dump, tool, tmp_path):
    command = copied(live_server, tool, NAME)
    token = token_of(url_in(command))
    refused = run(command.replace(token, token[::-1]), tmp_path)  # a link this server never made
    assert refused.returncode == REFUSED[tool][0] and REFUSED[tool][1] in refused.stderr
    assert list(tmp_path.iterdir()) == []  # not even an empty file


@pytest.mark.parametrize("tool", TOOLS)
def test_an_interrupted_command_resumes_when_run_again(live_server, big, tool, tmp_path):
    command = copied(live_server, tool, "big dump.bin")
    url, target = url_in(command), tmp_path / "big dump.bin"
    paced = shlex.split(command)
    paced[1:1] = ["--limit-rate", "8m"]  # the same command, slow enough to be cut part-way
    interrupted(paced, target, tmp_path)
    wait_for(lambda: outcome_events(live_server, url) == ["aborted"], "the abort to be recorded")
    partial = target.stat().st_size
    assert 0 < partial < len(big)
    assert run(command, tmp_path).returncode == 0
    assert target.read_bytes() == big
    wait_until_counted(live_server, command)
    link, events = link_record(live_server, url)
    assert link.uses == 1 and [e.start for e in events if e.event == "started"][-1] >= partial  # resumed
    assert run(command, tmp_path).returncode == REFUSED[tool][0]
    assert target.read_bytes() == big
    assert [path.name for path in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize(("tool", "status"), [("curl", 22), ("wget", 0)])
def test_a_link_with_uses_left_is_not_used_again_for_a_finished_file(
    live_server, dump, tool, status, tmp_path
):
    """A range past the end (416): wget says "already fully retrieved", curl reports error 416."""
    command = copied(live_server, tool, NAME, uses=2)
    assert run(command, tmp_path).returncode == 0
    wait_until_counted(live_server, command)
    assert run(command, tmp_path).returncode == status
    assert (tmp_path / NAME).read_bytes() == dump
    assert link_record(live_server, url_in(command))[0].uses == 1
