"""An in-process stand-in for Akool's result API and its CDN.

:class:`AkoolStandIn` is a small aiohttp server that answers the lookup endpoints of
every Akool result family - video, image, audio, face swap, image-to-video - and
``POST /api/open/v3/getToken`` the way ``akool-api.md`` describes, and serves the
result files those answers point to at ``/files/<id>/<name>``. Each job follows a
:class:`JobScenario`: its family, how many polls until it finishes, how it ends, which
files it has (in which formats, under which names), and which faults (HTTP errors,
HTML pages, connection resets, truncated or stalled downloads) the API and the file
host inject along the way. It also serves Akool's destructive endpoints, counting
every call (``delete_calls``), and records requests to any other path.

It is used by the project's tests, by ``archiver demo`` and by users who want to
test their own pipelines without an Akool account::

    standin = AkoolStandIn(api_key="test-key")
    standin.add_job("64dd92c1f0b6684651e90e09", polls_until_done=2)
    async with standin.serve() as base_url:
        ...  # point the archiver at base_url

or, from synchronous code, ``with standin.run_in_thread() as base_url: ...``.

The package, one concern a module:

- ``server.py``: :class:`AkoolStandIn` (configuration, jobs, serving) and the
  registered :data:`FAMILIES`;
- ``family.py``: :class:`Family`, all a result family has of its own (its lookup
  endpoint, its ``data``, its file kinds, its callbacks); ``video.py``, ``image.py``,
  ``audio.py``, ``faceswap.py`` and ``image2video.py`` are the families, and
  ``samples.py`` has sample jobs of each;
- ``api.py``: what every family's lookups share (envelope, auth, ``getToken``, the
  account's rate limit, API faults);
- ``jobs.py``: :class:`JobScenario` and a job's state and status progression;
- ``content.py`` and ``files.py``: the result files and the CDN serving them (ranges,
  validators, file faults, redirects, the mirror);
- ``deletes.py``: the endpoints that delete results at Akool, served and counted;
- ``faults.py``: the injectable faults; ``records.py``: counters and recorded requests;
  ``serving.py``: running on a socket, or in a thread.
"""

from archiver.testing.standin.api import API_MESSAGES, TOKEN_PATH
from archiver.testing.standin.audio import AUDIO
from archiver.testing.standin.deletes import DESTRUCTIVE
from archiver.testing.standin.faceswap import FACESWAP
from archiver.testing.standin.family import Family
from archiver.testing.standin.faults import ApiFault, FileFault
from archiver.testing.standin.image import IMAGE
from archiver.testing.standin.image2video import IMAGE2VIDEO
from archiver.testing.standin.jobs import JobScenario, JobView, generated_job_id
from archiver.testing.standin.records import DeleteCall, Lookup, RecordedRequest
from archiver.testing.standin.samples import sample_jobs
from archiver.testing.standin.server import FAMILIES, FAMILY_NAMES, AkoolStandIn
from archiver.testing.standin.video import FILE_KINDS, FILE_NAMES, INFO_PATH, VIDEO

__all__ = [
    "API_MESSAGES",
    "AUDIO",
    "DESTRUCTIVE",
    "FACESWAP",
    "FAMILIES",
    "FAMILY_NAMES",
    "FILE_KINDS",
    "FILE_NAMES",
    "IMAGE",
    "IMAGE2VIDEO",
    "INFO_PATH",
    "TOKEN_PATH",
    "VIDEO",
    "AkoolStandIn",
    "ApiFault",
    "DeleteCall",
    "Family",
    "FileFault",
    "JobScenario",
    "JobView",
    "Lookup",
    "RecordedRequest",
    "generated_job_id",
    "sample_jobs",
]
