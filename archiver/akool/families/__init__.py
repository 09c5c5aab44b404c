"""Akool's result families, one module each; a new family is one module and one line
in :data:`FAMILIES`.

Every family has its poll endpoint and the shape of its answer (:class:`Family`); the
client (:mod:`archiver.akool.client`) asks ``job_info(id, family)`` and batches the
families whose endpoint takes several ids.
"""

from __future__ import annotations

from .audio import AUDIO
from .base import Family, Role
from .faceswap import FACESWAP
from .image import IMAGE
from .image2video import IMAGE2VIDEO
from .video import VIDEO

#: Every family by name, in this order (manifests, reports and the demo follow it).
FAMILIES: dict[str, Family] = {f.name: f for f in (VIDEO, IMAGE, AUDIO, FACESWAP, IMAGE2VIDEO)}
#: Manifest section -> family name.
SECTIONS: dict[str, str] = {f.section: f.name for f in FAMILIES.values()}
#: The family of items that do not say (old manifests and records).
DEFAULT_FAMILY = "video"

__all__ = ["DEFAULT_FAMILY", "FAMILIES", "SECTIONS", "Family", "Role", "family"]


def family(name: str) -> Family:
    """The family *name*; a ValueError naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown result family {name!r} (expected one of "
                         f"{', '.join(FAMILIES)})") from None
