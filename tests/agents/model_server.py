"""A local HTTP server playing an OpenAI-compatible chat-completions endpoint with recorded
replies (no model runs here): the first recorded cue found in the request's prompt picks the
reply."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def model_endpoint(
    replies: Mapping[str, str], *, together: int = 1
) -> Iterator[tuple[str, list[str]]]:
    """Yields the base URL and the list of prompts received. With ``together`` > 1, each
    request waits (up to 10 s) until that many are in flight, else fails with 503."""
    prompts: list[str] = []
    barrier = threading.Barrier(together, timeout=10) if together > 1 else None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            prompt = body["messages"][-1]["content"]
            prompts.append(prompt)
            if barrier is not None:
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    self.send_response(503)
                    self.end_headers()
                    return
            reply = next((r for cue, r in replies.items() if cue in prompt), None)
            if self.path != "/v1/chat/completions" or reply is None:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", prompts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
