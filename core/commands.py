"""The shell commands a person pastes to fetch a link: quoted so that no file name can break out,
and safe to run again, which is what people do after an interruption or by mistake.

What curl 7.88 and wget 1.21 do when run again (tests/test_live_commands.py runs them for real):

- `curl -fL -C - -o NAME URL`: `-C -` resumes from the size of NAME, appending; `-f` keeps an
  error answer out of the file, and curl creates the file only once the body comes, so a refused
  request leaves nothing behind and a finished file is never touched (a used-up link answers 410;
  a link with uses left answers 416 to a range past the end, which curl reports as error 416).
  Not `--fail-with-body`: it writes the error into NAME. Not `-OJ`: curl cannot resume with `-J`.
- `wget -c --content-disposition URL`: with both options wget first sends a HEAD to learn the
  name, so a refused link creates no file; `-c` appends to a partial file and leaves a complete one
  alone ("already fully retrieved"). Not `wget -O NAME`: wget opens NAME before it sees the answer,
  truncating it (plain `-O`) or creating it empty (`-c -O`) even when the link is refused.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from core.downloads import invisible


@dataclass(frozen=True)
class FetchCommands:
    curl: str
    wget: str


def output_name(filename: str) -> str:
    """A name safe as the output file: no folder part, never read as an option or as stdout, and
    no invisible character (U+202E...) that would make the command read otherwise than it runs."""
    name = "".join("_" if invisible(c) else c for c in filename.rsplit("/", 1)[-1]).strip()
    if name in ("", ".", ".."):
        return "download"
    return "./" + name if name.startswith("-") else name


def check_command(sha256: str, filename: str) -> str:
    """The line that checks a finished download against its SHA-256, in the folder it was saved in
    (the name curl's `-o` writes; wget takes the same name from the server)."""
    return f"echo {shlex.quote(f'{sha256}  {output_name(filename)}')} | sha256sum -c"


def fetch_commands(url: str, filename: str) -> FetchCommands:
    """curl names the file itself (`-o`); wget takes the name the server gives (Content-Disposition)."""
    name, quoted_url = shlex.quote(output_name(filename)), shlex.quote(url)
    return FetchCommands(
        curl=f"curl -fL -C - -o {name} {quoted_url}", wget=f"wget -c --content-disposition {quoted_url}"
    )
