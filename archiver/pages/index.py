"""The pages of ``archiver index``: every archived item, newest first, on static pages.

:func:`render` turns :class:`IndexItem` values into the pages' bytes - ``index.html``,
then ``index-2.html``... (:func:`archiver.storage.names.index_page_name`),
:data:`PER_PAGE` items each, linked by previous / next links - so that an archive of
100,000 items opens as fast as one of 1,000. Each page stands alone: its style and
script are inline, it links nothing outside the archive, and every link is relative
(``<id>/<file>``), so it works from a local folder, a synced copy, a web server or an S3
static website alike.

An item shows its label, id, family, when it was archived, and its files with size and
SHA-256; a video file gets a ``<video controls>`` player, audio ``<audio controls>``,
an image a thumbnail, subtitles a link. The first :data:`PRELOADED` players of a page
load their metadata at once; the others wait for a click (``preload="none"``), so that
opening a page of 1,000 videos does not start 1,000 requests. The search box filters
the items of the page it is on, by the words typed (id, label, family, file names).

Safety: every string of an item is escaped (:func:`archiver.pages.html.text`) and
what the search reads is in ``data-search`` attributes, never in the script, which is a
constant allowed by its hash in the page's Content-Security-Policy.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from ..storage.names import index_page_name
from .html import content_security_policy, size_words, text, url_path

#: Items per page.
PER_PAGE = 1000
#: Players per page whose metadata loads with the page.
PRELOADED = 24

#: Extensions of the files a page shows with a player or a thumbnail, or as subtitles.
VIDEO = frozenset({".mp4", ".m4v", ".mov", ".webm"})
AUDIO = frozenset({".mp3", ".m4a", ".wav", ".ogg", ".oga", ".opus", ".aac", ".flac"})
IMAGE = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
SUBTITLES = frozenset({".srt", ".vtt"})


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One file of an item as its record lists it."""

    name: str
    size: int | None
    sha256: str


@dataclass(frozen=True, slots=True)
class IndexItem:
    """One archived item as the index shows it."""

    id: str
    label: str | None = None
    #: The result family (``video``, ``image``, ``audio``...); records without one are
    #: the archiver's first family's: ``video``.
    family: str = "video"
    #: When it was archived, ``2026-11-26T17:50:59Z`` ("" if the record is unreadable).
    archived_at: str = ""
    files: tuple[IndexFile, ...] = ()
    #: Why its ``archive.json`` could not be read, if it could not.
    error: str | None = None


def media_kind(name: str) -> str | None:
    """``video``, ``audio``, ``image`` or ``subtitles`` by *name*'s extension, else None."""
    extension = posixpath.splitext(name)[1].lower()
    for kind, extensions in (("video", VIDEO), ("audio", AUDIO), ("image", IMAGE),
                             ("subtitles", SUBTITLES)):
        if extension in extensions:
            return kind
    return None


def newest_first(items: Sequence[IndexItem]) -> list[IndexItem]:
    """*items* in the order the index shows them: newest first, then by id (unreadable
    records, without a date, last)."""
    by_id = sorted(items, key=lambda i: i.id)
    return sorted(by_id, key=lambda i: i.archived_at, reverse=True)


