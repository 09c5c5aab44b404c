"""The manifest: which Akool jobs to archive.

Two shapes are accepted::

    videos:
      - 64dd92c1f0b6684651e90e09
      - id: 64dd92c1f0b6684651e90e0a
        label: onboarding-es
    images:                       # and audios:, faceswaps:, image2videos:
      - 662a10df4197b3af58532e89

or a bare YAML list of ids (videos). Each section names a result family
(:data:`archiver.akool.families.SECTIONS`) and takes the same entries; an id in two
sections is an error naming both. Every id is checked before any network call, because an id
becomes a folder / key name: ``/``, ``..``, spaces and control characters never get that far.
An id is the text written in the file, even where YAML would read a number
(``000000000000000000000000`` is not 0). YAML anchors and aliases are refused (nested
aliases expand exponentially). A manifest of
200,000 ids is read in a single pass over the parser's events (see ``parse_manifest``).
"""

from .items import ID_PATTERN, Manifest, ManifestItem
from .parse import load_manifest, parse_manifest

__all__ = ["ID_PATTERN", "Manifest", "ManifestItem", "load_manifest", "parse_manifest"]
