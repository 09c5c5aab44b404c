"""What ``archiver serve`` counts besides the journal (for /metrics), and the worker's
back-pressure read from it: fewer jobs at once while callbacks wait for their commit."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

#: Jobs handed to one scheduler at most, and batches running at once. Two, not more:
#: each batch's scheduler starts its own poll and download workers, and more tasks ready
#: at once mean a longer turn of the event loop before a callback is answered (measured
#: with bench/bench_serve.py: 8 batches doubled the accept p99 without archiving faster).
_BATCH = 64
_BATCHES = 2
#: Back-pressure: while callbacks wait long for their commit, the worker runs one small
#: batch at a time. Accepting is the durable path (a 200 late enough makes Akool retry);
#: archiving may lag. What a callback waits on at 500/s is not the fsync (a journal on
#: tmpfs measured the same) but the journal thread and the intake loop getting the CPU
#: and the GIL from the worker: 2 x 64 jobs in flight gave an accept p99 of 50-120 ms,
#: 1 x 4 of ~22 ms, archiving no slower (bench/bench_serve.py, 2 cores).
_BUSY_BATCH = 4
#: A commit wait this much above what the disk takes (twice the journal's commit floor:
#: a slow disk alone must not throttle archiving) counts as "busy" ...
SLOW_ACCEPT = 0.010
#: ... for this many seconds after.
_BUSY_HOLD = 2.0


#: The ``family`` label of a job whose family is not known (yet, or at all).
UNKNOWN_FAMILY = "unknown"
_RESULTS = ("new", "duplicate")
_OUTCOMES = ("archived", "already_archived", "failed", "expired")


class Counters:
    """What /metrics reports besides the journal's own counts."""

    def __init__(self) -> None:
        self.received = 0
        self.rejected: Counter[str] = Counter()
        #: Callbacks recorded, by (result, family): the family the callback's type names.
        self.recorded: Counter[tuple[str, str]] = Counter()
        #: Jobs finished, by (outcome, family).
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.started = time.time()
        #: time.monotonic() of the last callback whose commit waited over SLOW_ACCEPT
        #: (set by the intake thread, read by the worker: one float, no lock needed).
        self.slow_accept_at = float("-inf")


def batch_limits(counters: Counters, now: float) -> tuple[int, int]:
    """(batches at once, jobs per batch) the worker may take now: fewer while the
    intake is busy (back-pressure, see _BUSY_BATCH)."""
    if now - counters.slow_accept_at < _BUSY_HOLD:
        return 1, _BUSY_BATCH
    return _BATCHES, _BATCH


def render_metrics(counters: Counters, pending: int, oldest: float | None,
                   done: dict[str, int], now: float | None = None,
                   families: Sequence[str] = ()) -> str:
    """Prometheus text exposition of the server's counters and the journal's state.
    Counters by family have a sample for each of *families* (0 until counted), plus
    any other family counted (``unknown``)."""
    now = time.time() if now is None else now
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: Sequence[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    metric("archiver_webhook_received_total", "counter",
           "Callback POSTs received since start.", [("", counters.received)])
    metric("archiver_webhook_rejected_total", "counter",
           "Callbacks refused since start, by reason.",
           [(f'{{reason="{r}"}}', n) for r, n in sorted(counters.rejected.items())]
           or [('{reason="bad_signature"}', 0)])
    metric("archiver_webhook_accepted_total", "counter",
           "Callbacks recorded since start (new, or a harmless duplicate), by the "
           "family their type names (unknown: none).",
           _by_family("result", _RESULTS, counters.recorded, families))
    metric("archiver_webhook_items_total", "counter",
           "Jobs finished by this process since start, by outcome and family.",
           _by_family("outcome", _OUTCOMES, counters.outcomes, families))
    metric("archiver_journal_jobs", "gauge", "Jobs in the journal, by state and outcome.",
           [('{state="pending"}', pending)]
           + [(f'{{state="done",outcome="{o}"}}', n) for o, n in sorted(done.items())])
    metric("archiver_webhook_queue_depth", "gauge",
           "Jobs accepted and not finished yet.", [("", pending)])
    metric("archiver_webhook_oldest_pending_age_seconds", "gauge",
           "Age of the oldest unfinished job (0 when none).",
           [("", max(0.0, now - oldest) if oldest is not None else 0.0)])
    metric("archiver_webhook_start_time_seconds", "gauge",
           "When this server started.", [("", counters.started)])
    return "\n".join(lines) + "\n"


def _by_family(label: str, values: Sequence[str], counts: Counter[tuple[str, str]],
               families: Sequence[str]) -> list[tuple[str, float]]:
    """Samples of *counts* labelled ``{label="...",family="..."}``: every value for
    every one of *families* (0 until counted, so that the series exist from the
    start), then whatever else was counted (the unknown family) in sorted order."""
    names = list(families) + sorted({f for _, f in counts} - set(families))
    return [(f'{{{label}="{value}",family="{family}"}}', counts[value, family])
            for family in names for value in values]
