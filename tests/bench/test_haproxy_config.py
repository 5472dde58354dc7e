"""HAProxy configuration text for the backend and the reference pair (text only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.certs import SERVER_NAME, TlsFiles
from bench.haproxy import BACKEND_BODY, backend_config, hop_config

FILES = TlsFiles(Path("/t/ca.pem"), Path("/t/server.pem"), Path("/t/client.pem"))


def test_backend_answers_itself_on_one_thread() -> None:
    text = backend_config(4000)
    assert "nbthread 1" in text
    assert "bind 127.0.0.1:4000\n" in text
    assert f'http-request return status 200 content-type text/plain string "{BACKEND_BODY}"' in (
        text
    )
    assert "option http-keep-alive" in text


def test_backend_body_must_not_need_quoting() -> None:
    with pytest.raises(ValueError):
        backend_config(4000, 'say "hi"')


def test_plain_hop_keeps_alive_and_shares_upstream_connections() -> None:
    text = hop_config(4001, 4002)
    assert "mode http" in text and "option http-keep-alive" in text
    assert "bind 127.0.0.1:4001\n" in text
    assert "server next 127.0.0.1:4002\n" in text
    assert "http-reuse always" in text
    assert "ssl" not in text


def test_tls_between_hops_is_mutual() -> None:
    first = hop_config(4001, 4002, upstream_tls=FILES)
    second = hop_config(4002, 4000, listen_tls=FILES)
    assert "bind 127.0.0.1:4001\n" in first
    assert (
        "server next 127.0.0.1:4002 ssl crt /t/client.pem ca-file /t/ca.pem verify required"
        f" verifyhost {SERVER_NAME} sni str({SERVER_NAME}) alpn http/1.1\n"
    ) in first
    assert (
        "bind 127.0.0.1:4002 ssl crt /t/server.pem ca-file /t/ca.pem verify required"
        " alpn http/1.1\n"
    ) in second
    assert "server next 127.0.0.1:4000\n" in second
