"""The seam between the stand-in and Akool's result families.

A :class:`Family` says everything family-specific about serving one: its lookup endpoint
(path, method, how ids are passed, one id or several), the file kinds a job of it may
have and how they are made, and how one job's ``data`` (or ``data.result[]`` entry) is
rendered. Everything else - auth, the envelope, faults, the rate limit, status
progression, file serving - is shared. Adding a family is one small module defining a
``Family`` and one line in ``server.FAMILIES``.

How ids arrive and what the answer looks like:

- single (``batched=False``): ``GET path?<id_param>=<id>``; ``data`` is the job's
  rendering; an unknown id is answered code 1008.
- batched (``batched=True``): the ids comma-separated, in the query (``GET``) or as a
  JSON string in the body (``POST {"<id_param>": "a,b"}``); ``data`` is
  ``{"result": [...]}`` with one rendering per known id, in request order; ids unknown to
  the stand-in (or of another family) are simply missing, as Akool leaves them out.

Either way a request is one lookup for the account's rate limit, and the first job in it
with a queued API fault (or a business code) answers that instead, for the whole request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from archiver.testing.standin.content import File
from archiver.testing.standin.jobs import JobScenario, JobView

#: Builds one job's files: ``(job_id, scenario, create_time_ms) -> {file name: File}``.
FileMaker = Callable[[str, JobScenario, int], dict[str, File]]
#: Renders one job for one answer: its ``data`` (single) or its ``data.result[]`` entry.
Renderer = Callable[[JobView], dict[str, Any]]


@dataclass(frozen=True)
class Family:
    """One Akool result family, as the stand-in serves it."""

    #: The name ``JobScenario.family`` picks it by (``"video"``).
    name: str
    #: Path of the lookup endpoint.
    path: str
    #: The query parameter (``GET``) or JSON body key (``POST``) carrying the id(s).
    id_param: str
    #: File kind -> file name under ``/files/<id>/`` (``{"video": "video.mp4"}``).
    #: A kind names the same file name in every family.
    files: Mapping[str, str]
    #: Renders one job (see :data:`Renderer`).
    render: Renderer
    #: Makes one job's files (see :data:`FileMaker`).
    make_files: FileMaker
    #: ``"GET"`` (ids in the query) or ``"POST"`` (ids in a JSON body).
    method: Literal["GET", "POST"] = "GET"
    #: Several comma-separated ids per request, answered as ``data.result[]``.
    batched: bool = False
    #: The kind whose URL a webhook callback carries once the job succeeded.
    callback_file: str | None = None

    def file_name(self, name: str) -> str:
        """Accept a file kind (``video``) or name (``video.mp4``); return the name."""
        if name in self.files:
            return self.files[name]
        if name in self.files.values():
            return name
        raise ValueError(f"unknown file {name!r}; expected one of {sorted(self.files)}")
