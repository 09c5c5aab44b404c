"""The seam between the stand-in and Akool's result families.

A :class:`Family` says everything family-specific about serving one: its lookup endpoint
(path, method, how ids are passed, one id or several), the file kinds a job of it may
have and how they are made, how one job's ``data`` (or ``data.result[]`` entry) is
rendered, and what its webhook callbacks say. Everything else - auth, the envelope,
faults, the rate limit, status progression, file serving - is shared. Adding a family is
one small module defining a ``Family`` and one line in ``server.FAMILIES``.

How ids arrive and what the answer looks like:

- single (``batched=False``): ``GET path?<id_param>=<id>``; ``data`` is the job's
  rendering; an unknown id is answered code 1008.
- batched (``batched=True``): the ids comma-separated, in the query (``GET``) or as a
  JSON string in the body (``POST {"<id_param>": "a,b"}``); ``data`` is
  ``{"result": [...]}`` with one rendering per known id, in request order; ids unknown to
  the stand-in (or of another family) are simply missing, as Akool leaves them out.

Either way a request is one lookup for the account's rate limit, and the first job in it
with a queued API fault (or a business code) answers that instead, for the whole request.

Files: a job's *result* files are the kinds its scenario lists (``JobScenario.files``),
shown by URL once it succeeded; its *input* files (:attr:`Family.inputs`, such as the
image an image-to-video job started from) are shown from its first answer on, and are
not results: an archiver must leave them alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from archiver.testing.standin.content import File
from archiver.testing.standin.jobs import JobScenario, JobView

#: Builds one job's files: ``(job_id, scenario, create_time_ms) -> {kind: File}``, for
#: each result kind in ``scenario.files`` and each of the family's input kinds.
FileMaker = Callable[[str, JobScenario, int], dict[str, File]]
#: Renders one job for one answer: its ``data`` (single) or its ``data.result[]`` entry.
Renderer = Callable[[JobView], dict[str, Any]]


def _no_callback_type(scenario: JobScenario) -> str | None:
    return None


def error_code_and_reason(scenario: JobScenario) -> dict[str, Any]:
    """``error_code`` and ``error_reason``: what a failed job says in most families."""
    return {"error_code": scenario.error_code, "error_reason": scenario.error_reason}


@dataclass(frozen=True)
class Family:
    """One Akool result family, as the stand-in serves it."""

    #: The name ``JobScenario.family`` picks it by (``"video"``).
    name: str
    #: Path of the lookup endpoint.
    path: str
    #: The query parameter (``GET``) or JSON body key (``POST``) carrying the id(s).
    id_param: str
    #: Result file kind -> its default file name under ``/files/<id>/``
    #: (``{"video": "video.mp4"}``). A kind has the same default name in every family; a
    #: job's own names may differ (:attr:`names`, ``JobScenario.file_names``).
    files: Mapping[str, str]
    #: Renders one job (see :data:`Renderer`).
    render: Renderer
    #: Makes one job's files (see :data:`FileMaker`).
    make_files: FileMaker
    #: ``"GET"`` (ids in the query) or ``"POST"`` (ids in a JSON body).
    method: Literal["GET", "POST"] = "GET"
    #: Several comma-separated ids per request, answered as ``data.result[]``.
    batched: bool = False
    #: The result kinds of a job whose scenario keeps ``JobScenario.files`` at its
    #: default, ``("video",)``, when the family has no ``"video"`` kind.
    default_files: tuple[str, ...] = ("video",)
    #: Input file kind -> default file name: files every job has and every answer points
    #: at, which are not results.
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: A job's file names (kind -> name, results and inputs), when they depend on its
    #: scenario (an image's extension on its format); ``None``: :attr:`files` and
    #: :attr:`inputs` as they are.
    names: Callable[[JobScenario], Mapping[str, str]] | None = None
    #: Raises ``ValueError`` for a scenario the family cannot play (beyond the checks
    #: every family shares).
    check: Callable[[JobScenario], None] | None = None
    #: The result kinds whose URL a success callback carries as ``url``: the first the
    #: job has.
    callback_files: tuple[str, ...] = ()
    #: The ``type`` a callback of the job carries (``None``: none), unless its scenario
    #: says otherwise (``JobScenario.callback_type``).
    callback_type: Callable[[JobScenario], str | None] = _no_callback_type
    #: What a failure callback carries besides ``_id``, ``status`` and ``type``.
    failure_fields: Callable[[JobScenario], dict[str, Any]] = error_code_and_reason

    def file_name(self, name: str) -> str:
        """Accept a file kind (``video``) or default name (``video.mp4``); return the
        default name."""
        every = {**self.files, **self.inputs}
        if name in every:
            return every[name]
        if name in every.values():
            return name
        raise ValueError(f"unknown file {name!r}; expected one of {sorted(every)}")

    def job_names(self, scenario: JobScenario) -> dict[str, str]:
        """Kind -> file name for one job: results and inputs, with the scenario's own
        names (``JobScenario.file_names``) last."""
        names = dict(self.names(scenario)) if self.names is not None else {
            **self.files, **self.inputs}
        names.update(scenario.file_names)
        return names
