"""The workers' shared socket gets TCP_NODELAY on every connection it accepts (dashboards.tcp_config)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn

from dashboards.tcp_config import TcpConfig


def _nodelay_of_an_accepted_connection(sock: socket.socket) -> int:
    """TCP_NODELAY of the server side of one connection, accepted by asyncio on ``sock`` as uvicorn's workers do."""
    got: list[int] = []

    class Capture(asyncio.Protocol):
        def connection_made(self, transport):
            got.append(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main():
        server = await asyncio.get_running_loop().create_server(Capture, sock=sock)
        with socket.create_connection(sock.getsockname()[:2]):
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.01)
        server.close()

    asyncio.run(main())
    return got[0]


@pytest.mark.parametrize("config_class,nodelay", [(uvicorn.Config, False), (TcpConfig, True)])
def test_accepted_connections_send_without_waiting_for_an_ack(config_class, nodelay):
    sock = config_class("dashboards.main:app_from_env", host="127.0.0.1", port=0).bind_socket()
    assert bool(_nodelay_of_an_accepted_connection(sock)) is nodelay  # plain uvicorn: the +40 ms this fixes
