"""The exit statuses of the ``archiver`` command, in one place.

The README's "Exit statuses" table is the contract; scripts and systemd units act on
these numbers (``SuccessExitStatus=3 75``), so a value never changes. The codes above 64
are the BSD ``sysexits.h`` ones where one fits, and ``128 + signal`` for a run stopped
by a signal, as shells report it.
"""

from __future__ import annotations

import enum
import signal


class ExitStatus(enum.IntEnum):
    """How a command ended. An ``int``: ``sys.exit`` and JSON take it as is."""

    #: Every id is archived (now or earlier); verify: intact; serve: stopped on request.
    OK = 0
    #: At least one id failed or expired; verify: a problem found; gc: a removal failed.
    FAILED = 1
    #: Nothing was attempted: usage, configuration, manifest, credential or storage error.
    USAGE = 2
    #: None failed, but some jobs were not finished by ``polling.deadline``: run again later.
    PENDING = 3
    #: EX_UNAVAILABLE: the Akool API did not answer (``api.unavailable_after`` requests
    #: in a row, each after its retries): the run stopped polling, unfinished ids are
    #: pending; try again later. Not 75: a lock held is routine, an API unreachable for
    #: hours (or a wrong ``api.base_url``, a firewall) is for an operator to see.
    UNAVAILABLE = 69
    #: EX_SOFTWARE: an unexpected error (a bug); ``--debug`` shows the traceback.
    SOFTWARE = 70
    #: EX_IOERR: the run is over and the archive fine, but ``--report`` /
    #: ``--metrics-file`` could not be written; a pipeline must not read a stale file.
    IOERR = 74
    #: EX_TEMPFAIL: another run holds the lock or lease (or took this run's lease over);
    #: cron simply tries again next time.
    TEMPFAIL = 75
    #: Stopped by SIGINT (Ctrl-C).
    INTERRUPTED = 128 + signal.SIGINT
    #: Stopped by SIGTERM.
    TERMINATED = 128 + signal.SIGTERM

    @classmethod
    def for_signal(cls, signum: int) -> ExitStatus:
        """The status of a run stopped by *signum* (SIGINT or SIGTERM)."""
        return cls(128 + signum)
