"""The demo site's HTTP server (a local replica of the places inspectors patrol).

Run ``python -m crawler.demo.server [--host 127.0.0.1] [--port 0]``: once listening it prints exactly
one line ``XUNJIAN_DEMO_URL=http://127.0.0.1:PORT`` and serves until SIGTERM or SIGINT (exit 0).
``start_demo_server()`` (re-exported here from ``crawler.demo.process``) runs it as a subprocess.

Besides the rendered pages it serves the awkward cases crawlers meet: a 500 page, missing pages (404),
a 302 redirect loop, the endless calendar trap, GBK pages labelled gb2312, and conditional requests
(ETag / Last-Modified answered with 304).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from crawler.demo.calendar_pages import calendar_page
from crawler.demo.content import load_site_data
from crawler.demo.pages import Page, Site, build_site
from crawler.demo.process import DemoServerProcess, start_demo_server

__all__ = ["DemoServer", "DemoServerProcess", "main", "start_demo_server"]

URL_PREFIX = "XUNJIAN_DEMO_URL="


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflows when several crawlers (and chromium) connect at once.
    request_queue_size = 128

    def __init__(self, host: str, port: int, *, verbose: bool = False, access_log: str | None = None):
        self.verbose = verbose
        self._access_log = None
        super().__init__((host, port), DemoHandler)
        self.url = f"http://{host}:{self.server_address[1]}"
        self.site: Site = build_site(self.url)
        self.redirects, self.failing = _broken_routes()
        self._log_lock = threading.Lock()
        self._access_log = open(access_log, "a", encoding="utf-8") if access_log else None

    def record(self, method: str, path: str, status: int) -> None:
        if self._access_log is None:
            return
        with self._log_lock:
            self._access_log.write(f"{method} {path} {status}\n")
            self._access_log.flush()

    def handle_error(self, request, client_address) -> None:
        if self.verbose:
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        if self._access_log is not None:
            self._access_log.close()


def _broken_routes() -> tuple[dict[str, str], set[str]]:
    """Redirect loop (the status-302 entries chained in order, the last pointing back to the first)
    and the paths that answer 500."""
    broken = load_site_data().broken
    loop = [b.path for b in broken if b.status == 302]
    redirects = {path: loop[(i + 1) % len(loop)] for i, path in enumerate(loop)} if len(loop) > 1 else {}
    return redirects, {b.path for b in broken if b.status == 500}


class DemoHandler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = "BinjiangWeb/1.0"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, a small page then waits for the
    # client's delayed ACK (about 40 ms) on every keep-alive request.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def log_message(self, format: str, *args) -> None:
        if self.server.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))

    def _respond(self, send_body: bool) -> None:
        path = unquote(urlsplit(self.path).path) or "/"
        site = self.server.site
        if path in self.server.redirects:
            self._send_redirect(path, self.server.redirects[path])
            return
        if path in self.server.failing:
            self._send(path, site.server_error, send_body)
            return
        page = site.pages.get(path)
        if page is None and path.endswith("/"):
            page = site.pages.get(path + "index.html")
        if page is None:
            page = calendar_page(site, path)
        if page is None:
            self._send(path, site.not_found, send_body)
            return
        if self._not_modified(page):
            self._send_not_modified(path, page)
            return
        self._send(path, page, send_body)

    def _not_modified(self, page: Page) -> bool:
        if page.status != 200:
            return False
        tags = self.headers.get("If-None-Match")
        if tags is not None:
            return page.etag is not None and (tags.strip() == "*" or page.etag in [t.strip() for t in tags.split(",")])
        since = self.headers.get("If-Modified-Since")
        if since and page.last_modified:
            try:
                return parsedate_to_datetime(page.last_modified) <= parsedate_to_datetime(since)
            except (TypeError, ValueError):
                return False
        return False

    def _send_not_modified(self, path: str, page: Page) -> None:
        # Logged before answering, so a client that has its answer can rely on the log line.
        self.server.record(self.command, path, 304)
        self.send_response(304)
        if page.etag:
            self.send_header("ETag", page.etag)
        if page.last_modified:
            self.send_header("Last-Modified", page.last_modified)
        self.end_headers()

    def _send_redirect(self, path: str, target: str) -> None:
        body = f'<html><body><a href="{target}">{target}</a></body></html>'.encode("utf-8")
        self.server.record(self.command, path, 302)
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send(self, path: str, page: Page, send_body: bool) -> None:
        self.server.record(self.command, path, page.status)
        self.send_response(page.status)
        self.send_header("Content-Type", page.content_type)
        self.send_header("Content-Length", str(len(page.body)))
        if page.etag:
            self.send_header("ETag", page.etag)
        if page.last_modified:
            self.send_header("Last-Modified", page.last_modified)
        self.end_headers()
        if send_body:
            self.wfile.write(page.body)


class _Stop(Exception):
    """Raised from the SIGTERM/SIGINT handler to leave serve_forever()."""


def _on_stop_signal(signum, frame) -> None:
    raise _Stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.demo.server", description="xunjian 演示站点服务器")
    parser.add_argument("--host", default="127.0.0.1", help="监听地址（默认 127.0.0.1）")
    parser.add_argument("--port", type=int, default=0, help="监听端口（默认 0，由系统分配）")
    parser.add_argument("--verbose", action="store_true", help="把访问日志写到标准错误")
    parser.add_argument("--access-log", metavar="FILE", help="把每个请求（方法 路径 状态码）追加写入该文件")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port 必须在 0 到 65535 之间，收到 {args.port}")
    try:
        server = DemoServer(args.host, args.port, verbose=args.verbose, access_log=args.access_log)
    except OSError as exc:
        print(f"演示站点无法监听 {args.host}:{args.port}：{exc}", file=sys.stderr)
        return 1
    try:
        # Set both explicitly: a shell starts background jobs with SIGINT ignored.
        signal.signal(signal.SIGTERM, _on_stop_signal)
        signal.signal(signal.SIGINT, _on_stop_signal)
        print(f"{URL_PREFIX}{server.url}", flush=True)
        server.serve_forever()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
