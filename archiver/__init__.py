"""archiver: save Akool generation results before they expire.

The library entry points are :func:`archiver.run.archive` (async) and
:func:`archiver.run.archive_sync`; the ``archiver`` command is a thin layer over them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
