"""The ``archiver`` command: parse, load, run, map errors to messages and exit statuses.

- :mod:`.parsing`: the argparse grammar of every command and flag;
- :mod:`.commands`: :func:`main` and one function per command, each returning an
  :class:`~archiver.exitstatus.ExitStatus` (the table is in ``archiver/exitstatus.py``
  and the README);
- :mod:`.summary`: the text a person reads (summaries, sizes, terminal-safe text);
- :mod:`.logs`: log format and level, and the filter that masks secrets;
- :mod:`.outputs`: ``--report`` and ``--metrics-file``, checked first, written last.

``archiver.cli:main`` is the console script; ``python -m archiver`` calls the same.
"""

from .commands import main

__all__ = ["main"]
