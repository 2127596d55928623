"""A fake LiveKit server API: Twirp over HTTP on 127.0.0.1, protobuf bodies.

Generic over every LiveKit Twirp service. Register a handler per (service, method); requests are
decoded with the `livekit.protocol` message classes, recorded in order, and answered with the
handler's response message or a Twirp JSON error. Example::

    with FakeTwirpServer(api_key="k", api_secret="s") as server:
        server.on("RoomService", "DeleteRoom", lambda req: room.DeleteRoomResponse())
        server.on("SIP", "CreateSIPParticipant", lambda req: TwirpError("not_found", "no trunk", 404))
        ... LiveKitAPI(server.url, "k", "s") ...
        [c.request.room for c in server.calls_to("RoomService", "DeleteRoom")]

Service names are the protobuf ones without the `livekit.` package: `RoomService`, `SIP`,
`AgentDispatchService`, `Egress`, `Ingress`. A handler gets the decoded request message and
returns the response message (None means an empty response of the method's output type), or
returns/raises a `TwirpError`. A method without a handler answers `unimplemented` (HTTP 501).
With `api_key`/`api_secret` set, the `Authorization: Bearer` token is verified like the real
server does (HTTP 401 `unauthenticated` otherwise) and its claims are recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from livekit import api
from livekit.protocol import agent_dispatch, egress, ingress, room, sip  # noqa: F401 (registers the services)


class TwirpError(Exception):
    """A Twirp error answer: JSON body {"code", "msg", "meta"} with an HTTP status."""

    def __init__(self, code: str, msg: str, status: int = 400, meta: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.status, self.meta = code, msg, status, meta or {}


@dataclass
class TwirpCall:
    service: str
    method: str
    request: Message
    at: float  # time.monotonic() when the request arrived
    claims: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Message], "Message | TwirpError | None"]


def _method_types(service: str, method: str) -> tuple[type[Message], type[Message]] | None:
    try:
        desc = descriptor_pool.Default().FindServiceByName(f"livekit.{service}").FindMethodByName(method)
    except KeyError:
        return None
    if desc is None:
        return None
    return message_factory.GetMessageClass(desc.input_type), message_factory.GetMessageClass(desc.output_type)


# the credentials tests give both this server and the code under test
API_KEY, API_SECRET = "test-key", "test-secret-that-is-long-enough-for-hs256"


class FakeTwirpServer:
    def __init__(self, *, api_key: str | None = None, api_secret: str | None = None) -> None:
        self.api_key, self.api_secret = api_key, api_secret
        self.calls: list[TwirpCall] = []
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-twirp", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """The settings that point our code at this server."""
        key, secret = self.api_key or "", self.api_secret or ""
        return {"LIVEKIT_URL": self.url, "LIVEKIT_API_KEY": key, "LIVEKIT_API_SECRET": secret}

    def reset(self) -> None:
        """Forget the calls received and the handlers installed (a server reused across tests)."""
        with self._lock:
            self.calls.clear()
        self._handlers.clear()

    def on(self, service: str, method: str, handler: Handler) -> None:
        """Answer `service`/`method` with `handler(request)`."""
        if _method_types(service, method) is None:
            raise ValueError(f"no Twirp method livekit.{service}/{method}")
        self._handlers[(service, method)] = handler

    def calls_to(self, service: str, method: str) -> list[TwirpCall]:
        with self._lock:
            return [c for c in self.calls if (c.service, c.method) == (service, method)]

    def start(self) -> FakeTwirpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeTwirpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        prefix, _, rest = path.partition("/twirp/livekit.")
        service, _, method = rest.partition("/")
        types_ = _method_types(service, method) if not prefix and service and method else None
        if types_ is None:
            raise TwirpError("bad_route", f"no handler for {path}", 404)
        request_cls, response_cls = types_
        claims = self._verify(headers.get("authorization", ""))
        try:
            if headers.get("content-type", "").startswith("application/json"):
                request = json_format.Parse(body or b"{}", request_cls())
            else:
                request = request_cls.FromString(body)
        except (DecodeError, json_format.ParseError) as exc:
            raise TwirpError("malformed", f"could not decode {request_cls.__name__}: {exc}") from exc
        with self._lock:
            self.calls.append(TwirpCall(service, method, request, time.monotonic(), claims, headers))
        handler = self._handlers.get((service, method))
        if handler is None:
            raise TwirpError("unimplemented", f"{service}/{method} has no handler in this test", 501)
        response = handler(request)
        if isinstance(response, TwirpError):
            raise response
        response = response if response is not None else response_cls()
        if headers.get("content-type", "").startswith("application/json"):
            return 200, "application/json", json_format.MessageToJson(response).encode()
        return 200, "application/protobuf", response.SerializeToString()

    def _verify(self, authorization: str) -> Any:
        if not (self.api_key and self.api_secret):
            return None
        token = authorization.removeprefix("Bearer ").strip()
        try:
            return api.TokenVerifier(self.api_key, self.api_secret).verify(token)
        except Exception as exc:
            raise TwirpError("unauthenticated", f"invalid token: {exc}", 401) from exc

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, ctype, payload = server._answer(self.path, headers, body)
                except TwirpError as err:
                    status, ctype = err.status, "application/json"
                    payload = json.dumps({"code": err.code, "msg": err.msg, "meta": err.meta}).encode()
                except Exception as exc:  # a broken handler is a test bug: answer like Twirp does
                    status, ctype = 500, "application/json"
                    payload = json.dumps({"code": "internal", "msg": repr(exc), "meta": {}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self.send_error(404)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return _Handler
