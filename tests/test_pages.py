"""The review page and the watch status page: their content and the status server's HTTP face.

The review page is checked by decoding the images it embeds: each sample must show the right
frame (source and result, read back by the index burned into the synthetic clip). The status server
is checked against a real server on 127.0.0.1, with path traversal attempts that must all be 404,
write methods that must be 405, and a real ``vidscale watch`` job whose status it serves while the
job runs. The browser checks (wipe, zoom, refresh) are in ``test_pages_browser.py``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import urllib.request
from datetime import datetime
from html import unescape
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import frame_index
from watch_helpers import FREESCALE_TINY, decoded, drop, start_watch, wait_for

from vidscale.cli import main
from vidscale.errors import InputError
from vidscale.jobs.journal import RunningJob, WatchStatus
from vidscale.media import probe
from vidscale.pages import review_path, serve_status
from vidscale.pages import status as status_module
from vidscale.pages.review import chunk_boundaries, frame_changes, sample_frames
from vidscale.pages.status import job_progress, status_view
from vidscale.work.plan import plan_chunks

IMAGE = re.compile(r'<img class="(source|result)"[^>]*src="data:image/jpeg;base64,([^"]+)"')


def embedded_images(page: str) -> list[tuple[str, np.ndarray]]:
    """(kind, RGB) of every image embedded in ``page``, decoded with PyAV."""
    images = []
    for kind, data in IMAGE.findall(page):
        codec = av.CodecContext.create("mjpeg", "r")
        frames = codec.decode(av.Packet(base64.b64decode(data)))
        images.append((kind, frames[0].to_ndarray(format="rgb24")))
    return images


# -- review page -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lanczos_review(make_clip, tmp_path_factory):
    """``vidscale upscale --review`` of frames 3:11 of a 64x48 clip with the lanczos engine."""
    folder = tmp_path_factory.mktemp("review")
    output = folder / "a_2x.mov"
    result = CliRunner().invoke(main, ["upscale", str(make_clip(frames=12)), "-o", str(output),
                                       "--preset", "preview-lanczos-2x", "--frames", "3:11",
                                       "--review", "--json"])
    assert result.exit_code == 0, result.output
    return output, json.loads(result.output)


def test_review_is_written_beside_the_output_and_named_in_the_result(lanczos_review):
    output, summary = lanczos_review
    path = review_path(output)
    assert path == output.parent / "a_2x_review.html"
    assert summary["items"][0]["result"]["review"] == str(path)
    assert {p.name for p in output.parent.iterdir()} == {"a_2x.mov", "a_2x_review.html"}


def test_review_samples_show_the_same_frame_of_source_and_result(lanczos_review):
    output, _ = lanczos_review
    images = embedded_images(review_path(output).read_text())
    picks = sample_frames(8)
    assert picks == [0, 2, 5, 7]
    assert [kind for kind, _ in images] == ["source", "result"] * len(picks)
    frames = decoded(output)
    for k, pick in enumerate(picks):
        (_, source), (_, result) = images[2 * k], images[2 * k + 1]
        assert source.shape == result.shape == (96, 128, 3)
        assert frame_index(source) == frame_index(result) == 3 + pick  # --frames 3:11
        assert np.abs(result.astype(int) - frames[pick]).mean() < 3  # JPEG of the written frame
        # the source is enlarged by repeating pixels: each 2x2 block is (nearly) one colour
        assert np.abs(source[0::2, 0::2].astype(int) - source[1::2, 1::2]).mean() < 3


def test_review_is_self_contained_and_says_lanczos_has_no_chunks(lanczos_review):
    output, _ = lanczos_review
    page = review_path(output).read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert 'type="range"' in page and "image-rendering: pixelated" in page
    assert "The lanczos engine has no chunks" in page
    assert "lanczos (decode, resize, encode)" in page and "<svg" in page
    assert 'engine = "lanczos"' in unescape(page) and "review = true" in page  # the preset


def test_frame_changes_are_the_mean_absolute_step_between_8_bit_frames(lanczos_review):
    output, _ = lanczos_review
    changes, kept = frame_changes(probe(output), [1, 6])
    frames = [frame.astype(int) for frame in decoded(output)]
    expected = [np.abs(b - a).mean() for a, b in zip(frames, frames[1:])]
    assert np.array_equal(changes, expected)  # integer sums are exact in float64: one division each
    assert sorted(kept) == [1, 6] and (kept[6] == frames[6]).all()


def test_chunk_boundaries_are_where_each_chunk_s_own_frames_begin():
    chunks = plan_chunks(12, 4, 2)
    plan = {"chunks": [{"start": c.start, "end": c.end, "anchored": c.anchored} for c in chunks]}
    assert chunk_boundaries(plan) == [c.owned[0] for c in chunks[1:]] == [4, 6, 8, 10]
    assert sample_frames(1) == [0] and sample_frames(3) == [0, 1, 2]


# -- status server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A status server on 127.0.0.1 (any free port) over a status.json and an output folder with
    a review page, a subfolder, a hidden job folder, and a symlink pointing out of the folder."""
    tmp_path = tmp_path_factory.mktemp("served")
    inbox = tmp_path / "inbox"
    out = inbox / "out"
    (out / "sub dir").mkdir(parents=True)
    (out / ".vidscale-jobs").mkdir()
    (inbox / ".vidscale").mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (out / "a_2x.mov").write_bytes(b"movie")
    (out / "a_2x_review.html").write_text("<p>review</p>")
    (out / "sub dir" / "b.txt").write_text("b")
    (out / ".vidscale-jobs" / "report.json").write_text("{}")
    (out / "outside").symlink_to(tmp_path)
    status = WatchStatus(pid=1, inbox=str(inbox), out_dir=str(out), state="watching")
    status.done.append({"file": "a.mp4", "output": str(out / "a_2x.mov"), "time": "t"})
    status.failed.append({"file": "bad.mp4", "error": "bad.mp4: not a video", "time": "t"})
    status_file = inbox / ".vidscale" / "status.json"
    status_file.write_text(json.dumps(status.to_dict()))
    with serve_status(status_file, out) as server:
        yield server


