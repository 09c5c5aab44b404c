"""Fetching result files: streamed, hashed and checked while streaming, resumed when cut.

The package, bottom up:

- :mod:`.connections` - the clean-connection guard: a file connection is pooled only
  when nothing followed a body (aiohttp internals, subclassed: the reason aiohttp is
  pinned below 3.15);
- :mod:`.transport` - :class:`~.transport.Transport`, the file session: URL, redirect
  and address policy, the bandwidth limit, a public :meth:`~.transport.Transport.get`;
- :mod:`.resume` - deciding the resume: which kept bytes may be built on, the validator
  that guards them, what an answer's status allows;
- :mod:`.pipe` - from the network's reads to storage, coalesced, one write behind;
- :mod:`.single` and :mod:`.segmented` (with :mod:`.readback`) - the two fetchers, on
  the transport's public API, given one :class:`~.attempt.Target` each;
- :mod:`.downloader` - :class:`Downloader`: retries, one attempt (decide the resume,
  transfer, finish), HEAD probes.
"""

from .attempt import TransferListener
from .downloader import Downloader

__all__ = ["Downloader", "TransferListener"]
