"""Server-sent events from work that runs in a thread (the model answering): what the
thread pushes is rendered as events in order; a keep-alive comment every second finds out
that a client left even before the first token, and a client that leaves sets the
`cancelled` event, so the model stops at its next token."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from fastapi.responses import StreamingResponse

from ..errors import Cancelled

Push = Callable[[str, Any], None]


def stream_from_thread(job: Callable[[Push, threading.Event], None], render: Callable[[str, Any], str], *,
                       first: str = "", on_error: Callable[[Exception], Any]) -> StreamingResponse:
    """Run `job(push, cancelled)` in a thread; each `push(kind, data)` becomes `render(kind,
    data)` on the stream. An exception becomes `render("error", on_error(exc))`; `Cancelled`
    (the client left) ends it quietly. `first` is sent at once."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str | None, Any]] = asyncio.Queue()
    cancelled = threading.Event()

    def push(kind: str | None, data: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, data))

    def work() -> None:
        try:
            job(push, cancelled)
        except Cancelled:
            pass
        except Exception as exc:  # noqa: BLE001 - reported to the client as an event
            push("error", on_error(exc))
        finally:
            push(None, None)

    threading.Thread(target=work, name="kgmem-ask", daemon=True).start()

    async def events() -> Any:
        try:
            if first:
                yield first
            while True:
                try:
                    kind, data = await asyncio.wait_for(queue.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if kind is None:
                    return
                yield render(kind, data)
        finally:
            cancelled.set()  # the client left (or all was sent): free the model

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
