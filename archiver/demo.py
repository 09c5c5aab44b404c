"""``archiver demo``: the whole pipeline against the built-in Akool stand-in, no account.

It starts the stand-in on loopback, archives six of its sample jobs - one of each result
family (a video translation with subtitles, an image with its 4K upscales, an audio, a
face swap, an image-to-video with sound and cover) and one video job that fails on
Akool's side, on purpose -, leaves
the manifest of those jobs in the archive (``manifest.yaml``, so that ``archiver
status`` and ``verify`` can be tried on it at once, without any configuration) and
returns the run's result for the command line to summarize. A second run skips every
archived job without an API call; the failed one is asked about again, as any run does
for an id it has not archived. This module does not import the CLI: the CLI passes in
what it wants done with the demo's configuration (mask its key in the logs) and where
its progress lines go.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .akool.families import FAMILIES
from .archive.run import archive
from .config import Config
from .events import Observer
from .exitstatus import ExitStatus
from .manifest import Manifest, ManifestItem
from .models import Outcome, RunResult
from .report import write_atomic_text
from .service.journal import JobRow, Journal

if TYPE_CHECKING:
    from .testing.standin import AkoolStandIn, JobScenario

#: Called with the demo's configuration before anything runs (the CLI masks its key).
ConfigHook = Callable[[Config], None]
#: Where the demo's lines for a person go (the CLI writes them on stderr); None: nowhere.
Say = Callable[[str], None]

#: The demo's manifest, left in its archive root (ids never contain a dot: no clash).
MANIFEST_NAME = "manifest.yaml"


@dataclass(frozen=True, slots=True)
class DemoRun:
    """What ``archiver demo`` did: the run, its status, and what to try next."""

    result: RunResult
    #: OK when every job ended as its scenario says (one fails on purpose), else FAILED.
    status: ExitStatus
    #: A few lines for a person: the failure was on purpose, how to check an item.
    notes: str
    directory: Path
    #: The manifest of the sample jobs, written into *directory*.
    manifest: Path
    expected_failures: frozenset[str] = frozenset()


def run_demo(directory: Path, *, say: Say | None = None, observer: Observer | None = None,
             on_config: ConfigHook | None = None) -> DemoRun:
    """Run the demo into *directory*; *say* gets its opening line."""
    return asyncio.run(_demo(directory, say, observer, on_config))


async def _demo(directory: Path, say: Say | None, observer: Observer | None,
                on_config: ConfigHook | None) -> DemoRun:
    from .testing.standin import AkoolStandIn, sample_jobs

    key = "demo-" + secrets.token_hex(16)
    standin = AkoolStandIn(api_key=key)
    jobs = _one_of_each(sample_jobs(FAMILIES))
    standin.add_jobs(jobs)
    items = []
    for job_id, scenario in jobs.items():
        label = "fails-on-purpose" if scenario.outcome == "failed" else scenario.family
        items.append(ManifestItem(job_id, label, scenario.family))

    async with standin.serve() as base_url:
        config = _demo_config(base_url, key, directory)
        if on_config is not None:
            on_config(config)
        if say is not None:
            say(f"Akool stand-in at {base_url}, {len(items)} sample jobs -> {directory}/")
        manifest = directory / MANIFEST_NAME
        result = await archive(config, Manifest(tuple(items), source=str(manifest)),
                               observer=observer)
    # After the run, which made the folder (or said why it could not).
    _write_manifest(manifest, items)

    expected_failures = frozenset(i.id for i in items if i.label == "fails-on-purpose")
    status = ExitStatus.OK if _as_expected(result, expected_failures) else ExitStatus.FAILED
    return DemoRun(result, status, _explain(result, directory, manifest, expected_failures),
                   directory, manifest, expected_failures)


def _one_of_each(jobs: dict[str, JobScenario]) -> dict[str, JobScenario]:
    """The first successful sample job of each family, and the video family's failing
    one: six jobs."""
    chosen: dict[str, JobScenario] = {}
    families: set[str] = set()
    failing = False
    for job_id, scenario in jobs.items():
        if scenario.outcome == "failed":
            if scenario.family == "video" and not failing:
                chosen[job_id], failing = scenario, True
        elif scenario.family not in families:
            chosen[job_id] = scenario
            families.add(scenario.family)
    return chosen


def _write_manifest(path: Path, items: list[ManifestItem]) -> None:
    sections: dict[str, list[dict[str, Any]]] = {}
    for i in items:
        sections.setdefault(FAMILIES[i.family].section, []).append(
            {"id": i.id, "label": i.label})
    text = yaml.safe_dump(sections, sort_keys=False)
    write_atomic_text(path, "# The sample jobs of `archiver demo`: a manifest as "
                            "`archiver run` reads it.\n" + text)


def _as_expected(result: RunResult, expected_failures: frozenset[str]) -> bool:
    for item in result.items:
        wanted = {Outcome.FAILED} if item.id in expected_failures else {
            Outcome.ARCHIVED, Outcome.ALREADY_ARCHIVED}
        if item.outcome not in wanted:
            return False
    return True


def _explain(result: RunResult, directory: Path, manifest: Path,
             expected_failures: frozenset[str]) -> str:
    archived = next((i for i in result.items
                     if i.outcome in (Outcome.ARCHIVED, Outcome.ALREADY_ARCHIVED)), None)
    lines = [f"The job {sorted(expected_failures)[0]} fails on Akool's side on purpose "
             "(a real run would exit 1)."] if expected_failures else []
    if archived is not None:
        folder = shlex.quote(str(directory / archived.id))
        lines.append(f"Check an item:  (cd {folder} && sha256sum -c SHA256SUMS)")
    root, listed = shlex.quote(str(directory)), shlex.quote(str(manifest))
    lines += ["Try, with no configuration file:",
              f"  archiver verify {root}",
              f"  archiver status {listed} --root {root}",
              f"  archiver index {root}    # then open {root}/index.html in a browser"]
    if result.count(Outcome.ALREADY_ARCHIVED):
        lines.append(f"Items archived by an earlier run were skipped without an API call; "
                     f"the failed job was asked about again ({result.api_requests} API "
                     "request(s)): a run asks again about every id it has not archived.")
    else:
        lines.append("Run the demo again: archived jobs are skipped without an API call or "
                     "a download; only the failed job is asked about again.")
    return "\n".join(lines)


# ------------------------------------------------------------------- demo --serve

@dataclass(frozen=True, slots=True)
class DemoServe:
    """What ``archiver demo --serve`` did: each job's outcome and each callback check."""

    #: OK when everything went as designed (one job fails on purpose), else FAILED.
    status: ExitStatus
    directory: Path
    journal: Path | None
    #: The journal's rows once every job was done (empty if they did not finish in time).
    rows: list[JobRow] = field(default_factory=list)
    #: HTTP status of each special callback: forged, stale, duplicate, replayed.
    checks: dict[str, int] = field(default_factory=dict)


