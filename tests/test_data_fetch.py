"""Resumable, verified downloads against a local HTTP server that honours (or ignores) Range."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.core.errors import UserError
from pipeline.data.fetch import fetch

PAYLOAD = os.urandom(300_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Server:
    """Serves `payload` at /file; records each request's Range header."""

    def __init__(self, ranges: bool = True, payload: bytes = PAYLOAD):
        self.ranges, self.requests = ranges, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                header = self.headers.get("Range")
                outer.requests.append(header)
                start = int(header.removeprefix("bytes=").split("-")[0]) if (header and outer.ranges) else 0
                if start >= len(payload):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_fresh_download_is_verified_and_reused(tmp_path, server):
    dest = tmp_path / "d" / "file.tar.gz"
    assert fetch(server.url, dest, MD5) == dest and dest.read_bytes() == PAYLOAD
    assert not dest.with_name("file.tar.gz.part").exists()
    fetch(server.url, dest, MD5)
    assert len(server.requests) == 1  # the verified file is not fetched again


def test_partial_download_resumes_with_range(tmp_path, server):
    dest = tmp_path / "file.tar.gz"
    dest.with_name("file.tar.gz.part").write_bytes(PAYLOAD[:123_456])
    fetch(server.url, dest, MD5)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=123456-"]


def test_corrupt_partial_is_discarded_and_fetched_again(tmp_path, server):
    dest = tmp_path / "file.tar.gz"
    dest.with_name("file.tar.gz.part").write_bytes(b"garbage" * 1000)
    fetch(server.url, dest, MD5)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=7000-", None]


def test_server_without_range_restarts(tmp_path):
    s = Server(ranges=False)
    try:
        dest = tmp_path / "file.tar.gz"
        dest.with_name("file.tar.gz.part").write_bytes(PAYLOAD[:1000])
        fetch(s.url, dest, MD5)
        assert dest.read_bytes() == PAYLOAD
    finally:
        s.close()


def test_checksum_mismatch_is_one_line_and_keeps_nothing(tmp_path, server):
    dest = tmp_path / "file.tar.gz"
    with pytest.raises(UserError, match="expected 0+") as err:
        fetch(server.url, dest, "0" * 32)
    assert "\n" not in str(err.value) and not dest.exists() and not dest.with_name("file.tar.gz.part").exists()


def test_unreachable_server_says_what_to_fetch_and_where(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dest = tmp_path / "downloads" / "file.tar.gz"
    with pytest.raises(UserError) as err:
        fetch(f"http://127.0.0.1:{port}/file", dest, MD5)
    message = str(err.value)
    assert "\n" not in message and f"put it at {dest}" in message and MD5 in message
