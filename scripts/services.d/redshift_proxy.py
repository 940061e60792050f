"""Loopback TCP proxy that lets redshift_connector talk to a plain PostgreSQL server.

redshift_connector puts Redshift-only keys (client_protocol_version, driver_version, os_version,
...) into the v3 StartupMessage, which PostgreSQL rejects (FATAL 42704), and it cannot parse a
distro-suffixed `server_version` such as "15.18 (Debian 15.18-0+deb12u1)". The proxy keeps only
PostgreSQL's start-up keys, trims `server_version` to its number, then pipes bytes both ways. It
is test tooling for the Redshift stand-in (scripts/services.d/redshift.sh), never used in
production. Usage: redshift_proxy.py LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys

PROTOCOL_V3 = 196608
SSL_REQUEST = 80877103
KEEP = {b"user", b"database", b"application_name", b"options", b"replication", b"client_encoding",
        b"DateStyle", b"TimeZone"}


def rewrite_startup(message: bytes) -> bytes:
    """Drop the start-up keys PostgreSQL does not know; other messages pass through."""
    (protocol,) = struct.unpack("!I", message[4:8])
    if protocol != PROTOCOL_V3:
        return message
    parts = message[8:].split(b"\x00")
    pairs = [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2) if parts[i]]
    body = b"".join(k + b"\x00" + v + b"\x00" for k, v in pairs if k in KEEP) + b"\x00"
    return struct.pack("!II", 8 + len(body), protocol) + body


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def startup_replies(upstream: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
    """Server → client until ReadyForQuery (or an error), trimming `server_version`."""
    while True:
        kind = await upstream.readexactly(1)
        (length,) = struct.unpack("!I", await upstream.readexactly(4))
        body = await upstream.readexactly(length - 4)
        if kind == b"S" and body.startswith(b"server_version\x00"):
            version = body[len(b"server_version\x00"):-1].split(b" ")[0]
            body = b"server_version\x00" + version + b"\x00"
        client.write(kind + struct.pack("!I", len(body) + 4) + body)
        await client.drain()
        if kind in (b"Z", b"E"):
            return


async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, host: str,
                 port: int) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    try:
        while True:
            (length,) = struct.unpack("!I", await client_reader.readexactly(4))
            message = struct.pack("!I", length) + await client_reader.readexactly(length - 4)
            if struct.unpack("!I", message[4:8])[0] == SSL_REQUEST:  # no TLS on loopback
                client_writer.write(b"N")
                await client_writer.drain()
                continue
            upstream_writer.write(rewrite_startup(message))
            await upstream_writer.drain()
            break
        to_server = asyncio.ensure_future(pipe(client_reader, upstream_writer))  # carries the md5 exchange
        await startup_replies(upstream_reader, client_writer)
        await asyncio.gather(to_server, pipe(upstream_reader, client_writer), return_exceptions=True)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        for writer in (client_writer, upstream_writer):
            with contextlib.suppress(Exception):
                writer.close()


async def main(listen_port: int, host: str, port: int) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, host, port), "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
