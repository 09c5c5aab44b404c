"""The HTML of ``serve``'s status page: a pure function of the status document
(:func:`archiver.service.status.build_document`), with no script at all.

Every value of the document goes through :func:`archiver.pages.html.text` (escaped),
strings from Akool and the journal above all. The page refreshes itself with
``<meta http-equiv="refresh">``; its Content-Security-Policy admits its one inline
style by hash and nothing else: no script, no connection, no frame, no form.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..pages.html import source_hash, text

#: Seconds between the page's own refreshes.
REFRESH = 30
#: Time left below which a pending job is marked late (red), and soon (amber).
LATE = 24 * 3600.0
SOON = 2 * 24 * 3600.0

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; background: #fff; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.1rem; margin: 1.6rem 0 .4rem; }
.meta, .note { color: #57606a; margin: .2rem 0; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem .9rem; min-width: 9rem; }
.card b { display: block; font-size: 1.5rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .6rem .25rem 0; border-bottom: 1px solid #eaeef2;
  vertical-align: top; }
th { color: #57606a; font-weight: 600; }
td.id, td.num { font-family: ui-monospace, monospace; white-space: nowrap; }
td.when { white-space: nowrap; } table.narrow { width: auto; }
td.err { white-space: pre-wrap; word-break: break-word; max-width: 40rem; }
.late { color: #b42318; font-weight: 600; } .soon { color: #9a6700; font-weight: 600; }
.ok { color: #1a7f37; } .bad { color: #b42318; }
.empty { color: #57606a; font-style: italic; }
""".strip()


def render_html(document: dict[str, Any]) -> tuple[str, str]:
    """(the page, its Content-Security-Policy) for a status *document*."""
    policy = (f"default-src 'none'; style-src {source_hash(_STYLE)}; img-src data:; "
              "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    jobs = document["jobs"]
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{REFRESH}">',
        '<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">',
        f"<title>archiver serve: {text(jobs['pending'])} pending</title>",
        f"<style>{_STYLE}</style></head><body>",
        _header(document), _cards(document), _pending(document),
        _finished("Latest outcomes", "latest", document["latest"],
                  "No job finished yet."),
        _finished("Failures", "failures", document["failures"],
                  "No job failed or expired.", reason=True),
        _callbacks(document),
        "</body></html>\n",
    ]
    return "\n".join(parts), policy


