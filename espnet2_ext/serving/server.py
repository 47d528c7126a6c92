"""The page at ``/`` and simulstream's protocol at ``/ws``, on one port (``websockets``' asyncio server).

Each client of ``/ws`` gets one of ``max_clients`` translators, built when the server
starts (each its own model: ESPnet's attention modules keep their last weights on
themselves, so two streams must not share one), and its own
:class:`~espnet2_ext.serving.session.ClientSession`; its computation runs in a thread
of its own, so a slow client delays nobody else. A client past the limit, one that
breaks the protocol, one silent for ``idle_seconds`` is sent one ``{"error": ...}`` and
closed; the others go on. Any other path is a file of the page, or 404.

simulstream's own server (``simulstream.server.websocket_server``) waits for a free
processor instead of refusing, logs and ignores a malformed message, never closes an
idle client and serves no page: the messages are its, the rules ours.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib import resources
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from espnet2_ext.serving.protocol import ProtocolError, error_message
from espnet2_ext.serving.session import ClientSession
from espnet2_ext.serving.translators import StreamTranslator

__all__ = ["LiveServer", "listen", "page_files", "running"]

LOGGER = logging.getLogger(__name__)
WEBSOCKET_PATH = "/ws"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# WebSocket close codes (RFC 6455 section 7.4.1)
POLICY_VIOLATION, INTERNAL_ERROR, TRY_AGAIN_LATER = 1008, 1011, 1013


def page_files() -> dict[str, tuple[bytes, str]]:
    """URL path -> (content, content type) of every file of the page (``static/``, package data)."""
    files = {}
    for entry in (resources.files(__package__) / "static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in CONTENT_TYPES:
            files["/" + entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])
    files["/"] = files["/index.html"]
    return files


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or OSError (``errno.EADDRINUSE``: the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, reuse_port=False)


class LiveServer:
    """Serve the page and the protocol to up to ``max_clients`` clients at once.

    Args:
        make_translator: makes one translator (called ``max_clients`` times, now).
        max_clients: clients translated at once; one more is refused.
        idle_seconds: a client that sends nothing for this long is closed.
    """

    def __init__(self, make_translator: Callable[[], StreamTranslator], max_clients: int, idle_seconds: float):
        if max_clients < 1 or not idle_seconds > 0:
            raise ValueError(f"expected max_clients >= 1 and idle_seconds > 0, got {max_clients}, {idle_seconds}")
        self.max_clients = max_clients
        self.idle_seconds = idle_seconds
        self._free = [make_translator() for _ in range(max_clients)]
        self._files = page_files()
        self._executor = ThreadPoolExecutor(max_clients, thread_name_prefix="translate")

    @property
    def clients(self) -> int:
        """Clients connected now (each holds a translator)."""
        return self.max_clients - len(self._free)

    async def run(self, sock: socket.socket, stop: asyncio.Future | None = None) -> None:
        """Serve on the listening ``sock`` until ``stop`` is done (or forever)."""
        async with serve(self._client, sock=sock, process_request=self._http, max_size=2**20) as server:
            if stop is None:
                await server.serve_forever()
            else:
                await stop

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ HTTP

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """The page's files; None lets ``/ws`` go on to the WebSocket handshake."""
        path = urlsplit(request.path).path
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("Host"):
            return connection.respond(403, f"cross-origin requests from {origin} are refused\n")
        if path == WEBSOCKET_PATH:
            if request.headers.get("Upgrade", "").lower() != "websocket":
                return connection.respond(426, f"{path} speaks WebSocket only; the page is at /\n")
            return None
        if path not in self._files:
            return connection.respond(404, f"{path}: not found\n")
        body, content_type = self._files[path]
        headers = Headers([
            ("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"),
            ("Connection", "close"),
        ])
        return Response(200, "OK", headers, body)

    # ------------------------------------------------------------------ WebSocket

    async def _client(self, websocket: ServerConnection) -> None:
        name = "%s:%s" % websocket.remote_address[:2]
        if not self._free:
            LOGGER.info("%s refused: %d clients already", name, self.max_clients)
            await _close(websocket, TRY_AGAIN_LATER,
                         f"the server is busy: it translates {self.max_clients} client(s) at a time; try again later")
            return
        session = ClientSession(self._free.pop())
        LOGGER.info("%s connected", name)
        try:
            reason = await self._converse(websocket, session)
        finally:
            try:
                session.close()
            except Exception:  # the translator may be broken: the next client will say so
                LOGGER.exception("resetting the translator failed")
            self._free.append(session.translator)
        LOGGER.info("%s closed: %s", name, reason)

    async def _converse(self, websocket: ServerConnection, session: ClientSession) -> str:
        """Messages in, replies out, until the client leaves or must go; why it ended."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await asyncio.wait_for(websocket.recv(), self.idle_seconds)
            except asyncio.TimeoutError:
                reason = f"nothing received for {self.idle_seconds:g} s"
                await _close(websocket, POLICY_VIOLATION, reason)
                return reason
            except ConnectionClosed:
                return "the client left"
            try:
                replies = await loop.run_in_executor(self._executor, session.receive, message)
            except ProtocolError as err:
                await _close(websocket, POLICY_VIOLATION, str(err))
                return str(err)
            except Exception:
                LOGGER.exception("translation failed")
                await _close(websocket, INTERNAL_ERROR, "the translator failed (see the server's log)")
                return "the translator failed"
            try:
                for reply in replies:
                    await websocket.send(reply)
            except ConnectionClosed:
                return "the client left"


async def _close(websocket: ServerConnection, code: int, reason: str) -> None:
    """Tell the client why (one error message), then close."""
    try:
        await websocket.send(error_message(reason))
        await websocket.close(code, reason.encode()[:120].decode(errors="ignore"))
    except ConnectionClosed:
        pass


@contextmanager
def running(server: LiveServer, sock: socket.socket) -> Iterator[str]:
    """``server`` on ``sock`` in a thread of its own, for a program that goes on (a test, a
    benchmark): yields ``http://host:port``; stops it at the end."""
    loop = asyncio.new_event_loop()
    stop = loop.create_future()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.run(sock, stop),), daemon=True)
    thread.start()
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join()
        loop.close()
