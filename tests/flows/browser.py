"""Headless Chromium driven over the Chrome DevTools Protocol, for the dashboard test.

Just enough of the protocol to open a page, wait until a JavaScript condition holds (the
Prefect UI is a single-page app that fills itself in from API calls), read values and take a
screenshot. Uses Debian's ``chromium`` and the ``websockets`` package; no browser driver.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect
from websockets.sync.connection import Connection

CHROMIUM = Path("/usr/bin/chromium")
# The network is closed here: without these, Chromium waits on refused connections of its own.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
]


class Page:
    """One browser tab."""

    def __init__(self, ws: Connection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events arriving meanwhile are dropped)."""
        n = next(self._ids)
        self._ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv(timeout=60))
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, *, until: str, timeout: float = 60) -> None:
        """Navigate to `url` and wait until the expression `until` is true in the page."""
        self.call("Page.navigate", url=url)
        self.wait(until, timeout=timeout)

    def click(self, selector: str) -> None:
        """Click the first element matching the CSS `selector` (fails if there is none)."""
        if not self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e?.click(); return !!e; }})()"
        ):
            raise AssertionError(f"nothing on the page matches {selector!r}")

    def wait(self, condition: str, *, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        # A page still loading may have no body yet: that counts as "not yet".
        while not self.evaluate(
            f"(() => {{ try {{ return Boolean({condition}); }} catch {{ return false; }} }})()"
        ):
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
                raise AssertionError(f"timed out waiting for {condition!r}; the page shows:\n{text}")
            time.sleep(0.5)

    def resize(self, width: int, height: int) -> None:
        """Make the viewport `width` × `height` CSS pixels (lazy lists render what is in view)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def chromium(profile: Path, timeout: float = 60) -> Iterator[Page]:
    """Headless Chromium with a fresh profile in `profile`, and its first tab."""
    profile.mkdir(parents=True, exist_ok=True)
    log = open(profile / "chromium.log", "w")  # noqa: SIM115 - closed after the browser stops
    proc = subprocess.Popen(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"chromium did not start: {(profile / 'chromium.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        with connect(url, max_size=None, open_timeout=timeout) as ws:
            page = Page(ws)
            page.resize(1440, 1600)
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