def duration(seconds: float) -> str:
    """``6 d 23 h``, ``5 h 12 min``, ``3 min 20 s``, ``42 s``."""
    seconds = int(max(0.0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _header(doc: dict[str, Any]) -> str:
    server = doc["server"]
    return (f"<h1>archiver serve</h1><p class=\"meta\">version "
            f"{text(doc['archiver_version'])} · started {text(server['started_at'])} · up "
            f"{duration(server['uptime_seconds'])} · as of {text(doc['generated_at'])} "
            f"(refreshes every {REFRESH} s) · <a href=\"status.json\">as JSON</a></p>")


def _cards(doc: dict[str, Any]) -> str:
    jobs, rates, callbacks = doc["jobs"], doc["rates"], doc["callbacks"]
    pending = doc["pending"]
    least = duration(pending[0]["seconds_left_at_most"]) if pending else "-"
    failed = sum(jobs["done"].get(o, 0) for o in ("failed", "expired"))
    archived = sum(jobs["done"].get(o, 0) for o in ("archived", "already_archived"))
    in_window = rates["finished_in_window"].get("archived", 0)
    refused = sum(callbacks["refused"].values())
    cards = [
        ("pending", jobs["pending"]), ("least time left (at most)", least),
        ("archived in the last hour", in_window),
        ("archived since start", rates["finished_since_start"].get("archived", 0)),
        ("archived in the journal", archived), ("failed or expired", failed),
        ("callbacks received", callbacks["received"]), ("callbacks refused", refused),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{text(value)}</b>{text(name)}</div>'
        for name, value in cards) + "</div>"


def _table(head: Sequence[str], rows: Iterable[str], empty: str, css: str = "") -> str:
    body = "".join(rows)
    if not body:
        return f'<p class="empty">{text(empty)}</p>'
    cells = "".join(f"<th>{text(h)}</th>" for h in head)
    start = f'<table class="{css}">' if css else "<table>"
    return f"{start}<thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object, css: str = "") -> str:
    shown = "" if value is None else text(value)
    return f'<td class="{css}">{shown}</td>' if css else f"<td>{shown}</td>"


def _pending(doc: dict[str, Any]) -> str:
    total, shown = doc["jobs"]["pending"], len(doc["pending"])
    more = f" (the {shown} most urgent shown)" if total > shown else ""
    rows = []
    for job in doc["pending"]:
        left = job["seconds_left_at_most"]
        css = "late" if left < LATE else "soon" if left < SOON else ""
        words = duration(left) if left > 0 else "none: past the deadline"
        rows.append("<tr>" + _cell(job["id"], "id") + _cell(_family(job))
                    + _cell(job["type"]) + _cell(job["akool_status_text"])
                    + _cell(job["first_callback_at"], "when")
                    + _cell(words, f"num {css}".strip()) + _cell(job["attempts"], "num")
                    + _cell(job["next_attempt_at"], "when") + _cell(job["last_error"], "err")
                    + "</tr>")
    return (f"<h2>Pending: {text(total)}{text(more)}, most urgent first</h2>"
            '<p class="note">Akool deletes results 7 days after the job was created. A '
            "callback carries no creation time, so the time left counts 7 days from the "
            "job's first callback: the job was created before it, so Akool may delete it "
            "sooner - the time left is at most this.</p>"
            + _table(("id", "family", "type", "at Akool", "first callback (UTC)",
                      "time left at most",
                      "attempts", "next attempt (UTC)", "last error"), rows,
                     "Nothing pending."))


def _finished(title: str, css_id: str, jobs: Sequence[dict[str, Any]], empty: str,
              reason: bool = False) -> str:
    rows = []
    for job in jobs:
        good = job["outcome"] in ("archived", "already_archived")
        rows.append("<tr>" + _cell(job["id"], "id") + _cell(job["outcome"],
                                                            "ok" if good else "bad")
                    + _cell(job["finished_at"], "when") + _cell(_family(job))
                    + _cell(job["type"])
                    + _cell(job["attempts"], "num") + _cell(job["error"], "err") + "</tr>")
    head = ("id", "outcome", "finished (UTC)", "family", "type", "attempts",
            "reason" if reason else "error")
    return (f'<h2 id="{css_id}">{text(title)} (the last {len(jobs)})</h2>'
            + _table(head, rows, empty))


def _family(job: dict[str, Any]) -> str:
    """The job's result family; "(not known)" while no family has answered for it."""
    return str(job["family"]) if job["family"] else "(not known)"


def _callbacks(doc: dict[str, Any]) -> str:
    callbacks = doc["callbacks"]
    rows = [("received", callbacks["received"])]
    rows += [(f"accepted: {name}", n) for name, n in sorted(callbacks["accepted"].items())]
    rows += [(f"refused: {name}", n) for name, n in sorted(callbacks["refused"].items())]
    rates = doc["rates"]
    # The window is status.RATE_WINDOW, an hour (as the card says).
    rows += [(f"finished in the last hour: {name}", n)
             for name, n in sorted(rates["finished_in_window"].items())]
    rows += [(f"finished since start: {name}", n)
             for name, n in sorted(rates["finished_since_start"].items())]
    return ("<h2>Callbacks since start, and outcomes</h2>"
            + _table(("what", "count"), (f"<tr>{_cell(k)}{_cell(v, 'num')}</tr>"
                                         for k, v in rows), "None yet.", "narrow"))
