"""The token every request must carry when the server has one (any address but
loopback): `Authorization: Bearer T`, or the `kgmem_token` cookie that a visit to
`/?token=T` sets (how the web page works). Plain ASGI: it costs microseconds.
(The size limit is FastAPI's own `max_body_size`.)"""
from __future__ import annotations

import json
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

COOKIE = "kgmem_token"


async def _reply(send: Any, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: Any, *, token: str | None):
        self.app, self.token = app, token

    def __getattr__(self, name: str) -> Any:  # the FastAPI app's attributes (openapi, routes, state)
        return getattr(self.app, name)

    def _authorized(self, scope: dict[str, Any]) -> tuple[bool, bool]:
        """(allowed, came by the query string: set the cookie)."""
        assert self.token is not None
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer ") and _same(auth[7:].strip(), self.token):
            return True, False
        cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        if COOKIE in cookie and _same(cookie[COOKIE].value, self.token):
            return True, False
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if given is not None and _same(given, self.token):
            return True, True
        return False, False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        set_cookie = False
        if self.token is not None:
            allowed, set_cookie = self._authorized(scope)
            if not allowed:
                await _reply(send, 401, "a token is needed: Authorization: Bearer <token>",
                             [(b"www-authenticate", b"Bearer")])
                return
        if not set_cookie:
            await self.app(scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                value = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", value.encode())]}
            await send(message)

        await self.app(scope, receive, sending)


def _same(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode(), token.encode())
