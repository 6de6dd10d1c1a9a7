"""The listening socket: bound by crossroute itself, exclusively, before anything is served.

granian binds with ``SO_REUSEPORT``, so a second server on the same port (another crossroute
included) would start and silently share the traffic. crossroute binds the socket itself
without ``SO_REUSEPORT`` (only ``SO_REUSEADDR``, so a restart does not wait for old connections
in TIME_WAIT) and hands it to granian: while one crossroute listens, no other program can bind
the port, and a busy port is known before start-up goes any further.
"""

from __future__ import annotations

import errno
import socket

__all__ = ["ListenError", "bind_listener"]


class ListenError(Exception):
    """The address cannot be listened on; ``str()`` is one line for the user."""


def _where(host: str, port: int) -> str:
    return f"port {port} on {host}"


def bind_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (no ``SO_REUSEPORT``); ``ListenError`` otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"crossroute: cannot listen on {host!r}: {exc.strerror} (check host: in config.yaml)"
                          ) from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(_explain(exc, host, port)) from None
    return sock


def _explain(exc: OSError, host: str, port: int) -> str:
    where = _where(host, port)
    if exc.errno == errno.EADDRINUSE:
        return (f"crossroute: {where} is already in use (another crossroute or another program listens "
                f"there); stop it or choose another port (--port or port: in config.yaml)")
    if exc.errno == errno.EACCES:
        return f"crossroute: no permission to listen on {where} (ports below 1024 need privileges; choose another port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"crossroute: cannot listen on {where}: {host} is not an address of this machine (check host:)"
    return f"crossroute: cannot listen on {where}: {exc.strerror or exc}"
