"""The web server's first line of defence, before any handler runs: a request body over a size limit is answered
413 before it is read or parsed, so a 40 MB "prompt" costs neither memory nor CPU (uploads have their own limits,
space/uploads.py); and one network address may keep only its share of Gradio's queue waiting, so that no script
can fill the queue every visitor shares. Texts that pass are then cut or refused by length (in characters) in the
handlers, in the visitor's language."""

import json

from starlette.requests import Request

from space.texts import msg
from space.visitors import client_address

DEFAULT_MAX_REQUEST_BYTES = 256 * 1024  # a prompt or a form is a few kB; the handlers' own limit is 4,000 chars


class RequestTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse (413) an HTTP request whose body is over `max_bytes` (uploads excepted)."""

    def __init__(self, app, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].rstrip("/").endswith("/upload"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send, headers)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise RequestTooLarge
            return message

        started = False

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched_send)
        except RequestTooLarge:
            if not started:
                await self._refuse(send, headers)

    async def _refuse(self, send, headers):
        await refuse(send, headers, 413, "request_too_large", limit=self.max_bytes // 1024)


async def refuse(send, headers: dict, status: int, key: str, **values) -> None:
    """Answer an HTTP request with `status` and the message `key` in the language of its Accept-Language."""
    lang = "pt" if headers.get(b"accept-language", b"").lower().startswith(b"pt") else "en"
    body = json.dumps({"detail": msg(lang, key, **values)}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def joins_queue(scope) -> bool:
    """A request that puts an event in Gradio's queue (the browser's and gradio_client's join, the /call API)."""
    path = scope["path"].rstrip("/")
    return scope["method"] == "POST" and (path.endswith("/queue/join") or "/call/" in path)


class QueueShare:
    """ASGI middleware: a request to join Gradio's queue is refused (429) while events from its network address
    already wait there `per_client` times. Gradio counts waiting events over all visitors together and has no
    per-client limit, so its queue (its private structures, Gradio 6.31) is read here."""

    def __init__(self, app, per_client: int, behind_proxy: bool):
        self.app = app
        self.per_client = per_client
        self.behind_proxy = behind_proxy

    def waiting_from(self, blocks, client: str) -> int:
        queue = getattr(blocks, "_queue", None)
        queues = getattr(queue, "event_queue_per_concurrency_id", {}) or {}
        return sum(client_address(event.request, self.behind_proxy) == client
                   for waiting in list(queues.values()) for event in list(waiting.queue))

    async def __call__(self, scope, receive, send):
        blocks = getattr(scope.get("app"), "get_blocks", lambda: None)()  # Gradio's own app, not a parent's
        if scope["type"] == "http" and blocks is not None and joins_queue(scope):
            client = client_address(Request(scope), self.behind_proxy)
            if self.waiting_from(blocks, client) >= self.per_client:
                return await refuse(send, dict(scope.get("headers") or []), 429, "client_queue_full",
                                    n=self.per_client)
        return await self.app(scope, receive, send)
