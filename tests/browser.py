"""A real headless browser for the tests: Debian's ``chromium``, driven over the DevTools
protocol (CDP) with aiohttp's websocket client - no Selenium, no driver, no new
dependency.

:class:`Chromium` starts one browser process (``--headless=new``, a throw-away profile,
``--remote-debugging-port=0``: the port it picked is read from ``DevToolsActivePort``)
and is meant to be shared by the tests of a module (:func:`chromium_fixture`). Each test
opens its own tab with ``async with browser.page() as page``: a :class:`Page` collects
what the page said on its console, the exceptions it threw and the browser's log
entries as they come (:attr:`Page.problems`: what a test asserts empty), navigates,
evaluates JavaScript and takes screenshots.

Without ``chromium`` on ``PATH`` (or ``$CHROMIUM``) the tests that need it are skipped
with the reason - unless ``CI`` or ``ARCHIVER_REQUIRE_BROWSER`` is set, where a missing
browser fails them with a clear message: CI must never go green by skipping them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

#: Where screenshots and other artifacts of the tests are kept (git-ignored).
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

#: How long the browser may take to start, and one command to answer (not assertions on
#: speed: bounds that turn a hang into a clear failure on a loaded machine).
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0


class BrowserError(AssertionError):
    """The browser could not be started or did not answer as the protocol says."""


def find_chromium() -> str | None:
    """The browser binary: ``$CHROMIUM``, else ``chromium`` (Debian), else
    ``chromium-browser`` or ``google-chrome`` on ``PATH``."""
    candidates = [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser",
                  "google-chrome"]
    for name in filter(None, candidates):
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_required() -> bool:
    """Whether a missing browser is a failure (CI) rather than a reason to skip."""
    return bool(os.environ.get("CI") or os.environ.get("ARCHIVER_REQUIRE_BROWSER"))


def need_chromium() -> str:
    """The browser binary; skips the test without one, or fails it under CI."""
    found = find_chromium()
    if found is None:
        message = ("chromium is not installed: `apt-get install -y --no-install-recommends "
                   "chromium` (or set $CHROMIUM to a Chromium or Chrome binary)")
        if browser_required():
            pytest.fail(f"{message}; CI / ARCHIVER_REQUIRE_BROWSER is set, so the browser "
                        "tests may not be skipped", pytrace=False)
        pytest.skip(message)
    return found


@dataclass(frozen=True, slots=True)
class Message:
    """One thing the page reported: a console call, an exception, a log entry."""

    source: str  # console | exception | log
    level: str  # log, info, warning, error, debug...
    text: str

    def __str__(self) -> str:
        return f"{self.source}.{self.level}: {self.text}"


class Chromium:
    """One headless browser process (see the module docstring)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self._profile = Path(tempfile.mkdtemp(prefix="archiver-chromium-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr = self._profile / "stderr.log"
        #: ``ws://127.0.0.1:PORT/devtools/browser/ID``, once started.
        self.ws_url = ""

    def start(self) -> None:
        profile = self._profile / "profile"
        args = [self.binary, "--headless=new", "--remote-debugging-port=0",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--mute-audio",
                "--disable-breakpad", "--disable-crash-reporter",
                "--hide-scrollbars", "--window-size=1280,900",
                # Media elements load metadata without a user gesture being needed.
                "--autoplay-policy=no-user-gesture-required", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to start as root otherwise
        # Its temporary files (org.chromium.Chromium.*) go into the profile, removed with it.
        scratch = self._profile / "tmp"
        scratch.mkdir()
        environment = {**os.environ, "TMPDIR": str(scratch)}
        with self._stderr.open("wb") as err:
            # Its own process group: the renderer, GPU and utility processes it forks
            # are stopped with it (see close).
            self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err,
                                             stdin=subprocess.DEVNULL, env=environment,
                                             start_new_session=True)
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserError(f"{self.binary} exited with {self._process.returncode} "
                                   f"at start: {self._stderr.read_text(errors='replace')[-2000:]}")
            lines = active.read_text().split("\n") if active.exists() else []
            if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
                self.ws_url = f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
                return
            time.sleep(0.05)  # polling a file the browser writes once, at start
        self.close()
        raise BrowserError(f"{self.binary} did not open its DevTools port within "
                           f"{START_TIMEOUT:g}s")

    def close(self) -> None:
        """Stop the browser and every process it started, then remove the profile.

        Stopping only the main process is not enough: its children may still be
        writing into the profile while it is removed ("Directory not empty")."""
        process, self._process = self._process, None
        if process is not None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            _signal_group(process.pid, signal.SIGKILL)  # whatever is left of the group
            process.wait()
        _remove_tree(self._profile)

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A new tab, listening to its console, exceptions and log; closed afterwards."""
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(self.ws_url, max_msg_size=0) as ws:
            connection = _Connection(ws)
            reader = asyncio.create_task(connection.read())
            try:
                target = await connection.send("Target.createTarget", {"url": "about:blank"})
                attached = await connection.send("Target.attachToTarget", {
                    "targetId": target["targetId"], "flatten": True})
                page = Page(connection, attached["sessionId"])
                await page.enable()
                try:
                    yield page
                finally:
                    with contextlib.suppress(BrowserError, aiohttp.ClientError):
                        await connection.send("Target.closeTarget",
                                              {"targetId": target["targetId"]})
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


class _Connection:
    """Commands and their answers over one websocket; events handed to their session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.listeners: dict[str, list[Any]] = {}
        self._closed: BaseException | None = None

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session: str | None = None) -> dict[str, Any]:
        if self._closed is not None:
            raise BrowserError(f"the browser connection is closed ({self._closed})")
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = answer
        await self._ws.send_str(json.dumps(message))
        try:
            reply = await asyncio.wait_for(answer, COMMAND_TIMEOUT)
        finally:
            self._waiting.pop(number, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                if "id" in message:
                    waiting = self._waiting.get(message["id"])
                    if waiting is not None and not waiting.done():
                        waiting.set_result(message)
                    continue
                for listener in self.listeners.get(message.get("sessionId", ""), []):
                    listener(message["method"], message.get("params", {}))
        finally:
            self._closed = ConnectionError("websocket closed")
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_exception(BrowserError("the browser closed the connection"))


@dataclass
class Page:
    """One tab (see the module docstring)."""

    _connection: _Connection
    session: str
    #: Everything the page reported, in order.
    messages: list[Message] = field(default_factory=list)
    _events: dict[str, list[asyncio.Future[dict[str, Any]]]] = field(default_factory=dict)

    async def enable(self) -> None:
        self._connection.listeners.setdefault(self.session, []).append(self._on_event)
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One CDP command in this tab's session; its result."""
        return await self._connection.send(method, params, self.session)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", "")))
                            for a in params.get("args", []))
            self.messages.append(Message("console", params.get("type", "log"), text))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.messages.append(Message("exception", "error", text))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.messages.append(Message("log", entry.get("level", "info"),
                                         f"{entry.get('text', '')} {entry.get('url', '')}"))
        for waiting in self._events.pop(method, []):
            if not waiting.done():
                waiting.set_result(params)

    def _expect(self, method: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events.setdefault(method, []).append(future)
        return future

    @property
    def problems(self) -> list[Message]:
        """Console errors and warnings, exceptions, and error log entries (a refused
        Content-Security-Policy, a failed load): what a clean page has none of."""
        return [m for m in self.messages
                if m.source == "exception" or m.level in ("error", "warning", "assert")]

    async def goto(self, url: str) -> None:
        """Navigate to *url* and wait for its load event."""
        loaded = self._expect("Page.loadEventFired")
        answer = await self.send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        await asyncio.wait_for(loaded, COMMAND_TIMEOUT)

    async def evaluate(self, expression: str) -> Any:
        """The value of *expression* in the page (awaited if a promise); an exception
        in the page raises :class:`BrowserError`."""
        answer = await self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise BrowserError(f"{expression[:80]!r} threw: "
                               f"{details.get('exception', {}).get('description', details)}")
        return answer.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = COMMAND_TIMEOUT) -> Any:
        """The value of *expression* once truthy, the page telling when (a promise that
        resolves on the next animation frames until it holds); BrowserError past
        *timeout* - a bound against hangs, not a measure of speed."""
        script = f"""new Promise((resolve, reject) => {{
            const end = performance.now() + {timeout * 1000:.0f};
            const check = () => {{
                let value;
                try {{ value = ({expression}); }} catch (e) {{ reject(e); return; }}
                if (value) resolve(value);
                else if (performance.now() > end) resolve(null);
                else setTimeout(check, 20);
            }};
            check();
        }})"""
        value = await self.evaluate(script)
        if not value:
            raise BrowserError(f"{expression!r} still false after {timeout:g}s")
        return value

    async def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """A PNG of the tab (with *full_page*, the whole document), written to *path*."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params |= {"captureBeyondViewport": True,
                       "clip": {"x": 0, "y": 0, "width": size["width"],
                                "height": size["height"], "scale": 1}}
        shot = await self.send("Page.captureScreenshot", params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _signal_group(group: int, number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, number)


def _remove_tree(path: Path, patience: float = 10.0) -> None:
    """Remove *path*, retrying while a dying child process still writes into it."""
    deadline = time.monotonic() + patience
    while True:
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # a process killed a moment ago is still exiting


@contextlib.contextmanager
def running_chromium() -> Iterator[Chromium]:
    """A started browser (skipped or failed without one: :func:`need_chromium`)."""
    browser = Chromium(need_chromium())
    browser.start()
    try:
        yield browser
    finally:
        browser.close()


def artifact(name: str) -> Path:
    """A path under ``test-artifacts/`` for a file a test keeps (a screenshot)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
