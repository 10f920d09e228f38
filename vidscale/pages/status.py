"""The watch folder's status page: ``vidscale watch INBOX --status-port PORT``.

A read-only HTTP server (the standard library's, one thread per request, beside the watcher's
loop) that serves exactly three things:

* ``/``: the page: queue, the running clip (stage, chunk, step, ETA), recent done and failed
  clips with their reasons and links to outputs and review pages; it refreshes itself every
  ``REFRESH_SECONDS`` (and still reads fine, reloaded by hand, without JavaScript);
* ``/status.json``: the watcher's ``status.json`` plus what the page computes from it;
* ``/out/PATH``: a file under the output folder (outputs and their review pages).

Why it is built this way:

* It reads ``status.json`` from disk (the watcher writes it atomically), so it shares no state with
  the job and cannot slow it down or change it; a job keeps the main thread, the server its own.
* Nothing changes anything: only GET and HEAD; POST, PUT, DELETE and PATCH get 405.
* The folders it reads (the state folder with ``status.json``, the output folder) are opened once,
  at the start, and held: a request path is decoded once and then only ever names a file by its
  parts, each opened inside the one before without following a symlink. ``..``, ``.`` and hidden
  parts, empty parts (``//``), backslashes and NUL bytes are refused. A symlink anywhere, even the
  output folder swapped for one while it runs, serves nothing: 404, whatever it looks like.
* It listens on 127.0.0.1 unless asked otherwise: a status page is not meant for the network.
  Elsewhere it warns, and requires a token (``--status-token``, or a random one printed in the
  page's address, as Jupyter does): ``?token=`` once, which sets a cookie, or
  ``Authorization: Bearer``.
* A browser page on another site can point its own domain name at this machine (DNS rebinding)
  and read the answers: the ``Host`` a request names must be this server's address, ``localhost``
  or the machine's name, else 421.
* A client cannot hold it up: a connection that sends nothing for ``TIMEOUT_SECONDS`` is closed,
  and at most ``MAX_CONNECTIONS`` are served at once (more get 503).
* Every value put in the page is escaped (numbers are made numbers first), links are made only
  from the server's own paths, and a file name that is not UTF-8 is shown with a replacement
  character: ``status.json`` is written by the watcher, but its folder may be written by others.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import mimetypes
import os
import secrets
import shutil
import socket
import socketserver
import stat
import threading
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from html import escape
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, quote, unquote_to_bytes

from ..errors import InputError
from ..progress import Log, duration, shown
from .html import document
from .review import review_path

REFRESH_SECONDS = 2
POLL_SECONDS = 0.1  # how often the server checks for shutdown: the watcher's exit waits this long
TIMEOUT_SECONDS = 10.0  # a connection silent this long is closed
MAX_CONNECTIONS = 16  # served at once; more are answered 503 at once
STATUS_LIMIT = 16 * 2**20  # bytes of status.json read at most (the watcher's is a few KiB)
OUT_PREFIX = "/out/"
COOKIE = "vidscale_status"
FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO must not block a request


@contextmanager
def serve_status(status_file: Path, out_dir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, say: Log | None = None,
                 timeout: float = TIMEOUT_SECONDS) -> Iterator["StatusServer"]:
    """Serve the status page while inside (``port`` 0: any free port; see ``server.url``).

    ``token``: required from every client. Listening beyond loopback without one, the server makes
    up a random one; either way ``say`` prints the address that carries it, and a warning.
    The server runs in a daemon thread and is always shut down on the way out.
    """
    server = StatusServer(Path(status_file), Path(out_dir), host, port, token=token, timeout=timeout)
    thread = threading.Thread(target=server.serve_forever, args=(POLL_SECONDS,), name="vidscale-status",
                              daemon=True)
    thread.start()
    if say:
        if not server.loopback:
            say(f"warning: the status page listens on {server.server_name}, beyond this machine: whoever "
                "reaches that port with the token in the address below sees the queue and downloads "
                "the outputs (plain HTTP: use it on a network you trust)")
        say(f"status page at {server.token_url}")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class StatusServer(ThreadingHTTPServer):
    """The server (a thread per request), with the state and output folders held open."""

    daemon_threads = True

    def __init__(self, status_file: Path, out_dir: Path, host: str, port: int, *, token: str | None = None,
                 timeout: float = TIMEOUT_SECONDS):
        self.status_file, self.out_dir, self.timeout_seconds = status_file, out_dir, timeout
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.state_fd: int | None = None  # set below; a failed bind calls server_close first
        self.out_fd: int | None = None
        self.folders = threading.Lock()  # held while a request looks through the fds, and to close them
        try:
            super().__init__((host, port), StatusHandler)
        except OSError as exc:
            raise InputError(f"{host}:{port}: cannot serve the status page ({exc.strerror or exc}); "
                             "choose another --status-port or --status-host") from None
        self.loopback = _is_loopback(self.server_name)
        self.token = token if token is not None or self.loopback else secrets.token_urlsafe(24)
        self.names = _host_names(self.server_name)
        self.state_fd, self.out_fd = _open_folder(status_file.parent), _open_folder(out_dir)

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks up the host's name (a DNS query that can hang offline).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def server_close(self) -> None:
        super().server_close()
        with self.folders:  # a request still running must not open a name in a closed (reused) fd
            for fd in (self.state_fd, self.out_fd):
                if fd is not None:
                    os.close(fd)
            self.state_fd = self.out_fd = None

    @property
    def url(self) -> str:
        """The page's address (a listener on every address is named by the machine's name)."""
        host = self.server_name
        if ipaddress.ip_address(host).is_unspecified:
            host = socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server_port}/"

    @property
    def token_url(self) -> str:
        return f"{self.url}?token={self.token}" if self.token else self.url

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, up to ``MAX_CONNECTIONS``; beyond, 503 at once."""
        if not self.slots.acquire(blocking=False):
            with suppress(OSError):
                request.settimeout(1)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 2\r\n"
                                b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that times out or goes away mid-answer is not the watcher's news."""

    def view(self) -> dict[str, Any]:
        """``status.json`` with the running job's progress summarised and links added."""
        with self.folders:
            status = read_status(self.state_fd, self.status_file.name)
            try:
                return status_view(status, self.out_dir, out_fd=self.out_fd)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError):
                return {"state": "status.json is not the watcher's", "done": []}

    def open_file(self, url_path: str) -> int | None:
        """An fd of the file under the output folder that ``url_path`` (after ``/out/``) names."""
        with self.folders:
            return open_under(self.out_fd, url_path)


