"""HTML pages the archiver writes or serves: self-contained, escaped, locked down.

- :mod:`.html` - what every page shares: escaping, a strict Content-Security-Policy that
  admits only the page's own inline style and script (by hash), sizes in words;
- :mod:`.index` - the pages of ``archiver index`` (:mod:`archiver.archive.index` reads
  the archive and publishes them).

Nothing here does I/O: a page is a pure function of what it shows, so it is tested as
text and in a real browser (``tests/browser.py``).
"""