def run_demo_serve(directory: Path, *, say: Say | None = None,
                   on_config: ConfigHook | None = None) -> DemoServe:
    """``archiver demo --serve``: the webhook loop, offline. *say* gets each step."""
    return asyncio.run(_demo_serve(directory, say, on_config))


async def _demo_serve(directory: Path, say_to: Say | None,
                      on_config: ConfigHook | None) -> DemoServe:
    import dataclasses

    from .service.serve import Server
    from .testing.standin import AkoolStandIn, sample_jobs

    def say(text: str) -> None:
        if say_to is not None:
            say_to(text)

    key = "demo-" + secrets.token_hex(16)
    # Fresh webhook credentials of Akool's sizes: a 24-character client id (the IV is
    # its first 16 bytes), a 24-byte secret.
    standin = AkoolStandIn(api_key=key, client_id=secrets.token_hex(12),
                           client_secret=secrets.token_hex(12))
    # A callback comes when the job is final, so the API already says so on the first poll.
    jobs = {i: dataclasses.replace(s, polls_until_done=1)
            for i, s in _serve_samples(sample_jobs(tuple(standin.families))).items()}
    standin.add_jobs(jobs)
    async with standin.serve() as base_url:
        config = _demo_config(base_url, key, directory, webhook={
            "client_id": standin.client_id, "client_secret": standin.client_secret,
            "listen": "127.0.0.1:0"})
        if on_config is not None:
            on_config(config)
        server = Server(config)
        async with server.running() as url, standin.callbacks(url) as sender:
            say(f"Akool stand-in at {base_url}, archiver serve at {url}")
            for job_id in jobs:
                answer = await standin.deliver(sender, job_id)
                kind = _callback_type(answer.body, standin)
                say(f"callback {job_id} ({jobs[job_id].family}, type "
                    f"{kind or 'none: found by asking each family'}) -> HTTP {answer.status}")
            first = next(iter(jobs))
            forged = await sender.post(sender.tampered(sender.body(first)))
            say(f"forged signature -> HTTP {forged.status} (refused, nothing recorded)")
            stale = await sender.post(sender.stale(first, 3600))
            say(f"an hour-old callback -> HTTP {stale.status} (refused)")
            delivered = await sender.notify(first, 3, url=standin.file_url(first, "video"))
            again = await sender.replay(delivered)
            say(f"a duplicate -> HTTP {delivered.status} (harmless); the same body sent "
                f"again -> HTTP {again.status} (recognised, nothing changes)")
            assert server.journal_path is not None
            async with Journal(server.journal_path) as journal:
                rows = await _wait_done(journal, len(jobs))
    checks = {"forged": forged.status, "stale": stale.status,
              "duplicate": delivered.status, "replayed": again.status}
    if rows is None:
        say("not everything finished in time")
        return DemoServe(ExitStatus.FAILED, directory, server.journal_path, [], checks)
    wanted = {i: ("failed" if s.outcome == "failed" else "archived") for i, s in jobs.items()}
    got = {row.id: row.outcome for row in rows}
    ok = all(got.get(i) in (w, "already_archived") if w == "archived" else got.get(i) == w
             for i, w in wanted.items())
    checked = (forged.status, stale.status, delivered.status, again.status) == \
        (401, 401, 200, 200)
    status = ExitStatus.OK if ok and checked else ExitStatus.FAILED
    return DemoServe(status, directory, server.journal_path, rows, checks)


