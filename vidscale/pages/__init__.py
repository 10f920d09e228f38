"""Pages a person reads in a browser: the review page of an upscale and the watch folder's status.

Both are plain HTML written by Python: inline CSS and JavaScript, images embedded as ``data:``
URIs, nothing fetched from the network, so a page works offline, from a file share, in any browser.

* :func:`write_review` -> ``NAME_review.html`` beside an output: source vs result with a wipe and
  1:1 zoom, the plan and settings, time per stage, the frame-to-frame change at chunk boundaries;
* :func:`serve_status` -> a read-only HTTP server for ``vidscale watch``: the queue, the running
  clip, recent results (standard library only, loopback by default).
"""

from .review import review_path, write_review
from .status import serve_status

__all__ = ["review_path", "serve_status", "write_review"]
