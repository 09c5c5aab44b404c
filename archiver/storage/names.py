"""The names in an archive: one registry for every backend, ``verify`` and ``gc``.

An item's folder (``<root>/<id>/`` on disk, ``<prefix><id>/`` on S3) holds::

    video.mp4 ...   result files (:func:`is_result_name`)
    info.json       the API's ``data`` object as it came     } metadata
    SHA256SUMS      ``sha256sum -c`` format                    }
    archive.json    the item's record, written LAST: the commit marker

and, while an attempt writes (on backends that keep temporaries: local disk),
``.NAME.part`` (a file being written), its sidecar ``.NAME.part.json`` (where its bytes
came from, for a resume) and ``.NAME.tmp`` (a small file written atomically).

What ``gc`` may remove (:func:`collectable`) and what ``verify`` ignores
(:func:`is_temporary`) are decided here and nowhere else, so a new kind of result file
is one line: add its name to :data:`archiver.models.RESULT_FILES` (a field of Akool's
answer) or, for a family with a counter (``upscaled-1.png``, ``upscaled-2.png``...), a
pattern to :data:`RESULT_FAMILIES`. Backends never decide by name what is theirs.

The top of an archive holds no items, only the archiver's own machinery: write probes
(``.archiver-probe-<hex>``, S3's open check; :func:`is_probe`, collected by ``gc`` once
old), the lease folder (``.archiver-lease/``), lock files, the serve journal, and the
pages ``archiver index`` publishes (``index.html``, ``index-2.html``...; :func:`is_index_page`).
Ids never start with a dot and never hold one, so none of these can be taken for an item,
and ``gc`` removes none of them but old probes.
"""

from __future__ import annotations

import re

from ..akool.families import FAMILIES
from ..models import RESULT_FILES
from ..validate import KIND_EXTENSIONS

RECORD_NAME = "archive.json"
INFO_NAME = "info.json"
SUMS_NAME = "SHA256SUMS"
#: The files every committed item has besides its results.
METADATA_NAMES = frozenset({INFO_NAME, SUMS_NAME, RECORD_NAME})

#: Result files by exact name (from the fields of Akool's answer).
RESULT_NAMES = frozenset(name for _, name in RESULT_FILES)


def _role_pattern(role: str, kinds: tuple[str, ...], numbered: bool) -> re.Pattern[str]:
    stem = re.escape(role) + (r"-[1-9][0-9]{0,2}" if numbered else "")
    extensions = "|".join(sorted({re.escape(KIND_EXTENSIONS[k]) for k in kinds}))
    return re.compile(f"{stem}\\.(?:{extensions})")


#: Result files by pattern: a role of a result family with the extension of one of its
#: content kinds (``image.png``, ``upscaled-2.webp``, ``result.mp4``, ``audio.m4a``).
RESULT_FAMILIES: tuple[re.Pattern[str], ...] = tuple(
    _role_pattern(role.name, role.kinds, role.numbered)
    for family in FAMILIES.values() for role in family.roles if role.kinds)
#: The roles themselves: a file whose kind its bytes decide is written under its role's
#: temporary name (``.image.part``) and gets its extension at commit.
_ROLES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(re.escape(role.name) + (r"-[1-9][0-9]{0,2}" if role.numbered else ""))
    for family in FAMILIES.values() for role in family.roles if role.kinds)

TEMP_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"
SMALL_SUFFIX = ".tmp"
_TEMPORARY_SUFFIXES = (SIDECAR_SUFFIX, TEMP_SUFFIX, SMALL_SUFFIX)

#: The first page of the archive's index; the others are ``index-<n>.html``, n >= 2.
INDEX_NAME = "index.html"
_INDEX_PAGE = re.compile(r"index(?:-([1-9][0-9]*))?\.html")

#: The write probe a backend's open() may leave at the top (``<prefix>.archiver-probe-<hex>``).
PROBE_PREFIX = ".archiver-probe-"


def temp_name(name: str) -> str:
    """The temporary name a file has until its item commits: hidden, marked partial."""
    return f".{name}{TEMP_SUFFIX}"


def sidecar_name(name: str) -> str:
    """The sidecar of :func:`temp_name`: where the partial bytes came from."""
    return f".{name}{SIDECAR_SUFFIX}"


def small_temp_name(name: str) -> str:
    """The temporary of a small file written in one go (``.info.json.tmp``)."""
    return f".{name}{SMALL_SUFFIX}"


def is_temporary(name: str) -> bool:
    """Whether *name* is a writer's temporary: ``.video.mp4.part``, its sidecar
    ``.video.mp4.part.json``, ``.info.json.tmp``. Never part of an archived item."""
    return name.startswith(".") and name.endswith(_TEMPORARY_SUFFIXES)


def temporary_of(name: str) -> str | None:
    """The name *name* is a temporary of (``.video.mp4.part`` -> ``video.mp4``), or None."""
    if not name.startswith("."):
        return None
    for suffix in _TEMPORARY_SUFFIXES:  # the sidecar's suffix first: it ends in the other
        if name.endswith(suffix):
            return name[1:-len(suffix)] or None
    return None


def is_result_name(name: str) -> bool:
    """Whether *name* is a result file's (``video.mp4``, a family member)."""
    return name in RESULT_NAMES or any(p.fullmatch(name) for p in RESULT_FAMILIES)


def is_item_name(name: str) -> bool:
    """Whether a committed item may hold a file named *name*."""
    return name in METADATA_NAMES or is_result_name(name)


def collectable(name: str) -> bool:
    """Whether ``gc`` may remove an entry named *name* from an uncommitted id's folder:
    a name the archiver writes - a result or metadata file, or a temporary of an item's
    file. Never anything else: a prefix or root shared with other data keeps it."""
    if name == RECORD_NAME:
        return False  # its presence makes the folder committed: never collected
    if is_item_name(name):
        return True
    of = temporary_of(name)
    return of is not None and (is_item_name(of) or any(p.fullmatch(of) for p in _ROLES))


def is_probe(name: str) -> bool:
    """Whether a name at the top of the archive is a write probe's."""
    return name.startswith(PROBE_PREFIX)


def index_page_name(number: int) -> str:
    """The name of page *number* (1-based) of the index: ``index.html``, ``index-2.html``."""
    return INDEX_NAME if number == 1 else f"index-{number}.html"


def index_page_number(name: str) -> int | None:
    """The page number of an index page's name at the top of the archive, else None."""
    match = _INDEX_PAGE.fullmatch(name)
    if match is None:
        return None
    number = int(match.group(1) or 1)
    return number if number >= 2 or match.group(1) is None else None


def is_index_page(name: str) -> bool:
    """Whether a name at the top of the archive is a page of ``archiver index``."""
    return index_page_number(name) is not None
