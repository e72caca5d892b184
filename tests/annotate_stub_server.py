"""A loopback OpenAI-compatible chat server for the annotator tests and benchmark (standard library).

It answers `POST /v1/chat/completions` by filling the answer skeleton that aether's VLM prompt
contains (so a valid answer is valid for any request), and `GET /v1/models`. Behaviour is chosen
per request by a `MODE=<mode>` marker anywhere in the user text (tests put it in the request's
`category_description`, which the prompt quotes):

    ok (default)       valid answer after `latency` seconds
    malformed          2nd and 3rd sections swapped (→ format:order); `malformed-once`: only on the first try
    slow               sleeps `slow_s` (beyond the client's timeout); `slow-once`
    500                HTTP 500; `500-once`
    garbage            HTTP 200 with a body that is not JSON
    fewvariants        valid completion, but only one instruction variant

Counters (thread-safe): `requests`, `per_mode`, `max_in_flight`, `auth_failures`, `images`; per request:
`image_counts` (image parts) and `user_texts`.

Run standalone for a manual `aether build --annotator openai` check::

    python tests/annotate_stub_server.py --port 8000 --latency 0.2
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODE_RE = re.compile(r"MODE=([a-z0-9-]+)")
SECTION_LINE_RE = re.compile(r"^(<(?:problem|plan)_[a-z]+_start>)(.*)(<(?:problem|plan)_[a-z]+_end>)$")
RETOUCH = "<retouch_light><retouch_color&temp><retouch_colormixer>"


def _user_text(body: dict[str, Any]) -> str:
    parts = []
    for msg in body.get("messages", []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(p.get("text", "") for p in content if p.get("type") == "text")
    return "\n".join(parts)


def _image_count(body: dict[str, Any]) -> int:
    return sum(
        1
        for msg in body.get("messages", [])
        if isinstance(msg.get("content"), list)
        for p in msg["content"]
        if p.get("type") == "image_url"
    )


def _has_image(body: dict[str, Any]) -> bool:
    for msg in body.get("messages", []):
        content = msg.get("content")
        if isinstance(content, list):
            for p in content:
                if p.get("type") == "image_url" and p["image_url"]["url"].startswith(
                    "data:image/jpeg;base64,"
                ):
                    return True
    return False


def fill_skeleton(user_text: str, n_variants: int = 3) -> str:
    """A valid answer: the prompt's skeleton lines with each [placeholder] replaced by plain text."""
    lines: list[str] = []
    for raw in user_text.splitlines():
        line = raw.strip()
        if line.startswith("Key elements: ["):
            lines.append("Key elements: a person by a lake at dusk, soft side light, muted colours.")
        elif m := SECTION_LINE_RE.match(line):
            body = m.group(2)
            if body.startswith("["):
                names = body.split("naming each of:")[-1].strip(" ]") if "naming each of:" in body else ""
                body = f"Adjust carefully: {names}." if names else "The tones need a gentle correction."
            lines.append(m.group(1) + body + m.group(3))
        elif line == RETOUCH:
            lines.append(RETOUCH)
    answer = "\n".join(lines)
    if 'first a line "Instructions:"' in user_text:
        variants = [
            "Please give this photo a gentle, polished edit.",
            "Could you make the picture look a bit more refined?",
            "Edit this image so it looks carefully retouched.",
            "Make this shot look professionally finished.",
        ][:n_variants]
        numbered = "\n".join(f"{i + 1}. {v}" for i, v in enumerate(variants))
        answer = f"Instructions:\n{numbered}\n\n{answer}"
    return answer


def _swap_sections(answer: str) -> str:
    lines = answer.splitlines()
    idx = [i for i, ln in enumerate(lines) if SECTION_LINE_RE.match(ln)]
    if len(idx) >= 3:
        a, b = idx[1], idx[2]
        lines[a], lines[b] = lines[b], lines[a]
    return "\n".join(lines)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default (5) refuses bursts from a wide client pool
    daemon_threads = True


class StubServer:
    """`with StubServer(latency=0.2) as s: s.base_url` → http://127.0.0.1:PORT/v1 (ephemeral port)."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        slow_s: float = 2.0,
        api_key: str | None = None,
        model: str = "stub-vl",
        port: int = 0,
    ) -> None:
        self.latency = latency
        self.slow_s = slow_s
        self.api_key = api_key
        self.model = model
        self._lock = threading.Lock()
        self.requests = 0
        self.per_mode: Counter[str] = Counter()
        self.per_prompt: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth_failures = 0
        self.images = 0
        self.seen_bodies: list[str] = []
        self.image_counts: list[int] = []
        self.user_texts: list[str] = []
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset_counters(self) -> None:
        with self._lock:
            self.requests = 0
            self.per_mode.clear()
            self.per_prompt.clear()
            self.max_in_flight = 0
            self.auth_failures = 0
            self.images = 0
            self.seen_bodies.clear()
            self.image_counts.clear()
            self.user_texts.clear()

    def start(self) -> StubServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="stub-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ------------------------------------------------------------------------------
    def _answer(self, body: dict[str, Any]) -> tuple[int, bytes, float]:
        """(status, response body, delay) for one chat request."""
        user = _user_text(body)
        m = MODE_RE.search(user)
        mode = m.group(1) if m else "ok"
        with self._lock:
            self.requests += 1
            self.per_mode[mode] += 1
            self.per_prompt[user] += 1
            attempt = self.per_prompt[user]
            self.images += int(_has_image(body))
            self.seen_bodies.append(json.dumps(body)[:2000])
            self.image_counts.append(_image_count(body))
            self.user_texts.append(user)
        if mode.endswith("-once"):
            mode = mode[: -len("-once")] if attempt == 1 else "ok"
        delay = self.latency
        if mode == "500":
            return 500, b'{"error": {"message": "internal error"}}', delay
        if mode == "garbage":
            return 200, b"<html>not json</html>", delay
        if mode == "slow":
            delay = self.slow_s
        answer = fill_skeleton(user)
        if mode == "malformed":
            answer = _swap_sections(answer)
        if mode == "fewvariants":
            answer = re.sub(r"(?m)^[23]\. .*\n", "", answer)
        payload = {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "model": body.get("model", self.model),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
            ],
        }
        return 200, json.dumps(payload).encode(), delay

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): expected in the slow mode

            def _authorised(self) -> bool:
                if stub.api_key is None:
                    return True
                ok = self.headers.get("Authorization") == f"Bearer {stub.api_key}"
                if not ok:
                    with stub._lock:
                        stub.auth_failures += 1
                    self._send(401, b'{"error": {"message": "bad key"}}')
                return ok

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path.rstrip("/").endswith("/v1/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": stub.model}]}).encode())
                else:
                    self._send(404, b"{}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self._authorised():
                    return
                if not self.path.rstrip("/").endswith("/v1/chat/completions"):
                    self._send(404, b"{}")
                    return
                with stub._lock:
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    status, data, delay = stub._answer(json.loads(raw))
                    if delay > 0:
                        time.sleep(delay)
                finally:
                    # leave before answering: once the client has the answer it may send its next
                    # request before this thread runs again, which counted one request twice
                    with stub._lock:
                        stub.in_flight -= 1
                self._send(status, data)

        return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description="loopback OpenAI-compatible stub for aether annotators")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()
    with StubServer(latency=args.latency, port=args.port) as s:
        print(f"serving {s.base_url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
