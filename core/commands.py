"""The shell commands a person pastes to fetch a link: quoted so that no file name can break out."""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class FetchCommands:
    curl: str
    wget: str


def output_name(filename: str) -> str:
    """A name safe as the output file: no folder part, never read as an option or as stdout."""
    name = filename.rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        return "download"
    return "./" + name if name.startswith("-") else name


def fetch_commands(url: str, filename: str) -> FetchCommands:
    """`curl -fL -o NAME URL` (fails on HTTP errors instead of saving the error page) and `wget -O`."""
    name, quoted_url = shlex.quote(output_name(filename)), shlex.quote(url)
    return FetchCommands(f"curl -fL -o {name} {quoted_url}", f"wget -O {name} {quoted_url}")
