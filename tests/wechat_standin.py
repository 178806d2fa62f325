"""A stand-in for WeChat's API server, run as its own process by the WeChat tests and bench:

    GET  /cgi-bin/token?grant_type=client_credential&appid=…&secret=…   a new access token
    GET  /cgi-bin/media/get?access_token=…&media_id=…                   the AMR clip registered for it
    POST /cgi-bin/message/custom/send?access_token=…                    recorded (the transcript)

and, for the test: `POST /_admin/faults` {"fault": "none"|"down"|"token_expired"|"window",
"send_delay_s": 0}, `POST /_admin/media?media_id=…` (body: the audio), `GET /_admin/pushes`,
`GET /_admin/stats`. Faults: `down` answers 503 to everything; `token_expired` makes every token
issued so far invalid (the next send gets 42001, a new token works); `window` answers 45015
(outside the 48-hour window) to sends.

    python -m tests.wechat_standin --port 8200 [--app-id wxlinli --secret s3cret]
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class State:
    def __init__(self, app_id: str, secret: str) -> None:
        self.app_id = app_id
        self.secret = secret
        self.lock = threading.Lock()
        self.valid_tokens: set[str] = set()
        self.counter = itertools.count(1)
        self.fault = "none"
        self.send_delay_s = 0.0
        self.media: dict[str, bytes] = {}
        self.pushes: list[dict] = []
        self.stats = {"token_fetches": 0, "send_attempts": 0, "refused_tokens": 0, "media_gets": 0}


class Handler(BaseHTTPRequestHandler):
    server: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _json(self, payload: object, status: int = 200) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _down(self) -> bool:
        if self.server.state.fault == "down" and not self.path.startswith("/_admin"):
            self._body()
            self._json({"errcode": -1, "errmsg": "stand-in is down"}, 503)
            return True
        return False

    def do_GET(self) -> None:
        if self._down():
            return
        state = self.server.state
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/cgi-bin/token":
            if query.get("appid") != state.app_id or query.get("secret") != state.secret:
                self._json({"errcode": 40013, "errmsg": "invalid appid"})
                return
            with state.lock:
                token = f"TOKEN-{next(state.counter)}"
                state.valid_tokens.add(token)
                state.stats["token_fetches"] += 1
            self._json({"access_token": token, "expires_in": 7200})
        elif url.path == "/cgi-bin/media/get":
            with state.lock:
                state.stats["media_gets"] += 1
                valid = query.get("access_token") in state.valid_tokens
                audio = state.media.get(query.get("media_id", ""))
            if not valid:
                self._json({"errcode": 42001, "errmsg": "access_token expired"})
            elif audio is None:
                self._json({"errcode": 40007, "errmsg": "invalid media_id"})
            else:
                self.send_response(200)
                self.send_header("Content-Type", "audio/amr")
                self.send_header("Content-Length", str(len(audio)))
                self.end_headers()
                self.wfile.write(audio)
        elif url.path == "/_admin/pushes":
            with state.lock:
                self._json({"pushes": list(state.pushes)})
        elif url.path == "/_admin/stats":
            with state.lock:
                self._json({**state.stats, "fault": state.fault, "pushes": len(state.pushes)})
        elif url.path == "/healthz":
            self._json({"status": "ok"})
        else:
            self._json({"errcode": 404, "errmsg": "not found"}, 404)

    def do_POST(self) -> None:
        if self._down():
            return
        state = self.server.state
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body()
        if url.path == "/cgi-bin/message/custom/send":
            with state.lock:
                state.stats["send_attempts"] += 1
                delay, fault = state.send_delay_s, state.fault
                valid = query.get("access_token") in state.valid_tokens
            if delay:
                time.sleep(delay)
            if not valid:
                with state.lock:
                    state.stats["refused_tokens"] += 1
                self._json({"errcode": 42001, "errmsg": "access_token expired"})
                return
            if fault == "window":
                self._json({"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"})
                return
            message = json.loads(body)
            with state.lock:
                state.pushes.append({"seq": len(state.pushes) + 1, "at": round(time.time(), 3),
                                     "touser": message["touser"], "msgtype": message["msgtype"],
                                     "content": message["text"]["content"]})
            self._json({"errcode": 0, "errmsg": "ok"})
        elif url.path == "/_admin/faults":
            settings = json.loads(body or b"{}")
            with state.lock:
                state.fault = settings.get("fault", "none")
                state.send_delay_s = float(settings.get("send_delay_s", 0))
                if state.fault == "token_expired":
                    state.valid_tokens.clear()
                    state.fault = "none"
            self._json({"fault": state.fault})
        elif url.path == "/_admin/media":
            with state.lock:
                state.media[query["media_id"]] = body
            self._json({"media_id": query["media_id"], "bytes": len(body)})
        else:
            self._json({"errcode": 404, "errmsg": "not found"}, 404)


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: State) -> None:
        super().__init__(address, Handler)
        self.state = state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--app-id", default="wxlinlitest")
    parser.add_argument("--secret", default="standin-secret")
    args = parser.parse_args()
    StandIn((args.host, args.port), State(args.app_id, args.secret)).serve_forever()


if __name__ == "__main__":
    main()
