"""Plain files leave through sendfile(2), Range included: watched with strace on a real gunicorn."""

from __future__ import annotations

import re
import subprocess

from tests.helpers import make_file, wait_for

SIZE = 5_000_000


def test_downloads_and_resumes_go_out_by_sendfile(start_server, tmp_path):
    trace = tmp_path / "strace.log"
    server = start_server(
        wrapper=("strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=sendfile", "-o", str(trace))
    )
    data = make_file(server.backups, "dump.sql", SIZE)
    for headers, expected in (([], data), (["-H", "Range: bytes=1000-"], data[1000:])):
        out = tmp_path / "out"
        result = subprocess.run(
            ["curl", "-sS", "-o", str(out), *headers, server.link("dump.sql")], check=True
        )
        assert result.returncode == 0 and out.read_bytes() == expected

    def sendfile_calls() -> list[tuple[int, int]]:
        """(offset before, offset after) of each sendfile(2) call, in order."""
        found = re.findall(r"sendfile\(\d+, \d+, \[(\d+)\] => \[(\d+)\], \d+\) = \d+", trace.read_text())
        return [(int(before), int(after)) for before, after in found]

    def transfers() -> list[tuple[int, int]]:
        """Runs of calls that continue where the previous one stopped: (first offset, last offset)."""
        runs: list[list[int]] = []
        for before, after in sendfile_calls():
            if runs and runs[-1][1] == before:
                runs[-1][1] = after
            else:
                runs.append([before, after])
        return [tuple(run) for run in runs]

    # Every byte of both responses left through sendfile, in chains of calls (the socket's send
    # timeout makes each call stop when the socket buffer is full), none through read().
    assert wait_for(lambda: transfers() == [(0, SIZE), (1000, SIZE)], "both transfers in the trace")
