"""A headless Chromium driven over the Chrome DevTools Protocol (CDP), for the serve page's
tests: start the browser, open a tab on a URL, evaluate JavaScript, type, click, screenshot.

The browser is Debian's `chromium` (or $TFORMER_CHROMIUM); the protocol goes over a
websocket (the websocket-client package). find_chromium() says why when there is none.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

from tf_testlib import stop_process

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium():
    """(path, None) of a Chromium binary, or (None, the reason there is none)."""
    override = os.environ.get("TFORMER_CHROMIUM")
    if override:
        return (override, None) if os.access(override, os.X_OK) else (None, f"TFORMER_CHROMIUM={override} is not executable")
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path, None
    return None, "no Chromium found (" + ", ".join(NAMES) + " on PATH): install Debian's `chromium` package " \
                 "(apt-get install chromium) or set TFORMER_CHROMIUM"


class CDPError(RuntimeError):
    pass


class Browser:
    """A headless Chromium with a DevTools port on the loopback; close() ends it."""

    def __init__(self, binary, profile_dir, timeout=60.0):
        args = [binary, "--headless", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={profile_dir}", "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio",
                "--window-size=1100,720", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        # Its output goes to a file, not a pipe: a pipe nobody reads would block it once full.
        self.log_path = os.path.join(profile_dir, "chromium.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        self.port = self._devtools_port(timeout)

    def _devtools_port(self, timeout):
        # Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr.
        end = time.time() + timeout
        while True:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                output = f.read()
            m = re.search(r"DevTools listening on ws://[^:/]+:(\d+)/", output)
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None or time.time() > end:
                self.close()
                raise CDPError("Chromium did not open its DevTools port; its output:\n" + output[-3000:])
            time.sleep(0.05)

    def _http(self, path, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def new_page(self, url):
        """A new tab on `url` (a Page), loaded."""
        target = self._http("/json/new?about:blank", method="PUT")
        page = Page(target["webSocketDebuggerUrl"], target["id"], self)
        page.navigate(url)
        return page

    def close(self):
        if self.proc.poll() is None:
            stop_process(self.proc, timeout=10)


class Page:
    """One tab: CDP commands over its websocket; events are kept in `events`."""

    def __init__(self, ws_url, target_id, browser):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.target_id, self.browser, self.events, self._id = target_id, browser, [], 0
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method, **params):
        """Runs a CDP command; its result (a CDPError when the browser answers an error)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, what, timeout=30.0):
        """Polls a JavaScript expression until it is truthy; its value."""
        end = time.time() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.time() > end:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what} ({expression})")
            time.sleep(0.05)

    def navigate(self, url):
        """Loads `url` in the tab and waits until it has loaded."""
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CDPError(f"{url}: {result['errorText']}")
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'", f"{url} to load")

    def type_into(self, selector, text, replace=True):
        """Focuses the element and types `text` as keyboard input would insert it."""
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus();"
                      f" if ({json.dumps(replace)}) e.value = ''; }})()")
        self.send("Input.insertText", text=text)

    def click(self, selector):
        """A real mouse click (press + release) at the middle of the element."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        self.ws.close()
        try:
            self.browser._http(f"/json/close/{self.target_id}")
        except Exception:  # noqa: BLE001 - the text answer is not JSON; the tab is gone either way
            pass
