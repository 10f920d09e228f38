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
* A request path is decoded once and then only ever names a file by its parts under the output
  folder: ``..``, ``.`` and hidden parts, empty parts (``//``), backslashes and NUL bytes are
  refused, and the resolved file must still lie inside the folder (a symlink pointing out of it
  is refused). Anything else is 404, whatever it looks like.
* It listens on 127.0.0.1 unless asked otherwise: a status page is not meant for the network.
"""

from __future__ import annotations

import json
import mimetypes
import shutil
import socket
import socketserver
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, unquote

from ..errors import InputError
from ..progress import Log
from .html import document
from .review import review_path

REFRESH_SECONDS = 2
POLL_SECONDS = 0.1  # how often the server checks for shutdown: the watcher's exit waits this long
OUT_PREFIX = "/out/"



@contextmanager
def serve_status(status_file: Path, out_dir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 say: Log | None = None) -> Iterator["StatusServer"]:
    """Serve the status page while inside (``port`` 0: any free port; see ``server.url``).

    The server runs in a daemon thread and is always shut down on the way out.
    """
    server = StatusServer(Path(status_file), Path(out_dir), host, port)
    thread = threading.Thread(target=server.serve_forever, args=(POLL_SECONDS,), name="vidscale-status",
                              daemon=True)
    thread.start()
    if say:
        say(f"status page at {server.url}")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class StatusServer(ThreadingHTTPServer):
    """The server (a thread per request); it knows where ``status.json`` and the output folder are."""

    def __init__(self, status_file: Path, out_dir: Path, host: str, port: int):
        self.status_file, self.out_dir = status_file, out_dir
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), StatusHandler)
        except OSError as exc:
            raise InputError(f"{host}:{port}: cannot serve the status page ({exc.strerror or exc}); "
                             "choose another --status-port or --status-host") from None

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks up the host's name (a DNS query that can hang offline).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def url(self) -> str:
        host = self.server_name
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server_port}/"

    def view(self) -> dict[str, Any]:
        """``status.json`` with the running job's progress summarised and links added."""
        return status_view(read_status(self.status_file), self.out_dir)

    def served_file(self, url_path: str) -> Path | None:
        """The file under the output folder that ``url_path`` (after ``/out/``) names, else None."""
        return file_under(self.out_dir, url_path)


class StatusHandler(BaseHTTPRequestHandler):
    server: StatusServer
    server_version = "vidscale-status"

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
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == "/":
            self._send(status_page(self.server.view()).encode(), "text/html; charset=utf-8", body)
        elif path == "/status.json":
            data = json.dumps(self.server.view(), indent=2, sort_keys=True, default=str)
            self._send(data.encode(), "application/json", body)
        elif path.startswith(OUT_PREFIX) and (found := self.server.served_file(path[len(OUT_PREFIX):])):
            self._send_file(found, body)
        else:
            self._send(b"not found\n", "text/plain; charset=utf-8", body, HTTPStatus.NOT_FOUND)

    def _send(self, data: bytes, kind: str, body: bool, code: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _send_file(self, path: Path, body: bool) -> None:
        try:
            handle = open(path, "rb")
        except OSError:
            self._send(b"not found\n", "text/plain; charset=utf-8", body, HTTPStatus.NOT_FOUND)
            return
        with handle:
            size = path.stat().st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if body:
                try:
                    shutil.copyfileobj(handle, self.wfile)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the browser stopped reading (a video player seeking): nothing to do


def file_under(root: Path, url_path: str) -> Path | None:
    """The regular file ``root/url_path`` names, if it really lies under ``root``; else None.

    ``url_path`` is percent-decoded exactly once: ``%252e`` stays the literal name ``%2e``.
    """
    try:
        parts = unquote(url_path, errors="strict").split("/")
    except UnicodeDecodeError:
        return None
    if any(not part or part.startswith(".") or "\\" in part or "\x00" in part for part in parts):
        return None
    try:
        base = root.resolve(strict=True)
        target = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    return target if target.is_relative_to(base) and target.is_file() else None


def read_status(status_file: Path) -> dict[str, Any]:
    """The watcher's ``status.json``; before the watcher has written one: state "starting"."""
    try:
        return json.loads(status_file.read_text())
    except (OSError, ValueError):
        return {"state": "starting"}


def status_view(status: dict[str, Any], out_dir: Path, now: datetime | None = None) -> dict[str, Any]:
    """``status`` plus, for the running clip, its stage, chunk, step, fraction done and ETA, and
    for done clips, links to their output and review page (when they exist)."""
    view = dict(status)
    if view.get("running"):
        view["running"] = {**view["running"], **job_progress(view["running"], now)}
    view["done"] = [{**item, **links(item.get("output"), out_dir)} for item in view.get("done", [])]
    return view


def job_progress(running: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Stage, chunk, step, fraction done and ETA (seconds) from a running job's progress bars.

    Freescale jobs count chunks, with the steps of the current chunk as its fraction (decoding
    after the last chunk is quick and not counted); lanczos jobs count frames. The ETA assumes
    the rest goes as fast as what was done since the job started.
    """
    progress: dict[str, list[int | None]] = running.get("progress") or {}
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
    elif progress.get(stage) and progress[stage][1]:
        done, total = progress[stage]
        fraction = done / total
    eta = None
    if fraction and running.get("started"):
        elapsed = ((now or datetime.now(timezone.utc)) - datetime.fromisoformat(running["started"]))
        eta = round(max(0.0, elapsed.total_seconds()) * (1 - fraction) / fraction, 1)
    return {"stage": stage, "chunk": chunk, "step": step, "fraction": fraction, "eta_seconds": eta}


def links(output: str | None, out_dir: Path) -> dict[str, str]:
    """``output_url`` and ``review_url`` (under ``/out/``) of a finished clip's files that exist."""
    found: dict[str, str] = {}
    if not output:
        return found
    for key, path in (("output_url", Path(output)), ("review_url", review_path(Path(output)))):
        try:
            rel = path.relative_to(out_dir)
        except ValueError:
            continue
        if path.is_file():
            found[key] = OUT_PREFIX + quote(rel.as_posix())
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
    """The HTML page for a :func:`status_view`; its ``<main>`` is what the script replaces."""
    counts = view.get("counts") or {}
    body = f"""<h1>vidscale watch</h1>
<p id="offline" class="bad">The watcher does not answer (stopped?); showing the last known state.</p>
<main>
<p><span class="state">{escape(str(view.get("state", "?")))}</span>
{escape(str(view.get("inbox", "")))} &rarr; {escape(str(view.get("out_dir", "")))}
<span class="muted">&middot; {counts.get("done", 0)} done, {counts.get("failed", 0)} failed
&middot; updated {escape(str(view.get("updated", "-")))}</span></p>
<h2>Running</h2>
{running_html(view.get("running"))}
<h2>Queue ({len(view.get("queued") or [])})</h2>
{list_html(view.get("queued") or [], "nothing waiting")}
<h2>Done (most recent first)</h2>
{done_html(view.get("done") or [])}
<h2>Failed (most recent first)</h2>
{failed_html(view.get("failed") or [])}
</main>
<p class="muted">Refreshes every {REFRESH_SECONDS} s.
Machine-readable: <a href="/status.json">status.json</a>.</p>"""
    return document("vidscale watch", body, style=STYLE, script=SCRIPT)


def running_html(running: dict[str, Any] | None) -> str:
    if not running:
        return '<p class="muted">idle</p>'
    fraction = running.get("fraction")
    bar = (f'<div class="bar"><div style="width:{100 * fraction:.1f}%"></div></div>'
           if fraction is not None else "")
    rows = [("clip", escape(running["file"])), ("output", escape(running.get("output", ""))),
            ("stage", escape(running.get("stage", ""))),
            ("started", escape(running.get("started", "")))]
    for label, key in (("chunk", "chunk"), ("step", "step")):
        if running.get(key):
            done, total = running[key]
            rows.append((label, f"{done} of {total} done"))
    if fraction is not None:
        rows.append(("done", f"{100 * fraction:.0f}% {bar}"))
    if running.get("eta_seconds") is not None:
        rows.append(("ETA", f"~{duration(running['eta_seconds'])}"))
    rows.append(("settings", escape(", ".join(running.get("settings") or []))))
    return "<table>" + "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows) \
        + "</table>"


def list_html(items: list[str], empty: str) -> str:
    if not items:
        return f'<p class="muted">{escape(empty)}</p>'
    return "<ol>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ol>"


def done_html(done: list[dict[str, Any]]) -> str:
    if not done:
        return '<p class="muted">none yet</p>'
    rows = []
    for item in reversed(done):
        output = escape(Path(item.get("output") or "").name)
        if item.get("output_url"):
            output = f'<a href="{escape(item["output_url"])}">{output}</a>'
        review = (f'<a href="{escape(item["review_url"])}">review</a>' if item.get("review_url")
                  else '<span class="muted">no review page</span>')
        rows.append(f"<tr><td>{escape(item.get('file', ''))}</td><td>{output}</td><td>{review}</td>"
                    f"<td class='muted'>{escape(item.get('time', ''))}</td></tr>")
    return "<table><tr><th>clip</th><th>output</th><th></th><th>finished</th></tr>" \
        + "".join(rows) + "</table>"


def failed_html(failed: list[dict[str, Any]]) -> str:
    if not failed:
        return '<p class="muted">none</p>'
    rows = "".join(f"<tr><td>{escape(item.get('file', ''))}</td><td class='bad'>"
                   f"{escape(item.get('error', ''))}</td><td class='muted'>{escape(item.get('time', ''))}"
                   "</td></tr>" for item in reversed(failed))
    return "<table><tr><th>clip</th><th>reason</th><th>when</th></tr>" + rows + "</table>"


def duration(seconds: float) -> str:
    """``75`` -> ``1 min 15 s``; ``4000`` -> ``1 h 6 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