def _serve_samples(samples: dict[str, JobScenario]) -> dict[str, JobScenario]:
    """One job of each family that succeeds, then one that fails on purpose."""
    chosen: dict[str, JobScenario] = {}
    families: set[str] = set()
    for job_id, scen in samples.items():
        if scen.outcome == "success" and scen.family not in families:
            families.add(scen.family)
            chosen[job_id] = scen
    failing = next(i for i, s in samples.items() if s.outcome == "failed")
    return {**chosen, failing: samples[failing]}


def _callback_type(body: dict[str, Any], standin: AkoolStandIn) -> str | None:
    """The ``type`` a delivered callback carried (decrypted again, for the demo's line)."""
    from .akool.webhook import decrypt

    assert standin.client_id is not None and standin.client_secret is not None
    payload = json.loads(decrypt(body["dataEncrypt"], standin.client_id,
                                 standin.client_secret))
    kind = payload.get("type")
    return kind if isinstance(kind, str) else None


async def _wait_done(journal: Journal, count: int) -> list[JobRow] | None:
    for _ in range(600):  # 60 s at most
        rows = await journal.jobs()
        if len(rows) >= count and all(r.state == "done" for r in rows):
            return rows
        await asyncio.sleep(0.1)
    return None


def _demo_config(base_url: str, key: str, directory: Path, **sections: Any) -> Config:
    """The demo's configuration: fast polling against the stand-in, *sections* added."""
    return Config.model_validate({
        "api": {"base_url": base_url, "api_key": key},
        "polling": {"interval": 0.2, "max_interval": 1, "deadline": 60},
        # The stand-in's files are on loopback, which downloads refuse by default.
        "downloads": {"allow_private": True},
        "storage": {"local": {"root": str(directory)}},
        **sections,
    })
