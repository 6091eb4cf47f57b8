"""How a download becomes an HTTP response; shared by the public download and the signed-in one."""

from __future__ import annotations

import socket
import ssl

from flask import Response, current_app, request
from werkzeug.http import http_date

from core.digests import repr_digest
from core.downloads import Download, content_disposition


def server_socket() -> socket.socket | None:
    """gunicorn's socket for this request, when the body may write to it itself: plain TCP over
    HTTP/1.x (TLS and HTTP/2 frame the bytes, so those bodies are yielded to the server)."""
    sock = request.environ.get("gunicorn.socket")
    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return None
    return None if request.environ.get("HTTP_VERSION") == "2" else sock


def file_response(download: Download) -> Response:
    """The response for a transfer (its body sends itself) or a HEAD (no body)."""
    delivery, body = download.delivery, download.body
    sock = server_socket() if body is not None and request.method != "HEAD" else None
    if sock is not None:
        body.send_through(sock, float(current_app.config["SEND_TIMEOUT"]))
    response = Response(
        body if body is not None else (),
        status=206 if download.partial else 200,
        mimetype="application/octet-stream",
        direct_passthrough=True,
    )
    headers = response.headers
    headers["Content-Length"] = str(download.stop - download.start)
    if download.partial:
        headers["Content-Range"] = f"bytes {download.start}-{download.stop - 1}/{delivery.size}"
    headers["Accept-Ranges"] = "bytes"
    headers["ETag"] = delivery.etag
    headers["Last-Modified"] = http_date(delivery.mtime)
    headers["Content-Disposition"] = content_disposition(delivery.filename)
    if download.sha256:  # RFC 9530: of the whole representation, on a 206 too
        headers["Repr-Digest"] = repr_digest(download.sha256)
    return response
