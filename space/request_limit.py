"""The web server's first line of defence: a request body over a size limit is answered 413 before it is read
or parsed, so a 40 MB "prompt" costs neither memory nor CPU. Uploads are left to launch(max_file_size=...);
texts that pass are then cut or refused by length (in characters) in the handlers, in the visitor's language."""

import json

from space.texts import msg

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
        lang = "pt" if headers.get(b"accept-language", b"").lower().startswith(b"pt") else "en"
        body = json.dumps({"detail": msg(lang, "request_too_large", limit=self.max_bytes // 1024)}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
