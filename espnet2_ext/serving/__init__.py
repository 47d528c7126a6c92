"""Live translation served to a browser: one port, our own page at ``/``, simulstream's
client protocol on the WebSocket at ``/ws``.

- :mod:`.protocol`: the messages, parsed and written by pure functions;
- :mod:`.session`: one client's stream (its own translator) as a state machine, no sockets;
- :mod:`.translators`: the translators a server can run, one per client;
- :mod:`.server`: the asyncio server (the page, the client limit, idle clients);
- ``static/``: the page (plain HTML, CSS and JavaScript; no build step, nothing fetched
  from elsewhere).
"""
