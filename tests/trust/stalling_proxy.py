"""A TCP proxy that can stop forwarding on command: a database that goes slow mid-request.

It sits between the gateway and PostgreSQL. While it forwards, it is invisible.
After :meth:`StallingProxy.stall`, bytes from the gateway are held instead of
sent, so every query the gateway issues from then on waits for an answer that
never comes, exactly as over a congested or partitioned network. A test can
wait (on an event, not a sleep) until the held bytes contain what it is
looking for, then either :meth:`resume` (the held bytes go through, late) or
:meth:`sever` (every proxied connection is dropped; PostgreSQL rolls back what
they had open).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress

CHUNK = 65536


class StallingProxy:
    """Forwards 127.0.0.1:<port> to ``target_host:target_port`` in a thread of its own."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._forwarding = asyncio.Event()
        self._held = bytearray()
        self._held_lock = threading.Lock()
        self._wanted: tuple[bytes, threading.Event] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="stalling-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._forwarding.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        self._loop.run_forever()

    # -- commands, called from the test's thread -------------------------------------------

    def stall(self) -> None:
        """From now on, hold every byte the client side sends."""
        self._loop.call_soon_threadsafe(self._forwarding.clear)

    def resume(self) -> None:
        """Forward again, starting with what was held."""
        with self._held_lock:
            self._held.clear()
        self._loop.call_soon_threadsafe(self._forwarding.set)

    def sever(self) -> None:
        """Drop every proxied connection (held bytes are discarded) and forward new ones."""
        asyncio.run_coroutine_threadsafe(self._sever(), self._loop).result(10)

    def held_event(self, marker: bytes = b"") -> threading.Event:
        """An event set once the held bytes contain ``marker`` (any byte when empty)."""
        event = threading.Event()
        with self._held_lock:
            self._wanted = (marker, event)
            self._check_wanted()
        return event

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- the proxy itself, on its own loop -----------------------------------------------

    def _check_wanted(self) -> None:
        if self._wanted is not None and self._held:
            marker, event = self._wanted
            if marker in self._held:
                event.set()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.close()
            return
        self._writers.update((client_w, server_w))
        pumps = {
            asyncio.create_task(self._pump(client_r, server_w, held=True)),
            asyncio.create_task(self._pump(server_r, client_w, held=False)),
        }
        self._pumps.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        self._pumps.difference_update(pumps)
        for writer in (client_w, server_w):
            self._writers.discard(writer)
            writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, held: bool
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                if held and not self._forwarding.is_set():
                    with self._held_lock:
                        self._held.extend(data)  # what all connections hold, for held_event
                        self._check_wanted()
                    await self._forwarding.wait()  # this connection's bytes wait in `data`
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            with suppress(Exception):
                writer.close()

    async def _sever(self) -> None:
        for pump in list(self._pumps):
            pump.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        with self._held_lock:
            self._held.clear()
        self._forwarding.set()

    async def _close(self) -> None:
        self._server.close()
        await self._sever()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
