"""A signed-in browser's requests, timed, on one kept-alive connection: every request of a session
reaches the same gunicorn worker, as a browser's htmx requests do.

The time that counts is the server's: from sending the request to the first byte of the answer
(what curl calls time_starttransfer); the answers here are built whole before they are sent.
"""

from __future__ import annotations

import http.client
import re
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

from harness import BenchError

REQUEST_SECONDS = 120
CSRF_TOKEN = re.compile(rb'name="csrf-token" content="([^"]+)"')


@dataclass(frozen=True)
class Answer:
    status: int
    first_byte_seconds: float
    seconds: float
    body: bytes


class Session:
    """One connection and its cookies."""

    def __init__(self, base_url: str, cookies: dict[str, str] | None = None):
        address = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_SECONDS)
        self.cookies = dict(cookies or {})

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info) -> None:
        self.connection.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> Answer:
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        sent = {**({"Cookie": cookie} if cookie else {}), **(headers or {})}
        started = time.perf_counter()
        self.connection.request(method, path, body=body, headers=sent)
        response = self.connection.getresponse()
        first_byte = time.perf_counter() - started
        data = response.read()
        cookies = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        self.cookies.update({name: morsel.value for name, morsel in cookies.items()})
        return Answer(response.status, first_byte, time.perf_counter() - started, data)

    def get(self, path: str, headers: dict | None = None) -> Answer:
        answer = self.request("GET", path, headers=headers)
        if answer.status != 200:
            raise BenchError(f"GET {path}: HTTP {answer.status}: {answer.body[:300]!r}")
        return answer

    def sign_in(self, name: str, password: str) -> None:
        """Through the sign-in form, as a person would: its CSRF token, then the session cookie."""
        token = CSRF_TOKEN.search(self.get("/login").body)
        if token is None:
            raise BenchError("The sign-in page carries no CSRF token.")
        form = urlencode({"name": name, "password": password, "csrf_token": token.group(1).decode()})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        answer = self.request("POST", "/login", form.encode(), headers)
        if answer.status != 303:
            raise BenchError(f"Signing in as {name} answered HTTP {answer.status}.")
