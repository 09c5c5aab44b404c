"""``archiver demo``: the whole pipeline against the built-in Akool stand-in, no account.

It starts the stand-in on loopback, archives its sample jobs (translations with
subtitles, talking photos, and one job that fails on Akool's side, on purpose) and
prints the summary. Running it twice shows the second run skipping everything.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

from .config import Config
from .manifest import Manifest, ManifestItem
from .models import Outcome, RunResult
from .run import archive
from .scheduler import Observer


def run_demo(directory: Path, *, quiet: bool = False, observer: Observer | None = None) -> int:
    """Run the demo into *directory*; 0 when every job ended as its scenario says."""
    return asyncio.run(_demo(directory, quiet, observer))


async def _demo(directory: Path, quiet: bool, observer: Observer | None) -> int:
    from .cli import format_summary, install_secret_filter
    from .testing.standin import AkoolStandIn, sample_jobs

    key = "demo-" + secrets.token_hex(16)
    standin = AkoolStandIn(api_key=key)
    jobs = sample_jobs()
    standin.add_jobs(jobs)
    items = []
    for job_id, scenario in jobs.items():
        if scenario.outcome == "failed":
            label = "fails-on-purpose"
        elif len(scenario.files) > 1:
            label = f"translation-{scenario.translated_lang}"
        else:
            label = "talking-photo"
        items.append(ManifestItem(job_id, label))

    async with standin.serve() as base_url:
        config = Config.model_validate({
            "api": {"base_url": base_url, "api_key": key},
            "polling": {"interval": 0.2, "max_interval": 1, "deadline": 60},
            # The stand-in's files are on loopback, which downloads refuse by default.
            "downloads": {"allow_private": True},
            "storage": {"local": {"root": str(directory)}},
        })
        install_secret_filter(config)
        if not quiet:
            print(f"archiver demo: Akool stand-in at {base_url}, {len(items)} sample jobs "
                  f"-> {directory}/", file=sys.stderr)
        result = await archive(config, Manifest(tuple(items), source="demo"), observer=observer)

    expected_failures = {i.id for i in items if i.label == "fails-on-purpose"}
    if not quiet:
        print(format_summary(result))
        print(_explain(result, directory, expected_failures))
    return 0 if _as_expected(result, expected_failures) else 1


def _as_expected(result: RunResult, expected_failures: set[str]) -> bool:
    for item in result.items:
        wanted = {Outcome.FAILED} if item.id in expected_failures else {
            Outcome.ARCHIVED, Outcome.ALREADY_ARCHIVED}
        if item.outcome not in wanted:
            return False
    return True


def _explain(result: RunResult, directory: Path, expected_failures: set[str]) -> str:
    archived = next((i for i in result.items
                     if i.outcome in (Outcome.ARCHIVED, Outcome.ALREADY_ARCHIVED)), None)
    lines = [f"The job {sorted(expected_failures)[0]} fails on Akool's side on purpose "
             "(a real run would exit 1)."] if expected_failures else []
    if archived is not None:
        lines.append(f"Check an item:  (cd {directory / archived.id} && sha256sum -c SHA256SUMS)")
    if result.count(Outcome.ALREADY_ARCHIVED):
        lines.append("Items archived by an earlier run were skipped without any API call.")
    else:
        lines.append("Run the demo again: everything archived is skipped, nothing is downloaded.")
    return "\n".join(lines)