def request(server, method: str, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    """Send ``path`` exactly as given (no client-side normalisation); ``headers`` may replace Host."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    headers = headers or {}
    try:
        connection.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def test_status_server_serves_its_page_status_json_and_output_files(served):
    assert served.url == f"http://127.0.0.1:{served.server_port}/"
    code, body, headers = request(served, "GET", "/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "bad.mp4: not a video" in page and 'href="/out/a_2x_review.html"' in page
    assert "setInterval(refresh, 2000)" in page
    code, body, _ = request(served, "GET", "/status.json")
    view = json.loads(body)
    assert view["state"] == "watching"
    assert view["done"][0]["review_url"] == "/out/a_2x_review.html"
    assert view["done"][0]["output_url"] == "/out/a_2x.mov"
    assert request(served, "GET", "/out/a_2x_review.html")[:2] == (200, b"<p>review</p>")
    assert request(served, "GET", "/out/sub%20dir/b.txt")[:2] == (200, b"b")
    code, body, headers = request(served, "HEAD", "/out/a_2x.mov")
    assert (code, body, headers["Content-Length"]) == (200, b"", "5")


@pytest.mark.parametrize("path", [
    "/out/../secret.txt", "/out/../../secret.txt", "/../secret.txt", "/out/./a_2x.mov",
    "/out/%2e%2e/secret.txt", "/out/%2e%2e%2fsecret.txt", "/out/%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/out/%252e%252e%252fsecret.txt", "/out/..%5csecret.txt", "/out/..\\secret.txt",
    "//etc/passwd", "/etc/passwd", "/out//etc/passwd", "/out/%2fetc%2fpasswd", "/out/",
    "/out/outside/secret.txt", "/out/a_2x.mov%00.html", "/out/%c0%ae%c0%ae/secret.txt",
    "/out/.vidscale-jobs/report.json", "/out/sub%20dir", "/status.json/../out/a_2x.mov",
    "http://127.0.0.1/out/a_2x.mov", "/inbox/.vidscale/status.json", "/favicon.ico",
])
def test_status_server_answers_404_to_everything_else(served, path):
    code, body, _ = request(served, "GET", path)
    assert code == 404 and b"secret" not in body and b"movie" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_status_server_changes_nothing(served, method):
    target = served.out_dir / "a_2x.mov"
    for path in ("/", "/status.json", "/out/a_2x.mov"):
        code, _, headers = request(served, method, path)
        assert code == 405 and headers["Allow"] == "GET, HEAD"
    assert target.read_bytes() == b"movie"


def test_status_server_stops_with_its_block_and_reports_a_busy_port(tmp_path):
    with serve_status(tmp_path / "status.json", tmp_path) as server:
        code, body, _ = request(server, "GET", "/status.json")
        assert json.loads(body) == {"state": "starting", "done": []}  # no status.json yet
        with pytest.raises(InputError, match=f"127.0.0.1:{server.server_port}: cannot serve"):
            with serve_status(tmp_path / "status.json", tmp_path, port=server.server_port):
                pass
    with pytest.raises(ConnectionError):
        request(server, "GET", "/")


def test_running_job_progress_gives_stage_chunk_step_and_eta():
    running = RunningJob("a.mp4", "out/a_2x.mov", "2026-01-01T10:00:00+00:00", ["default settings"])
    running.progress = {"chunks": [1, 4], "steps": [2, 4]}
    now = datetime.fromisoformat("2026-01-01T10:01:00+00:00")
    got = job_progress(vars(running), now)
    assert got == {"stage": "denoise", "chunk": [1, 4], "step": [2, 4], "fraction": 0.375,
                   "eta_seconds": 100.0}  # 60 s for 3/8 of the work: 100 s for the other 5/8
    lanczos = job_progress({"progress": {"lanczos": [30, 120]}, "started": running.started}, now)
    assert (lanczos["stage"], lanczos["fraction"], lanczos["eta_seconds"]) == ("lanczos", 0.25, 180.0)
    assert status_view({"running": None}, Path("/"))["running"] is None


# -- a real watcher: the page while a job runs ------------------------------------------------


def fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url + "status.json", timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_status_page_follows_a_running_watch_job_and_links_its_review(tmp_path, make_clip):
    preset = tmp_path / "tiny.toml"  # 6 frames in chunks of 4 sharing 2: 2 chunks of 2 steps
    preset.write_text(FREESCALE_TINY.replace('codec = "prores-lt"', 'codec = "prores-lt"\nreview = true')
                      .replace("steps = 4", "steps = 2"))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watch = start_watch(inbox, "--settle", "0.3", "--preset", str(preset), "--status-port", "0",
                        log=tmp_path / "watch.log")
    try:
        url = wait_for(lambda: re.search(r"status page at (http://127\.0\.0\.1:\d+/)", watch.output()),
                       30, watch, "the status page's address").group(1)
        drop(make_clip(frames=6), inbox / "a.mp4")
        running = wait_for(lambda: (fetch_json(url).get("running") or {}).get("chunk"), 60, watch,
                           "a running job in status.json")
        view = fetch_json(url)
        if view["running"]:  # the job may have finished between the two requests
            assert view["running"]["file"] == "a.mp4" and view["running"]["stage"] in ("denoise", "decode")
            assert running[1] == 2
            with urllib.request.urlopen(url, timeout=10) as response:
                assert "a.mp4" in response.read().decode()
        done = wait_for(lambda: fetch_json(url)["done"], 120, watch, "the finished clip")
        assert done[0]["file"] == "a.mp4" and done[0]["review_url"] == "/out/a_2x_review.html"
        with urllib.request.urlopen(url + "out/a_2x_review.html", timeout=10) as response:
            page = response.read().decode()
        assert "3 &rarr; 4" in page  # the one chunk boundary: chunk 2 owns frames 4 and 5
        assert len(embedded_images(page)) == 2 * len(sample_frames(6))
    finally:
        code = watch.stop()
    assert code == 0, watch.output()
    with pytest.raises(OSError):  # the server went with the watcher
        urllib.request.urlopen(url, timeout=5)


# -- the status server as strangers would use it ----------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost.evil.example",
                                  "127.0.0.1.nip.io:{port}", ""])
def test_a_forged_host_is_refused(served, host):
    """DNS rebinding: a page of another site points its own name at this machine; its requests
    carry that name as Host, and get 421 (with nothing of the page)."""
    code, body, _ = request(served, "GET", "/status.json", {"Host": host.format(port=served.server_port)})
    assert code == 421 and b"watching" not in body
    for good in (f"127.0.0.1:{served.server_port}", f"localhost:{served.server_port}", "localhost"):
        assert request(served, "GET", "/status.json", {"Host": good})[0] == 200


def test_an_idle_connection_is_closed_within_the_timeout_and_the_page_still_answers(tmp_path):
    import socket
    import time

    assert status_module.TIMEOUT_SECONDS == 10
    with serve_status(tmp_path / "status.json", tmp_path, timeout=1.0) as server:
        idle = socket.create_connection(("127.0.0.1", server.server_port))
        idle.settimeout(10)
        began = time.monotonic()
        assert idle.recv(100) == b""  # the server closed it: it sent nothing for a second
        assert time.monotonic() - began < 5
        idle.close()
        assert request(server, "GET", "/")[0] == 200


def test_connections_beyond_the_cap_get_503_and_the_server_recovers(tmp_path):
    import socket

    with serve_status(tmp_path / "status.json", tmp_path, timeout=5.0) as server:
        held = [socket.create_connection(("127.0.0.1", server.server_port))
                for _ in range(status_module.MAX_CONNECTIONS)]
        try:
            wait_for(lambda: request(server, "GET", "/")[0] == 503, 10, what="503 once every slot is held")
        finally:
            for connection in held:
                connection.close()
        wait_for(lambda: request(server, "GET", "/")[0] == 200, 10, what="200 once they are gone")


def test_out_swapped_for_a_symlink_while_serving_serves_nothing_outside(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_2x.mov").write_bytes(b"movie")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "a_2x.mov").write_bytes(b"secret")
    (secret / "passwd").write_text("root:x:0:0")
    with serve_status(tmp_path / "status.json", out) as server:
        assert request(server, "GET", "/out/a_2x.mov")[:2] == (200, b"movie")
        out.rename(tmp_path / "out.old")
        out.symlink_to(secret)
        for path in ("/out/a_2x.mov", "/out/passwd"):
            code, body, _ = request(server, "GET", path)
            assert b"secret" not in body and b"root:" not in body
            assert code in (200, 404)
        assert request(server, "GET", "/out/a_2x.mov")[:2] == (200, b"movie")  # the folder it holds
        assert request(server, "GET", "/out/passwd")[0] == 404
        assert request(server, "GET", "/")[0] == 200


def test_beyond_loopback_a_token_is_required_and_printed(tmp_path):
    lines: list[str] = []
    (tmp_path / "a.txt").write_text("a")
    with serve_status(tmp_path / "status.json", tmp_path, host="0.0.0.0", say=lines.append) as server:
        token = server.token
        assert token and len(token) >= 24
        assert lines[0].startswith("warning: the status page listens on 0.0.0.0, beyond this machine")
        assert lines[1] == f"status page at http://{socket.gethostname()}:{server.server_port}/?token={token}"
        for path in ("/", "/status.json", "/out/a.txt", f"/?token={token[:-1]}x"):
            code, body, _ = request(server, "GET", path)
            assert code == 403 and b"starting" not in body and b"token" in body
        code, _, headers = request(server, "GET", f"/?token={token}")
        assert code == 200 and headers["Set-Cookie"].startswith(f"vidscale_status={token};")
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert request(server, "GET", "/out/a.txt", {"Cookie": f"vidscale_status={token}"})[:2] == (200, b"a")
        assert request(server, "GET", "/status.json", {"Authorization": f"Bearer {token}"})[0] == 200
        assert request(server, "GET", "/status.json", {"Cookie": "vidscale_status=guess"})[0] == 403
    with serve_status(tmp_path / "status.json", tmp_path, token="s3cret") as loopback:  # asked for on loopback
        assert request(loopback, "GET", "/")[0] == 403 and request(loopback, "GET", "/?token=s3cret")[0] == 200
    with serve_status(tmp_path / "status.json", tmp_path, say=lines.append) as plain:
        assert plain.token is None and request(plain, "GET", "/")[0] == 200
        assert lines[-1] == f"status page at {plain.url}" and not lines[-2].startswith("warning")


def test_any_file_name_shows_and_every_value_is_escaped(tmp_path):
    """A status.json as a hostile colleague could write it: odd names, markup, a forged link and
    counts that are not numbers. The page answers 200, escapes everything, links nothing forged."""
    out = tmp_path / "out"
    out.mkdir()
    odd = os.fsdecode(b"caf\xe9 <b>.mov")
    (out / odd).write_bytes(b"odd")
    status = {"state": "<script>alert(1)</script>", "inbox": "/in\nbox", "counts": {"done": "<i>9</i>"},
              "queued": ["<img src=x onerror=alert(1)>", 7],
              "running": {"file": "x\u2028<script>", "progress": {"chunks": ["a", "b"]}},
              "done": [{"file": odd, "output": str(out / odd), "time": "t", "note": "<u>n</u>",
                        "output_url": "javascript:alert(1)", "review_url": "https://evil.example/"},
                       "not a dict"],
              "failed": [{"file": "<b>bad</b>", "error": "x\udcff"}]}
    (tmp_path / "status.json").write_text(json.dumps(status))
    with serve_status(tmp_path / "status.json", out) as server:
        code, body, _ = request(server, "GET", "/")
        page = body.decode("utf-8")
        assert code == 200 and "<script>alert" not in page and "<img src=x" not in page and "<b>" not in page
        assert "javascript:" not in page and "evil.example" not in page and "<i>9</i>" not in page
        assert "0 done" in page and r"caf\xe9 &lt;b&gt;.mov" in page and "&lt;u&gt;n&lt;/u&gt;" in page
        href = re.search(r'<a href="(/out/[^"]+)">', page).group(1)
        assert href == "/out/caf%E9%20%3Cb%3E.mov"
        assert request(server, "GET", unescape(href))[:2] == (200, b"odd")
        code, body, _ = request(server, "GET", "/status.json")
        assert code == 200 and json.loads(body)["done"][0]["output_url"] == href
    (tmp_path / "status.json").write_text('{"running": {"started": 5, "progress": {"chunks": [1, 0]}}}')
    with serve_status(tmp_path / "status.json", out) as server:
        assert [request(server, "GET", path)[0] for path in ("/", "/status.json")] == [200, 200]
