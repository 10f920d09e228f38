"""The review and status pages in a real browser: headless Chromium driven by Playwright.

Checked: every embedded image decodes (naturalWidth > 0), the wipe slider moves the wipe, the 1:1
toggle shows the result at its natural size, the status page refreshes itself and links a review
page that loads from the server, and no page asks the network for anything.

Set ``VIDSCALE_SCREENSHOTS=DIR`` to keep the screenshots (``samples/review.png`` and
``samples/status.png`` in the README are made so).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from vidscale.cli import main
from vidscale.jobs.journal import RunningJob, WatchStatus, now_iso
from vidscale.pages import review_path, serve_status

INSTALL = "needs Chromium and Playwright: apt-get install chromium; pip install playwright"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason=INSTALL)
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=INSTALL)


SAMPLE = Path(__file__).parents[1] / "samples" / "sample.mov"  # 320x192: zone plate, bars, text


@pytest.fixture(scope="module")
def review(tmp_path_factory) -> Path:
    """The review page of a lanczos 2x upscale of the first 12 frames of the sample clip."""
    out = tmp_path_factory.mktemp("browser") / "out"
    result = CliRunner().invoke(main, ["upscale", str(SAMPLE), "--out-dir", str(out), "--frames", "0:12",
                                       "--preset", "preview-lanczos-2x", "--review", "-q"])
    assert result.exit_code == 0, result.output
    return review_path(out / "sample_2x.mov")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page that records every request it makes (data: URIs are not requests)."""
    context = browser.new_context(viewport={"width": 800, "height": 800})
    tab = context.new_page()
    tab.requests = []
    tab.on("request", lambda request: tab.requests.append(request.url))
    yield tab
    context.close()


def keep(page, tmp_path: Path, name: str, height: int) -> Path:
    """Screenshot the top of the page into ``tmp_path`` (and $VIDSCALE_SCREENSHOTS when set)."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 800, "height": height})
    if os.environ.get("VIDSCALE_SCREENSHOTS"):
        shutil.copyfile(shot, Path(os.environ["VIDSCALE_SCREENSHOTS"]) / name)
    return shot


def images_loaded(page) -> list[int]:
    return page.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : 0)")


def wipe_state(page) -> tuple[str, float]:
    """The first result image's computed clip-path and the first divider's x position."""
    return page.evaluate("""[getComputedStyle(document.querySelector('img.result')).clipPath,
                             document.querySelector('.divider').getBoundingClientRect().x]""")


@pytest.mark.slow
def test_review_page_images_load_and_the_slider_moves_the_wipe(page, review, tmp_path):
    page.goto(review.as_uri())
    assert images_loaded(page) == [640] * 8  # 4 samples, source and result, at 2x of 320
    clip, x = wipe_state(page)
    assert clip == "inset(0px 0px 0px 50%)"
    page.fill("#wipe", "30")
    moved_clip, moved_x = wipe_state(page)
    assert moved_clip == "inset(0px 0px 0px 30%)" and moved_x < x - 50
    shot = keep(page, tmp_path, "review.png", height=480)  # the controls and two samples
    assert shot.stat().st_size > 10_000
    page.check("#actual")  # 1:1: the result at its natural size, pixels not smoothed
    size = page.evaluate("""(() => { const i = document.querySelector('img.result');
        return [i.getBoundingClientRect().width, getComputedStyle(i).imageRendering]; })()""")
    assert size == [640, "pixelated"]
    assert page.requests == [review.as_uri()]  # the page itself; nothing else


@pytest.mark.slow
def test_status_page_refreshes_and_links_the_review_page(page, review, tmp_path):
    out = review.parent
    inbox = out.parent
    (inbox / ".vidscale").mkdir(exist_ok=True)
    status = WatchStatus(pid=4242, inbox=str(inbox), out_dir=str(out), state="watching",
                         queued=["reel2/b.mov"], counts={"done": 1, "failed": 1})
    status.running = RunningJob("reel1/a.mov", str(out / "reel1" / "a_2x.mov"),
                                (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat(),
                                ["preset faithful-2x"])
    status.running.progress = {"chunks": [2, 5], "steps": [6, 15]}  # 48 % in 5 min: ETA ~5 min
    status.done.append({"file": "sample.mov", "output": str(out / "sample_2x.mov"), "time": now_iso()})
    status.failed.append({"file": "notes.txt", "error": "notes.txt: not a video file", "time": now_iso()})
    status_file = inbox / ".vidscale" / "status.json"
    status_file.write_text(json.dumps({"updated": now_iso(), **status.to_dict()}))
    with serve_status(status_file, out) as server:
        page.goto(server.url)
        assert page.locator("main").inner_text().count("reel1/a.mov") == 1
        assert "2 of 5 done" in page.inner_text("main") and "not a video file" in page.inner_text("main")
        keep(page, tmp_path, "status.png", height=780)
        status.queued.append("reel2/c.mov")  # the page shows it without being reloaded
        status_file.write_text(json.dumps(status.to_dict()))
        page.wait_for_function("document.querySelector('main').innerText.includes('reel2/c.mov')",
                               timeout=6000)
        page.click("text=review")
        page.wait_for_load_state()
        assert page.url == server.url + "out/sample_2x_review.html"
        assert images_loaded(page) == [640] * 8
    assert all(url.startswith(server.url) for url in page.requests), page.requests
