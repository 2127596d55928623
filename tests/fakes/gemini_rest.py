"""A fake of Gemini's REST `generateContent` on 127.0.0.1: the real google-genai SDK reaches it
through `GOOGLE_GEMINI_BASE_URL`. Each request is recorded; each answer is the next scripted
reply: a JSON text for the model to "say", an HTTP status to fail with, or a pause."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeGeminiRest:
    def __init__(self) -> None:
        self.replies: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.paths.append(self.path)
                reply = fake.replies.popleft() if fake.replies else {"text": "{}"}
                time.sleep(reply.get("pause", 0))
                if "status" in reply:
                    self._send(reply["status"], {"error": {"code": reply["status"], "message": "fake failure",
                                                           "status": "UNAVAILABLE"}})  # fmt: skip
                    return
                candidate = {"content": {"role": "model", "parts": [{"text": reply["text"]}]}, "finishReason": "STOP"}
                usage = {"promptTokenCount": 120, "candidatesTokenCount": 40, "totalTokenCount": 160}
                self._send(200, {"candidates": [candidate], "usageMetadata": usage})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def say(self, reply: Any) -> None:
        """The model's next answer: a dict or list is sent as its JSON text, a str as it is."""
        self.replies.append({"text": reply if isinstance(reply, str) else json.dumps(reply)})

    def fail(self, status: int) -> None:
        self.replies.append({"status": status})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
