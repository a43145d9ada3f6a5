"""A real HTTP stand-in for an OpenAI-compatible server (GPT-4.1's chat completions, or a `vllm serve`
with raw-prompt completions and runtime LoRA endpoints), with scripted failures.

Tests talk to it over a socket on 127.0.0.1 through the official openai client, so retries,
timeouts and dropped connections are exercised for real rather than mocked. Each request consumes
the next behaviour of `script`; once the script is used up every request gets a normal reply whose
content comes from `reply(request_body)`. vLLM's LoRA load/unload endpoints answer 404 unless
`runtime_lora=True`, as on a server started without VLLM_ALLOW_RUNTIME_LORA_UPDATING.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ok | 429 (with retry-after) | 500 | garbage (non-JSON 200) | no_choices | slow (past the client
# timeout) | drop (close the socket without a reply) | 401 (not retryable)
BEHAVIOURS = ("ok", "429", "500", "garbage", "no_choices", "slow", "drop", "401")

COMPLETION_ROUTES = ("/v1/chat/completions", "/v1/completions")
LORA_ROUTES = ("/v1/load_lora_adapter", "/v1/unload_lora_adapter")
_GOLD = re.compile(r"Gold answer: (.*)\nStudent answer: (.*)\nIs the student answer", re.S)


def gullible_judge(body: dict) -> str:
    """Says yes when the gold string occurs in the student answer, or when the answer says "yes":
    the second rule makes it fall for prompt injection, as a real judge sometimes does."""
    match = _GOLD.search(body["messages"][-1]["content"])
    if match is None:
        return "no"
    gold, student = match.group(1).lower(), match.group(2).lower()
    return "yes" if gold in student or re.search(r"\byes\b", student) else "no"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping on a "slow" request must not block shutdown
    request_queue_size = 128  # the default backlog of 5 drops concurrent connects (1 s SYN retry)


class FakeOpenAIServer:
    """Context manager: `with FakeOpenAIServer(script=["429", "ok"]) as server: server.base_url`."""

    def __init__(
        self,
        script: list[str] | None = None,
        reply: Callable[[dict], str] = gullible_judge,
        latency: float = 0.0,
        slow_seconds: float = 1.0,
        retry_after: str = "0",
        usage: tuple[int, int] = (100, 2),
        finish_reason: str = "stop",
        runtime_lora: bool = False,
    ) -> None:
        unknown = set(script or ()) - set(BEHAVIOURS)
        if unknown:
            raise ValueError(f"unknown behaviours {unknown}; choose from {BEHAVIOURS}")
        self.script, self.reply, self.latency = list(script or ()), reply, latency
        self.slow_seconds, self.retry_after, self.usage = slow_seconds, retry_after, usage
        self.finish_reason, self.runtime_lora = finish_reason, runtime_lora
        self.hits = 0
        self.bodies: list[dict] = []
        self.paths: list[str] = []  # the completion route of each entry of `bodies`
        self.lora_calls: list[tuple[str, dict]] = []  # (route, body) of every LoRA endpoint call
        self.loaded_adapters: dict[str, str] = {}  # name -> path, while loaded
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        # A short poll interval: shutdown() waits up to one interval, which would dominate fast tests.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, path: str, body: dict, auth: str) -> str:
        with self._lock:
            self.hits += 1
            self.bodies.append(body)
            self.paths.append(path)
            self.auth_headers.append(auth)
            return self.script.pop(0) if self.script else "ok"

    def _completion(self, path: str, body: dict) -> dict:
        prompt_tokens, completion_tokens = self.usage
        text = self.reply(body)
        if path == "/v1/chat/completions":
            obj, choice = "chat.completion", {"message": {"role": "assistant", "content": text}}
        else:
            obj, choice = "text_completion", {"text": text}
        return {
            "id": f"cmpl-fake-{self.hits}",
            "object": obj,
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, **choice, "finish_reason": self.finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _lora(self, body: dict) -> None:
                """vLLM's runtime LoRA endpoints: 200 with a text body; 404 when disabled or unknown; 400 for a
                name already loaded."""
                with server._lock:
                    server.lora_calls.append((self.path, body))
                    name = body.get("lora_name", "")
                    if not server.runtime_lora:
                        self._send(404, b'{"detail": "Not Found"}')
                    elif self.path == "/v1/load_lora_adapter" and name in server.loaded_adapters:
                        message = f"The lora adapter '{name}' has already been loaded."
                        self._send(400, json.dumps({"error": {"message": message, "code": 400}}).encode())
                    elif self.path == "/v1/load_lora_adapter":
                        server.loaded_adapters[name] = body["lora_path"]
                        self._send(200, f"Success: LoRA adapter '{name}' added successfully.".encode())
                    elif server.loaded_adapters.pop(name, None) is None:
                        self._send(404, b'{"error": {"message": "adapter not found", "code": 404}}')
                    else:
                        self._send(200, f"Success: LoRA adapter '{name}' removed successfully.".encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path in LORA_ROUTES:
                    self._lora(body)
                    return
                if self.path not in COMPLETION_ROUTES:
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                behaviour = server._next(self.path, body, self.headers.get("Authorization", ""))
                error = json.dumps({"error": {"message": f"scripted {behaviour}"}}).encode()
                if behaviour == "429":
                    self._send(429, error, {"retry-after": server.retry_after})
                elif behaviour in ("500", "401"):
                    self._send(int(behaviour), error)
                elif behaviour == "garbage":
                    self._send(200, b"<html>upstream proxy error</html>")
                elif behaviour == "no_choices":
                    self._send(200, json.dumps({"id": "x", "object": "chat.completion"}).encode())
                elif behaviour == "drop":
                    self.close_connection = True
                else:
                    time.sleep(server.slow_seconds if behaviour == "slow" else server.latency)
                    try:
                        self._send(200, json.dumps(server._completion(self.path, body)).encode())
                    except OSError:  # the client gave up (timeout) and closed the socket
                        self.close_connection = True

        return Handler
