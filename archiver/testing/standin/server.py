"""The stand-in itself: :class:`AkoolStandIn`, and the result families it serves.

It holds the configuration, the jobs and (through :class:`~.records.Ledger`) the
counters, all under one lock; ``api.py``, ``deletes.py``, ``files.py`` and the family
modules do the talking. A new family is registered by adding it to :data:`FAMILIES`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from archiver.testing.media import CHUNK_SIZE
from archiver.testing.standin.api import (
    AccountLimit,
    Answered,
    add_api_routes,
    record_unknown,
)
from archiver.testing.standin.audio import AUDIO
from archiver.testing.standin.content import bytes_file, file_path
from archiver.testing.standin.deletes import Outcome, add_delete_routes
from archiver.testing.standin.faceswap import FACESWAP
from archiver.testing.standin.family import Family
from archiver.testing.standin.faults import ApiFault, FileFault, check_api_fault, check_file_fault
from archiver.testing.standin.files import FileAnswer, add_file_routes
from archiver.testing.standin.image import IMAGE
from archiver.testing.standin.image2video import IMAGE2VIDEO
from archiver.testing.standin.jobs import JobScenario, JobState, validate
from archiver.testing.standin.records import Ledger
from archiver.testing.standin.serving import in_thread, serve_app
from archiver.testing.standin.video import VIDEO

if TYPE_CHECKING:
    from archiver.testing.callbacks import CallbackSender, Delivery
    from archiver.testing.standin.content import File

#: The result families a stand-in serves unless told otherwise: one line per family.
FAMILIES: tuple[Family, ...] = (
    VIDEO,
    IMAGE,
    AUDIO,
    FACESWAP,
    IMAGE2VIDEO,
)
#: Their names.
FAMILY_NAMES: tuple[str, ...] = tuple(family.name for family in FAMILIES)
# What JobScenario.files is unless a test says otherwise (Family.default_files).
_DEFAULT_FILES = JobScenario().files


class AkoolStandIn(Ledger):
    """A fake Akool result API and CDN on a real socket.

    Jobs are added with :meth:`add_job` (before or while serving). The server
    is started with :meth:`serve` (async context manager) or
    :meth:`run_in_thread` (sync context manager); :attr:`app` is the
    underlying :class:`aiohttp.web.Application` for embedding.

    Counters (:attr:`api_calls`, :attr:`polls`, :attr:`file_requests`,
    :attr:`file_bytes_sent`, :attr:`api_requests`, :attr:`api_headers`,
    :attr:`throttled`, :attr:`lookups`, :attr:`token_requests`, :attr:`delete_calls`,
    :attr:`unknown_requests`) are
    updated under a lock and returned as snapshots, so tests may read them
    from another thread while the server runs.
    """

    def __init__(
        self,
        api_key: str | None = "test-key",
        token: str | None = "test-token",
        # 16 and 24 bytes: also the AES IV and key of webhook callbacks (callbacks.py).
        client_id: str | None = "standin-clientid",
        client_secret: str | None = "standin-client-secret-24",
        *,
        latency: float = 0.0,
        fail_all_with_code: int | None = None,
        public_base_url: str | None = None,
        chunk_size: int = CHUNK_SIZE,
        max_recorded_requests: int = 10_000,
        file_rate: float | None = None,
        requests_per_second: float | None = None,
        burst: float | None = None,
        families: Iterable[Family] = FAMILIES,
    ) -> None:
        """Configure credentials and global behaviour.

        ``api_key``/``token`` of ``None`` reject every ``x-api-key``/Bearer
        value. ``latency`` (seconds) delays every API answer;
        ``fail_all_with_code`` answers that business code to every API
        request. ``public_base_url`` replaces the request's own scheme and
        host in result URLs (for a stand-in behind a proxy).
        ``max_recorded_requests`` bounds :attr:`api_requests` so that long
        benchmarks do not grow memory without limit. ``file_rate`` (bytes per
        second) paces every file response on its own, like a CDN that limits each
        connection (nginx ``limit_rate``): N parallel downloads get N times the rate.
        ``requests_per_second`` is an account-wide limit on result lookups, however
        many clients send them: a token bucket of ``burst`` (default: one second's
        worth, at least 1) refilled at that rate; a lookup finding it empty is answered
        code 1005 ("operation too frequent", HTTP 200) and counted in :attr:`throttled`.
        ``families`` are the result families served (default :data:`FAMILIES`).
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be > 0")
        if file_rate is not None and file_rate <= 0:
            raise ValueError("file_rate must be > 0")
        if requests_per_second is not None and requests_per_second <= 0:
            raise ValueError("requests_per_second must be > 0")
        if burst is not None and (requests_per_second is None or burst < 1):
            raise ValueError("burst needs requests_per_second and must be >= 1")
        super().__init__(max_recorded_requests)
        self.requests_per_second = requests_per_second
        self.burst = burst if burst is not None else max(1.0, requests_per_second or 0.0)
        self.file_rate = file_rate
        self.api_key = api_key
        self.token = token
        self.client_id = client_id
        self.client_secret = client_secret
        self.latency = latency
        self.fail_all_with_code = fail_all_with_code
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.chunk_size = chunk_size
        #: Base URL while :meth:`serve` / :meth:`run_in_thread` is active.
        self.base_url: str | None = None
        self._families = _by_name(families)
        self._jobs: dict[str, JobState] = {}
        self._limit = AccountLimit(self.burst, time.monotonic())
        self._app: web.Application | None = None

    @property
    def families(self) -> Mapping[str, Family]:
        """The families served, by name."""
        return dict(self._families)

    @property
    def app(self) -> web.Application:
        """The aiohttp application, for embedding in another server or runner.

        Created on first access and then always the same object. (:meth:`serve`
        builds a fresh one each time: an aiohttp application stays tied to the
        first event loop that ran it, and :meth:`run_in_thread` uses a new loop
        per call.) All applications share this stand-in's jobs and counters.
        """
        if self._app is None:
            self._app = self.make_app()
        return self._app

    def make_app(self) -> web.Application:
        """Build a new :class:`aiohttp.web.Application` serving this stand-in."""
        app = web.Application(middlewares=[record_unknown(self)])
        add_api_routes(app, self, self._families.values())
        add_delete_routes(app, self)
        add_file_routes(app, self)
        return app

    def rotate_token(self) -> str:
        """Replace the Bearer token, as if it had expired: requests with the old one get
        1101 from now on, and ``getToken`` hands out the new one, which is returned."""
        token = "standin-" + secrets.token_urlsafe(18)
        with self._lock:
            self.token = token
        return token

    # ------------------------------------------------------------------ jobs

    def add_job(
        self, job_id: str, scenario: JobScenario | None = None, /, **fields: Any
    ) -> JobScenario:
        """Add (or replace) a job; ``fields`` are :class:`JobScenario` fields.

        With both ``scenario`` and ``fields``, the fields override the
        scenario's. Fault lists are copied, so a scenario can be reused.
        Safe to call while the server runs, from any thread.
        """
        base = scenario if scenario is not None else JobScenario()
        scen = dataclasses.replace(base, **fields)
        # Lists are accepted for convenience; a tuple keeps comparisons simple.
        scen.files = tuple(scen.files)
        family = self._family(scen.family)
        if scen.files == _DEFAULT_FILES and not set(scen.files) <= set(family.files):
            scen.files = family.default_files
        validate(job_id, scen, family.files, family.inputs)
        if family.check is not None:
            family.check(scen)
        names = family.job_names(scen)
        if len(set(names.values())) != len(names):
            raise ValueError(f"job {job_id!r}: two files share a name in {names}")
        create_time = scen.create_time if scen.create_time is not None else int(time.time() * 1000)
        state = JobState.create(scen, create_time, names, tuple(family.inputs))
        made = family.make_files(job_id, scen, create_time)
        for kind, data in scen.file_bytes.items():
            made[kind] = bytes_file(data, made[kind].content_type if kind in made
                                    else "application/octet-stream", create_time)
        for kind, content_type in scen.content_types.items():
            if kind in made:
                made[kind] = dataclasses.replace(made[kind], content_type=content_type,
                                                 charset=None)
        state.files = {names[kind]: file for kind, file in made.items()}
        with self._lock:
            self._jobs[job_id] = state
        return scen

    def add_jobs(self, jobs: Mapping[str, JobScenario] | Iterable[tuple[str, JobScenario]]) -> None:
        """Add several jobs, e.g. ``standin.add_jobs(sample_jobs())``."""
        items = jobs.items() if isinstance(jobs, Mapping) else jobs
        for job_id, scenario in items:
            self.add_job(job_id, scenario)

    def remove_job(self, job_id: str) -> None:
        """Forget a job: later polls answer 1008 and its files 404."""
        with self._lock:
            self._jobs.pop(job_id, None)

    @property
    def job_ids(self) -> list[str]:
        """Ids of all known jobs, in insertion order."""
        with self._lock:
            return list(self._jobs)

    def add_api_faults(self, job_id: str, *faults: ApiFault) -> None:
        """Queue more API faults for a known job (answered before normal polls)."""
        checked = [check_api_fault(f) for f in faults]
        with self._lock:
            self._state(job_id).api_faults.extend(checked)

    def add_file_faults(self, job_id: str, name: str, *faults: FileFault) -> None:
        """Queue more faults for a job's file (kind or file name)."""
        checked = [check_file_fault(f) for f in faults]
        with self._lock:
            state = self._state(job_id)
            key = state.file_name(name)
            state.file_faults.setdefault(key, deque()).extend(checked)

    def _state(self, job_id: str) -> JobState:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"unknown job {job_id!r}") from None

    def _family(self, name: str) -> Family:
        try:
            return self._families[name]
        except KeyError:
            raise ValueError(f"unknown family {name!r}; expected one of "
                             f"{sorted(self._families)}") from None

    # ----------------------------------------------------------------- files

    def _file(self, job_id: str, name: str) -> File:
        with self._lock:
            state = self._state(job_id)
        key = state.file_name(name)
        try:
            return state.files[key]
        except KeyError:
            raise KeyError(f"job {job_id!r} has no file {key!r}") from None

    def file_size(self, job_id: str, name: str) -> int:
        """Size in bytes of a job's file (kind or file name)."""
        return self._file(job_id, name).content.size

    def file_bytes(self, job_id: str, name: str) -> bytes:
        """The exact bytes served for a job's file (use for small files only)."""
        content = self._file(job_id, name).content
        return content.read(0, content.size)

    def file_sha256(self, job_id: str, name: str) -> str:
        """Hex SHA-256 of a job's file, computed by streaming (fine for huge files)."""
        return self._file(job_id, name).content.sha256()

    def file_path(self, job_id: str, name: str) -> str:
        """Path and signed query of a job's file, as put in API answers."""
        with self._lock:
            state = self._state(job_id)
        key = state.file_name(name)
        return file_path(job_id, key, state.create_time, signed=state.scenario.signed_urls)

    def file_url(self, job_id: str, name: str, base_url: str | None = None) -> str:
        """Absolute URL of a job's file (``base_url`` defaults to the running server's)."""
        base = base_url or self.public_base_url or self.base_url
        if base is None:
            raise RuntimeError("the stand-in is not serving; pass base_url")
        return base.rstrip("/") + self.file_path(job_id, name)

    @staticmethod
    def mirror_path(job_id: str, name: str) -> str:
        """Path serving a job's file without faults or redirects (a redirect target).
        *name*: a file name, or a file kind of the built-in :data:`FAMILIES` (its default
        name: pass the name for a job whose names differ)."""
        return f"/mirror/{job_id}/{_builtin_file_name(name)}"

    # -------------------------------------------------------------- webhooks

    def callbacks(self, webhook_url: str, *, connections: int = 100) -> CallbackSender:
        """A sender of signed, encrypted callbacks to *webhook_url* with this stand-in's
        ``client_id`` / ``client_secret`` (``async with standin.callbacks(url) as s``)."""
        from archiver.testing.callbacks import CallbackSender

        if self.client_id is None or self.client_secret is None:
            raise RuntimeError("callbacks need client_id and client_secret")
        return CallbackSender(webhook_url, self.client_id, self.client_secret,
                              connections=connections)

    async def deliver(self, sender: CallbackSender, job_id: str) -> Delivery:
        """Tell *sender*'s receiver what Akool would once *job_id* is final: status 3
        with the family's main result as ``url`` (an image job's image, a face swap's
        image or video...), or 4 with the family's failure fields; ``type`` as the
        family (or the scenario's ``callback_type``) says."""
        with self._lock:
            scen = self._jobs[job_id].scenario
        family = self._family(scen.family)
        callback_type = (scen.callback_type if scen.callback_type is not None
                         else family.callback_type(scen))
        callback_type = callback_type or None  # "": no type at all
        if scen.outcome == "failed":
            return await sender.notify(job_id, 4, extra=family.failure_fields(scen),
                                       callback_type=callback_type)
        if scen.outcome == "never":
            return await sender.notify(job_id, 2, callback_type=callback_type)
        main = next((k for k in family.callback_files if k in scen.files), None)
        url = self.file_url(job_id, main) if main is not None else None
        return await sender.notify(job_id, 3, url=url, callback_type=callback_type)

    # --------------------------------------------------------------- serving

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0 = ephemeral) and yield the base URL.

        The base URL looks like ``http://127.0.0.1:PORT``; wildcard bind
        addresses are reported as loopback.
        """
        async with serve_app(self.make_app(), host, port) as url:
            self.base_url = url
            try:
                yield url
            finally:
                self.base_url = None

    @contextlib.contextmanager
    def run_in_thread(
        self, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0
    ) -> Iterator[str]:
        """Serve from a daemon thread with its own event loop; yield the base URL.

        For synchronous tests and for running the project's CLI against the
        stand-in. The server is stopped (and the thread joined) on exit.
        """
        with in_thread(lambda: self.serve(host, port), timeout=timeout) as url:
            yield url

    # ------------------------------------------- decisions, from the handlers

    def _lookup(self, family: Family, ids: list[str]) -> ApiFault | Answered:
        """Count one authenticated lookup of *ids* and decide its answer (api.ApiHost)."""
        with self._lock:
            now = time.monotonic()
            admitted = self._limit.admit(now, self.requests_per_second, self.burst)
            self._note_lookup(ids, now, admitted=admitted)
            if not admitted:
                # Before the jobs' own faults: the account is over its limit, whatever the ids.
                return ("code", 1005)
            jobs = [(job_id, state) for job_id in ids
                    if (state := self._jobs.get(job_id)) is not None
                    and state.scenario.family == family.name]
            if not jobs and not family.batched:
                return ("code", 1008)
            for _, state in jobs:
                fault = state.next_fault()
                if fault is not None:
                    return fault
            return [(job_id, state, state.advance()) for job_id, state in jobs]

    def _delete(self, family: str, ids: list[str], *, spare_processing: bool) -> Outcome:
        """Delete the jobs of *family* among *ids* (deletes.DeleteHost): unknown ids and,
        if *spare_processing*, jobs still processing are refused."""
        deleted: list[str] = []
        refused: list[tuple[str, str]] = []
        with self._lock:
            for job_id in ids:
                state = self._jobs.get(job_id)
                if state is None or state.scenario.family != family:
                    refused.append((job_id, "The content you get does not exist"))
                elif spare_processing and state.status() == 2:
                    refused.append((job_id, "The video is processing and cannot be deleted"))
                else:
                    del self._jobs[job_id]
                    deleted.append(job_id)
        return deleted, refused

    def _open_file(
        self, job_id: str, name: str, range_header: str | None, if_range: str | None,
        *, mirror: bool,
    ) -> FileAnswer | None:
        """Count one file request and decide its answer (files.FileHost)."""
        with self._lock:
            self._note_file_request(job_id, name, range_header, if_range)
            state = self._jobs.get(job_id)
            if state is None:
                return None
            return state.take_file(name, ranged=bool(range_header), mirror=mirror)


def _by_name(families: Iterable[Family]) -> dict[str, Family]:
    """The families by name, refusing two with one name or one endpoint."""
    by_name: dict[str, Family] = {}
    routes: set[tuple[str, str]] = set()
    for family in families:
        route = (family.method, family.path)
        if family.name in by_name or route in routes:
            raise ValueError(f"family {family.name!r}: its name or {family.method} "
                             f"{family.path} is already served")
        by_name[family.name] = family
        routes.add(route)
    return by_name


def _builtin_file_name(name: str) -> str:
    """The file name of a kind (or name) of any built-in family."""
    for family in FAMILIES:
        with contextlib.suppress(ValueError):
            return family.file_name(name)
    kinds = sorted({kind for family in FAMILIES for kind in family.files})
    raise ValueError(f"unknown file {name!r}; expected one of {kinds}")