class StatusHandler(BaseHTTPRequestHandler):
    server: StatusServer
    server_version = "vidscale-status"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.timeout_seconds)  # for every read and write

    def do_GET(self) -> None:  # noqa: N802 - the standard library's naming
        self._respond(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(body=False)

    def _refuse(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: the watcher's own log says what happens; requests are not news."""

    def _respond(self, *, body: bool) -> None:
        path, _, query = self.path.partition("?")
        path, query = path.split("#", 1)[0], query.split("#", 1)[0]
        refused = self._refusal(query)
        if refused is not None:
            code, message = refused
            self._send(message.encode(), "text/plain; charset=utf-8", body, code)
        elif path == "/":
            page = status_page(self.server.view())
            self._send(page.encode("utf-8", "replace"), "text/html; charset=utf-8", body)
        elif path == "/status.json":
            data = json.dumps(self.server.view(), indent=2, sort_keys=True, default=str)
            self._send(data.encode("utf-8", "replace"), "application/json", body)
        elif path.startswith(OUT_PREFIX) and (found := self.server.open_file(path[len(OUT_PREFIX):])) is not None:
            self._send_file(found, path, body)
        else:
            self._send(b"not found\n", "text/plain; charset=utf-8", body, HTTPStatus.NOT_FOUND)

    def _refusal(self, query: str) -> tuple[HTTPStatus, str] | None:
        """Why this request is not answered (None: it is): a Host that is not this server's, or a
        missing or wrong token. A right token in the query sets the cookie (see :meth:`_send`)."""
        self._set_cookie = False
        if not _host_allowed(self.headers.get("Host"), self.server, self.connection.getsockname()[0]):
            return (HTTPStatus.MISDIRECTED_REQUEST,
                    f"this status page answers to {self.server.url} (or localhost) only\n")
        token = self.server.token
        if token is None:
            return None
        given = parse_qs(query).get("token", [""])[0]
        if _same(given, token):
            self._set_cookie = True
            return None
        if _same(_cookie(self.headers.get("Cookie")), token) or \
                _same(self.headers.get("Authorization", "").removeprefix("Bearer "), token):
            return None
        return (HTTPStatus.FORBIDDEN, "a token is needed: open the address the watcher printed "
                "(it ends with ?token=...), or send Authorization: Bearer TOKEN\n")

    def _send(self, data: bytes, kind: str, body: bool, code: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self._cookie_header()
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _cookie_header(self) -> None:
        if getattr(self, "_set_cookie", False):
            self.send_header("Set-Cookie", f"{COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/")

    def _send_file(self, fd: int, path: str, body: bool) -> None:
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", mimetypes.guess_type(path)[0] or "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self._cookie_header()
            self.end_headers()
            if body:
                try:
                    shutil.copyfileobj(handle, self.wfile)
                except OSError:
                    pass  # the browser stopped reading (a video player seeking), or timed out


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _host_names(bound: str) -> set[str]:
    """The names a request's Host may give: the bound address, localhost, the machine's name."""
    machine = socket.gethostname().lower()
    return {bound.lower(), "localhost", "127.0.0.1", "::1", machine, machine.split(".")[0]}


def _host_allowed(host: str | None, server: StatusServer, local: str) -> bool:
    """True when ``host`` (``name``, ``name:port``, ``[v6]:port``) names this server: one of its
    names or the address the connection came in on (a listener on every address), and its port."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if port and port != str(server.server_port):
        return False
    return name in server.names or name == local.lower().removeprefix("::ffff:")


def _same(given: str | None, token: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def _cookie(header: str | None) -> str | None:
    try:
        morsel = SimpleCookie(header or "").get(COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel else None


def _open_folder(path: Path) -> int | None:
    """An fd of folder ``path`` (not followed if it is a symlink), or None when there is none."""
    try:
        return os.open(path, FOLDER)
    except OSError:
        return None


def open_under(root: int | None, url_path: str) -> int | None:
    """An fd of the regular file that ``url_path`` names under the open folder ``root``; else None.

    ``url_path`` is percent-decoded exactly once, to the bytes of the names (``%252e`` stays the
    literal name ``%2e``; names need not be UTF-8); each part is opened inside the one before
    without following a symlink, so nothing outside the folder is reached, whatever the path or
    the folder's path has become.
    """
    parts = unquote_to_bytes(url_path).split(b"/")
    if root is None or any(not part or part.startswith(b".") or b"\\" in part or b"\x00" in part
                           for part in parts):
        return None
    folder = root
    try:
        for part in parts[:-1]:
            inner = os.open(part, FOLDER, dir_fd=folder)
            if folder != root:
                os.close(folder)
            folder = inner
        fd = os.open(parts[-1], FILE, dir_fd=folder)
    except OSError:
        return None
    finally:
        if folder != root:
            os.close(folder)
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    return None


def read_status(folder: int | None, name: str = "status.json") -> dict[str, Any]:
    """The watcher's ``status.json`` in the open state folder (not followed if a symlink, and only
    the first ``STATUS_LIMIT`` bytes); before the watcher has written one: state "starting"."""
    try:
        if folder is None:
            raise FileNotFoundError(name)
        with os.fdopen(os.open(name, FILE, dir_fd=folder), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ValueError("not a file")
            status = json.loads(handle.read(STATUS_LIMIT))
    except (OSError, ValueError):
        return {"state": "starting"}
    return status if isinstance(status, dict) else {"state": "starting"}


def status_view(status: dict[str, Any], out_dir: Path, now: datetime | None = None, *,
                out_fd: int | None = None) -> dict[str, Any]:
    """``status`` plus, for the running clip, its stage, chunk, step, fraction done and ETA, and
    for done clips, links to their output and review page (when the served folder ``out_fd``
    has them)."""
    view = dict(status)
    if isinstance(view.get("running"), dict) and view["running"]:
        view["running"] = {**view["running"], **job_progress(view["running"], now)}
    done = [item for item in view.get("done") or [] if isinstance(item, dict)]
    view["done"] = [{**{k: v for k, v in item.items() if k not in ("output_url", "review_url")},
                     **links(item.get("output"), out_dir, out_fd)} for item in done]
    return view


def job_progress(running: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Stage, chunk, step, fraction done and ETA (seconds) from a running job's progress bars.

    Freescale jobs count chunks, with the steps of the current chunk as its fraction (decoding
    after the last chunk is quick and not counted); lanczos jobs count frames. The ETA assumes
    the rest goes as fast as what was done since the job started. Values that are not what the
    watcher writes count as absent.
    """
    progress = {stage: _pair(done) for stage, done in _dict(running.get("progress")).items()}
    chunk, step = progress.get("chunks"), progress.get("steps")
    if "decode" in progress:
        stage = "decode"
    elif chunk:
        stage = "denoise"
    else:
        stage = next(iter(progress), "starting")
    fraction = None
    if chunk and chunk[1]:
        within = step[0] / step[1] if step and step[1] and step[0] < step[1] else 0.0
        fraction = min(1.0, (chunk[0] + within) / chunk[1])
    elif (bar := progress.get(stage)) and bar[1]:
        fraction = bar[0] / bar[1]
    eta = None
    if fraction and isinstance(running.get("started"), str):
        try:
            elapsed = (now or datetime.now(timezone.utc)) - datetime.fromisoformat(running["started"])
            eta = round(max(0.0, elapsed.total_seconds()) * (1 - fraction) / fraction, 1)
        except (ValueError, TypeError):  # not a time, or one without its zone
            eta = None
    return {"stage": stage, "chunk": chunk, "step": step, "fraction": fraction, "eta_seconds": eta}


def _pair(value: Any) -> list[int] | None:
    """``[done, total]`` as the journal writes it for a bar with a total (non-negative ints), else None."""
    if not (isinstance(value, list) and len(value) == 2):
        return None
    done, total = value
    numbers = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (done, total))
    return [done, total] if numbers else None


def links(output: str | None, out_dir: Path, out_fd: int | None) -> dict[str, str]:
    """``output_url`` and ``review_url`` (under ``/out/``) of a finished clip's files that the
    server would serve (the same lookup as a request's)."""
    found: dict[str, str] = {}
    if not isinstance(output, str):
        return found
    for key, path in (("output_url", Path(output)), ("review_url", review_path(Path(output)))):
        try:
            url = quote(os.fsencode(path.relative_to(out_dir).as_posix()))
        except ValueError:
            continue
        fd = open_under(out_fd, url)
        if fd is not None:
            os.close(fd)
            found[key] = OUT_PREFIX + url
    return found


# -- HTML ------------------------------------------------------------------------------------

STYLE = """
.state { display: inline-block; padding: 0 .5em; border-radius: 3px; background: rgba(127,127,127,.2); }
.bar { width: 22em; height: .7em; background: rgba(127,127,127,.2); border-radius: 3px; overflow: hidden; }
.bar > div { height: 100%; background: var(--accent); }
#offline { display: none; } body.offline #offline { display: block; }
"""

SCRIPT = f"""
async function refresh() {{
  try {{
    const response = await fetch('/', {{cache: 'no-store'}});
    const page = new DOMParser().parseFromString(await response.text(), 'text/html');
    document.querySelector('main').replaceWith(page.querySelector('main'));
    document.body.classList.remove('offline');
  }} catch (error) {{
    document.body.classList.add('offline');
  }}
}}
setInterval(refresh, {REFRESH_SECONDS * 1000});
"""


def status_page(view: dict[str, Any]) -> str:
    """The HTML page for a :func:`status_view`; its ``<main>`` is what the script replaces.

    Every value is escaped (and shown as :func:`~vidscale.progress.shown` does), counts are made
    numbers first, and links come only from :func:`links`.
    """
    counts = _dict(view.get("counts"))
    body = f"""<h1>vidscale watch</h1>
<p id="offline" class="bad">The watcher does not answer (stopped?); showing the last known state.</p>
<main>
<p><span class="state">{_text(view.get("state", "?"))}</span>
{_text(view.get("inbox"))} &rarr; {_text(view.get("out_dir"))}
<span class="muted">&middot; {_int(counts.get("done"))} done, {_int(counts.get("failed"))} failed
&middot; updated {_text(view.get("updated", "-"))}</span></p>
<h2>Running</h2>
{running_html(view.get("running"))}
<h2>Queue ({len(_list(view.get("queued")))})</h2>
{list_html(_list(view.get("queued")), "nothing waiting")}
<h2>Done (most recent first)</h2>
{done_html(_list(view.get("done")))}
<h2>Failed (most recent first)</h2>
{failed_html(_list(view.get("failed")))}
</main>
<p class="muted">Refreshes every {REFRESH_SECONDS} s.
Machine-readable: <a href="/status.json">status.json</a>.</p>"""
    return document("vidscale watch", body, style=STYLE, script=SCRIPT)


def running_html(running: Any) -> str:
    if not isinstance(running, dict) or not running:
        return '<p class="muted">idle</p>'
    fraction = running.get("fraction")
    fraction = min(1.0, max(0.0, float(fraction))) if isinstance(fraction, (int, float)) else None
    rows = [("clip", _text(running.get("file"))), ("output", _text(running.get("output"))),
            ("stage", _text(running.get("stage"))), ("started", _text(running.get("started")))]
    for label, key in (("chunk", "chunk"), ("step", "step")):
        pair = _list(running.get(key))
        if len(pair) == 2:
            rows.append((label, f"{_int(pair[0])} of {_int(pair[1])} done"))
    if fraction is not None:
        bar = f'<div class="bar"><div style="width:{100 * fraction:.1f}%"></div></div>'
        rows.append(("done", f"{100 * fraction:.0f}% {bar}"))
    if isinstance(running.get("eta_seconds"), (int, float)):
        rows.append(("ETA", f"~{duration(running['eta_seconds'])}"))
    rows.append(("settings", _text(", ".join(str(part) for part in _list(running.get("settings"))))))
    return "<table>" + "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows) \
        + "</table>"


def list_html(items: list[Any], empty: str) -> str:
    if not items:
        return f'<p class="muted">{escape(empty)}</p>'
    return "<ol>" + "".join(f"<li>{_text(item)}</li>" for item in items) + "</ol>"


def done_html(done: list[Any]) -> str:
    if not done:
        return '<p class="muted">none yet</p>'
    rows = []
    for item in reversed([_dict(item) for item in done]):
        output = _text(Path(str(item.get("output") or "")).name)
        if item.get("output_url"):
            output = f'<a href="{escape(item["output_url"])}">{output}</a>'
        review = (f'<a href="{escape(item["review_url"])}">review</a>' if item.get("review_url")
                  else '<span class="muted">no review page</span>')
        note = f"<br><span class='bad'>{_text(item['note'])}</span>" if item.get("note") else ""
        rows.append(f"<tr><td>{_text(item.get('file'))}</td><td>{output}{note}</td><td>{review}</td>"
                    f"<td class='muted'>{_text(item.get('time'))}</td></tr>")
    return "<table><tr><th>clip</th><th>output</th><th></th><th>finished</th></tr>" \
        + "".join(rows) + "</table>"


def failed_html(failed: list[Any]) -> str:
    if not failed:
        return '<p class="muted">none</p>'
    rows = "".join(f"<tr><td>{_text(item.get('file'))}</td><td class='bad'>"
                   f"{_text(item.get('error'))}</td><td class='muted'>{_text(item.get('time'))}"
                   "</td></tr>" for item in reversed([_dict(item) for item in failed]))
    return "<table><tr><th>clip</th><th>reason</th><th>when</th></tr>" + rows + "</table>"


def _text(value: Any) -> str:
    """Any value as escaped text for the page ("" for None)."""
    return "" if value is None else escape(shown(value))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


