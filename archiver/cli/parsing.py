"""The command line's grammar: every command, argument and flag, and nothing else."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

from .. import __version__
from ..config import DEFAULT_CONFIG_PATH

#: --from-journal without a path: the journal `archiver serve` uses for this configuration.
DEFAULT_JOURNAL = Path("\0default-journal")

_MANIFEST_HELP = ("YAML list of video_model_ids: a file, - (standard input), "
                  "s3://BUCKET/KEY or an https:// URL")


def build_parser() -> argparse.ArgumentParser:
    """The ``archiver`` parser; ``args.command`` names the command chosen."""
    parser = argparse.ArgumentParser(
        prog="archiver",
        description="Archive Akool generation results before they expire (7 days).",
    )
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_verify(commands)
    _add_status(commands)
    _add_gc(commands)
    _add_serve(commands)
    _add_demo(commands)
    return parser


# argparse's subparsers action is a private generic class: name it only for the checker.
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_run(commands: _Commands) -> None:
    run = commands.add_parser("run", help="archive the jobs of a manifest")
    run.add_argument("manifest", metavar="MANIFEST", nargs="?", help=_MANIFEST_HELP)
    run.add_argument("--from-journal", nargs="?", const=DEFAULT_JOURNAL, type=Path,
                     metavar="JOURNAL",
                     help="instead of a manifest: the ids `archiver serve` accepted and has "
                          "not finished (default: its journal for this configuration)")
    _add_config_flag(run)
    _add_shard_flag(run)
    run.add_argument("--report", type=Path, metavar="PATH",
                     help="write a JSON report of the run (each id's outcome, files, errors); "
                          "- for stdout (the summary then goes to stderr)")
    run.add_argument("--metrics-file", type=Path, metavar="PATH",
                     help="write Prometheus metrics for node_exporter's textfile collector; "
                          "- for stdout")
    run.add_argument("--dry-run", action="store_true",
                     help="poll and report what would be downloaded; write nothing")
    run.add_argument("--pending-ok", action="store_true",
                     help="exit 0 instead of 3 when ids are only pending (none failed), "
                          "for schedulers that count any other status as a failure; the "
                          "report and metrics still say 3")
    _add_output_flags(run)


def _add_verify(commands: _Commands) -> None:
    verify = commands.add_parser(
        "verify", help="check archived files against their records (size, SHA-256)")
    verify.add_argument("manifest", nargs="?", metavar="MANIFEST",
                        help="only these ids (default: everything archived)")
    _add_config_flag(verify)
    _add_shard_flag(verify)
    verify.add_argument("--deep", action="store_true",
                        help="S3: download and re-hash every object instead of comparing "
                             "S3's own checksums")
    _add_output_flags(verify)


def _add_status(commands: _Commands) -> None:
    status = commands.add_parser(
        "status", help="which ids are archived, partially downloaded or absent")
    status.add_argument("manifest", metavar="MANIFEST", help=_MANIFEST_HELP)
    _add_config_flag(status)
    _add_shard_flag(status)
    status.add_argument("--remote", action="store_true",
                        help="also ask the API for each job's current status")
    _add_output_flags(status)


def _add_gc(commands: _Commands) -> None:
    gc = commands.add_parser(
        "gc", help="remove files left by attempts that never committed (old enough only)")
    gc.add_argument("manifest", nargs="?", metavar="MANIFEST",
                    help="only these ids (default: every id in the archive)")
    _add_config_flag(gc)
    gc.add_argument("--min-age", metavar="DURATION",
                    help="only ids whose every file is older than this (e.g. 36h, 2d; "
                         "default 24h; at least downloads.item_timeout)")
    gc.add_argument("--dry-run", action="store_true",
                    help="list what would be removed; remove nothing")
    _add_output_flags(gc)


def _add_serve(commands: _Commands) -> None:
    serve = commands.add_parser(
        "serve", help="receive Akool's webhooks and archive each job as it finishes")
    _add_config_flag(serve)
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="address to listen on (default: webhook.listen, 127.0.0.1:8080)")
    _add_output_flags(serve)


def _add_demo(commands: _Commands) -> None:
    demo = commands.add_parser(
        "demo", help="archive sample jobs from a built-in Akool stand-in (no account needed)")
    demo.add_argument("dir", nargs="?", type=Path, default=Path("demo-archive"),
                      help="where to put the archive (default: ./demo-archive)")
    demo.add_argument("--serve", action="store_true",
                      help="show `archiver serve`: the stand-in sends signed webhooks")
    _add_output_flags(demo)


def _add_shard_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", metavar="K/N",
                        help="only the ids of shard K of N (0-based; auto/N: K from "
                             "JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX or "
                             "CLOUD_RUN_TASK_INDEX)")


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help=f"configuration file (default: ./{DEFAULT_CONFIG_PATH})")


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    level = parser.add_mutually_exclusive_group()
    level.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    level.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object per log line")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and tracebacks for unexpected errors")