def render(items: Sequence[IndexItem], *, generated_at: str, per_page: int = PER_PAGE
           ) -> list[tuple[str, bytes]]:
    """The pages showing *items* (in the order given: see :func:`newest_first`), as
    (name, bytes); always at least one page, ``index.html``."""
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    count = max(1, -(-len(items) // per_page))
    total = sum(f.size or 0 for i in items for f in i.files)
    return [(index_page_name(n),
             _page(items[(n - 1) * per_page:n * per_page], n, count, len(items), total,
                   generated_at).encode("utf-8"))
            for n in range(1, count + 1)]


_STYLE = """
:root { color-scheme: light dark; --muted: #6b7280; --line: #d1d5db; --bg2: #f3f4f6; }
@media (prefers-color-scheme: dark) { :root { --line: #374151; --bg2: #1f2937; } }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 1rem 1.25rem 3rem; }
header { border-bottom: 1px solid var(--line); margin-bottom: 1rem; }
h1 { font-size: 1.5rem; margin: 0.25rem 0; }
.meta, .when, .none { color: var(--muted); }
#search { width: 100%; font: inherit; padding: 0.5rem 0.75rem; margin: 0.5rem 0 0.75rem;
          border: 1px solid var(--line); border-radius: 0.4rem; }
nav { display: flex; gap: 1rem; align-items: center; margin: 0.5rem 0; }
article { border: 1px solid var(--line); border-radius: 0.5rem; padding: 0.75rem 1rem;
          margin: 0 0 1rem; }
article.broken { border-color: #dc2626; }
h2 { font-size: 1.05rem; margin: 0; overflow-wrap: anywhere; }
.id { font-size: 0.85rem; color: var(--muted); }
.family { font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.04em;
          background: var(--bg2); border-radius: 0.25rem; padding: 0.1rem 0.4rem; }
.when { margin: 0.15rem 0 0.5rem; font-size: 0.85rem; }
.error { color: #dc2626; overflow-wrap: anywhere; }
.media { display: flex; flex-wrap: wrap; gap: 0.75rem; margin-bottom: 0.5rem; }
video { width: 22rem; max-width: 100%; background: #000; border-radius: 0.3rem; }
audio { width: 22rem; max-width: 100%; }
img.thumb { max-width: 14rem; max-height: 10rem; border-radius: 0.3rem;
            border: 1px solid var(--line); }
table { border-collapse: collapse; width: 100%; font-size: 0.85rem; }
td { border-top: 1px solid var(--line); padding: 0.2rem 0.5rem 0.2rem 0;
     vertical-align: top; }
td.size { white-space: nowrap; text-align: right; padding-right: 1rem; }
td.sha { font-family: ui-monospace, monospace; font-size: 0.75rem; color: var(--muted);
         overflow-wrap: anywhere; }
"""

# The one script of every page: a constant (allowed by its hash), reading only the
# data-search attributes the page's items carry.
_SCRIPT = """
(() => {
  const box = document.getElementById("search");
  const items = Array.from(document.querySelectorAll("article[data-search]"));
  const none = document.getElementById("none");
  const shown = document.getElementById("shown");
  const apply = () => {
    const words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    let count = 0;
    for (const item of items) {
      const text = item.dataset.search;
      const hit = words.every((word) => text.includes(word));
      item.hidden = !hit;
      if (hit) count += 1;
    }
    none.hidden = count > 0 || items.length === 0;
    shown.textContent = words.length ? `${count} of ${items.length} shown` : "";
  };
  box.addEventListener("input", apply);
  apply();
})();
"""

_POLICY = content_security_policy(script=_SCRIPT, style=_STYLE)


def _page(items: Sequence[IndexItem], number: int, count: int, total_items: int,
          total_bytes: int, generated_at: str) -> str:
    nav = _nav(number, count)
    where = f"page {number} of {count} · " if count > 1 else ""
    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{text(_POLICY)}">\n',
        '<meta name="referrer" content="no-referrer">\n',
        # No request for /favicon.ico (a 404 on most archives' servers).
        '<link rel="icon" href="data:,">\n',
        f"<title>Archive{text(f' - page {number} of {count}') if count > 1 else ''}"
        "</title>\n",
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<header>\n<h1>Archive</h1>\n",
        f'<p class="meta">{total_items} item(s), {text(size_words(total_bytes))} · {where}'
        f"newest first · written {text(generated_at)}</p>\n",
        '<input id="search" type="search" autocomplete="off" '
        'placeholder="Search this page: id, label, family, file name" '
        'aria-label="Search the items of this page">\n',
        f'{nav}<p class="meta" id="shown"></p>\n</header>\n<main>\n',
    ]
    preloaded = [PRELOADED]
    parts.extend(_item(item, preloaded) for item in items)
    if not items:
        parts.append('<p class="none">Nothing is archived yet.</p>\n')
    parts.append('<p class="none" id="none" hidden>No item on this page matches.</p>\n')
    parts.append(f"</main>\n<footer>{nav}</footer>\n<script>{_SCRIPT}</script>\n"
                 "</body>\n</html>\n")
    return "".join(parts)


def _nav(number: int, count: int) -> str:
    if count == 1:
        return ""
    links = []
    if number > 1:
        links.append(f'<a rel="prev" href="{index_page_name(number - 1)}">&larr; newer</a>')
        if number > 2:
            links.insert(0, f'<a href="{index_page_name(1)}">newest</a>')
    links.append(f"<span>page {number} of {count}</span>")
    if number < count:
        links.append(f'<a rel="next" href="{index_page_name(number + 1)}">older &rarr;</a>')
        if number < count - 1:
            links.append(f'<a href="{index_page_name(count)}">oldest</a>')
    return f"<nav>{''.join(links)}</nav>\n"


def _linkable(name: str) -> bool:
    # A record read back may name anything: only a plain file name of the item's folder
    # becomes a link (never a path out of it).
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _item(item: IndexItem, preloaded: list[int]) -> str:
    search = " ".join([item.id, item.label or "", item.family,
                       *(f.name for f in item.files)]).lower()
    title = (f'<span class="label">{text(item.label)}</span> ' if item.label else "") + \
        f'<code class="id">{text(item.id)}</code>'
    broken = ' class="broken"' if item.error is not None else ""
    parts = [f'<article{broken} data-search="{text(search)}">\n',
             f'<h2>{title} <span class="family">{text(item.family)}</span></h2>\n']
    if item.archived_at:
        shown = item.archived_at.replace("T", " ").replace("Z", " UTC")
        parts.append(f'<p class="when">archived <time datetime="{text(item.archived_at)}">'
                     f"{text(shown)}</time></p>\n")
    if item.error is not None:
        parts.append(f'<p class="error">archive.json unreadable: {text(item.error)}</p>\n')
    players = [_player(item.id, f, preloaded) for f in item.files if _linkable(f.name)]
    players = [p for p in players if p]
    if players:
        parts.append(f'<div class="media">{"".join(players)}</div>\n')
    if item.files:
        parts.append("<table>\n")
        parts.extend(_file_row(item.id, f) for f in item.files)
        parts.append("</table>\n")
    parts.append("</article>\n")
    return "".join(parts)


def _player(item_id: str, file: IndexFile, preloaded: list[int]) -> str:
    kind = media_kind(file.name)
    href = url_path(item_id, file.name)
    if kind in ("video", "audio"):
        preload = "metadata" if preloaded[0] > 0 else "none"
        preloaded[0] -= 1
        return (f'<{kind} controls preload="{preload}" src="{href}" '
                f'title="{text(file.name)}"></{kind}>')
    if kind == "image":
        return (f'<a href="{href}"><img class="thumb" loading="lazy" src="{href}" '
                f'alt="{text(file.name)}"></a>')
    return ""


def _file_row(item_id: str, file: IndexFile) -> str:
    name = text(file.name)
    if _linkable(file.name):
        name = f'<a href="{url_path(item_id, file.name)}">{name}</a>'
    return (f"<tr><td>{name}</td><td class=\"size\">{text(size_words(file.size))}</td>"
            f'<td class="sha">{text(file.sha256) or "-"}</td></tr>\n')
