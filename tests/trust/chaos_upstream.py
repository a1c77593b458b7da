"""A provider API over raw TCP that misbehaves on command, for fault and hygiene tests.

:class:`ChaosUpstream` answers every request according to ``mode``: it resets
the connection, stalls, dribbles, floods, sends bytes that are not UTF-8, HTML,
or a 200 whose body is an error; ``"ok"`` is an empty, valid page.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

MODES = ("reset", "stall", "dribble", "huge", "not_utf8", "html", "error_200")

HEADERS_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


class ChaosUpstream:
    """A raw HTTP/1.1 server whose next answers follow ``self.mode``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.server = server
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self._answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        if mode == "reset":
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if mode == "stall":
            await asyncio.sleep(30)
            return
        if mode == "dribble":
            writer.write(HEADERS_JSON + b"Content-Length: 1000\r\n\r\n{")
            await writer.drain()
            await asyncio.sleep(30)
            return
        bodies = {
            "ok": b'{"data": [], "paging": {}}',
            "huge": b'{"data": [' + b'{"id": "x", "text": "' + b"a" * 2_000_000 + b'"}]}',
            "not_utf8": b'{"data": [{"id": "\xff\xfe"}]}',
            "error_200": b'{"error": {"message": "Invalid OAuth access token", "code": 190}}',
        }
        if mode == "html":
            body = b"<html><body>Service Unavailable</body></html>"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body
            )  # fmt: skip
        else:
            body = bodies[mode]
            writer.write(HEADERS_JSON + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
