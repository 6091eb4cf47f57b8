"""Plain files leave through sendfile(2), Range included: watched with strace on a real gunicorn."""

from __future__ import annotations

import re
import subprocess

from tests.test_live import make_file, wait_for

SIZE = 5_000_000


def test_downloads_and_resumes_are_single_zero_copy_sendfile_calls(start_server, tmp_path):
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

    def sendfile_calls():
        return re.findall(r"sendfile\(\d+, \d+, \[(\d+)\] => \[(\d+)\], (\d+)\) = (\d+)", trace.read_text())

    calls = wait_for(lambda: len(sendfile_calls()) >= 2 and sendfile_calls(), "both transfers in the trace")
    # (offset before, offset after, count asked, bytes sent): the whole range in one call each.
    assert [tuple(map(int, call)) for call in calls] == [
        (0, SIZE, SIZE, SIZE),
        (1000, SIZE, SIZE - 1000, SIZE - 1000),
    ]
