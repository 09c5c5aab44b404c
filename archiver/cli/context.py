"""What every command shares: :class:`Done`, the shard, and loading its inputs
(configuration, archive root, manifest) before anything touches the network or the
archive."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import (
    DEFAULT_CONFIG_PATH,
    SECTIONS,
    STDIN,
    Config,
    LocalStorageConfig,
    StorageConfig,
    load_config,
)
from ..errors import UsageError
from ..fleet.shard import Shard, parse_shard
from ..manifest import Manifest
from ..models import RunResult
from ..sources import load_manifest_from
from .logs import install_secret_filter


@dataclass(slots=True)
class Done:
    """What a command did: its exit status and, for ``--json``, its document."""

    status: int
    document: dict[str, Any] | None = None
    #: The run's result (``run`` only): the metrics file needs it.
    result: RunResult | None = None


def shard_text(shard: Shard | None) -> str | None:
    return str(shard) if shard is not None else None


def resolve_shard(args: argparse.Namespace) -> Shard | None:
    """The shard ``--shard`` names, or None (and for the commands without the option)."""
    spec = getattr(args, "shard", None)
    return parse_shard(spec) if spec else None


def load_config_for(args: argparse.Namespace, uses: frozenset[str] = SECTIONS,
                 root: Path | None = None) -> Config:
    """The configuration *args* name, reading only the sections in *uses*.

    With *root* (``--root DIR``), the storage is that local folder, and without ``-c``
    a missing ``./archiver.yaml`` is no error: a local archive needs no configuration.
    """
    path = args.config
    if path is None:
        path = DEFAULT_CONFIG_PATH
        if root is not None and not path.exists():
            return at_root(Config(), root)
        if args.command in ("verify", "status", "gc", "index") and not path.exists():
            raise UsageError(f"{path}: configuration file not found (use -c PATH, or give "
                             "a local archive root: DIR or --root DIR)")
    if str(path) == STDIN and getattr(args, "manifest", None) == STDIN:
        raise UsageError("-c - and MANIFEST - both want standard input: give one of them "
                         "as a file")
    if root is not None:
        uses = uses - {"storage"}
    config = load_config(path, unused=SECTIONS - uses, needed_by=f"archiver {args.command}")
    install_secret_filter(config)
    return at_root(config, root) if root is not None else config


def config_source(args: argparse.Namespace) -> str:
    """The configuration's name in messages (--root may have done without one)."""
    path = args.config or DEFAULT_CONFIG_PATH
    if str(path) == STDIN:
        return "<stdin>"
    return str(path) if args.config is not None or path.exists() else f"{path} (not found)"


def at_root(config: Config, root: Path) -> Config:
    storage = StorageConfig(backend="local", local=LocalStorageConfig(root=root))
    return config.model_copy(update={"storage": storage})


def target(args: argparse.Namespace) -> tuple[str | None, Path | None]:
    """(MANIFEST, archive root) of verify, status and gc: the positional argument may
    be either (a folder is an archive root: no manifest is a folder)."""
    spec: str | None = args.manifest
    root: Path | None = args.root
    if spec is not None and spec != STDIN and "://" not in spec and Path(spec).is_dir():
        if root is not None:
            raise UsageError(f"{spec} is a folder (an archive root) and so is --root {root}: "
                             "give the archive root once")
        root, spec = Path(spec), None
    if root is not None and not root.is_dir():
        raise UsageError(f"--root {root}: no such folder (an archive root is the folder "
                         "that holds one folder per archived id)")
    args.manifest = spec
    return spec, root


def load_manifest(spec: str, config: Config, shard: Shard | None = None) -> Manifest:
    manifest = load_manifest_from(spec, s3=config.storage.s3)
    return shard.select(manifest) if shard is not None else manifest
