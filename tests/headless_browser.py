"""Headless Chromium driven over the DevTools protocol on a pipe, for the report's test (no tests here).

`--remote-debugging-pipe` makes Chromium read protocol messages (JSON, each ended by a
NUL byte) from its fd 3 and answer on its fd 4: no websocket library, no port. `load`
opens a page from disk, waits for its load event, and returns what the test checks:
the console errors, uncaught exceptions and failed loads the page caused, what the
page's script `probe` evaluates to, and a full-page screenshot (PNG bytes).
`scripts/install-browser.sh` installs Debian's chromium.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 120.0  # a guard against a hung browser, not a measurement


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Page:
    errors: list[str]  # console.error / console.assert, uncaught exceptions, failed loads
    probe: Any  # the value of the probe expression
    screenshot: bytes  # PNG


class _Pipe:
    def __init__(self, executable: str, profile: str) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # bash puts our pipe ends on the fds Chromium expects, 3 and 4 (dash takes one-digit fds only).
        self.log = Path(profile) / "stderr.log"
        with open(self.log, "wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', executable,
                 "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                 "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
                pass_fds=(to_browser_r, from_browser_w), stdout=subprocess.DEVNULL, stderr=log)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, session: str | None = None, **params: Any) -> dict:
        """Send one command; return its result (events that arrive meanwhile are kept)."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"chromium exited: {self._stderr_tail()}") from None
        while True:
            reply = self._next()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._next()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _next(self) -> dict:
        deadline = time.monotonic() + TIMEOUT_S
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"chromium sent nothing for {TIMEOUT_S:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the protocol pipe: {self._stderr_tail()}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _stderr_tail(self) -> str:
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        os.close(self._to_browser)
        os.close(self._from_browser)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _errors(events: list[dict]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            found.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
    return found


def load(path: Path, probe: str = "null", executable: str | None = None) -> Page:
    """Open `path` (a file on disk) in headless Chromium; see the module docstring."""
    executable = executable or chromium()
    if executable is None:
        raise FileNotFoundError("chromium not installed (bash scripts/install-browser.sh)")
    with tempfile.TemporaryDirectory(prefix="vasso-chromium-") as profile:
        browser = _Pipe(executable, profile)
        try:
            target = browser.send("Target.createTarget", url="about:blank")["targetId"]
            session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                browser.send(f"{domain}.enable", session)
            browser.send("Page.navigate", session, url=Path(path).resolve().as_uri())
            browser.wait_for("Page.loadEventFired")
            value = browser.send("Runtime.evaluate", session, expression=probe, returnByValue=True)
            if "exceptionDetails" in value:
                raise RuntimeError(f"the probe failed: {value['exceptionDetails'].get('text')}")
            shot = browser.send("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)
            return Page(_errors(browser.events), value["result"].get("value"), base64.b64decode(shot["data"]))
        finally:
            browser.close()
