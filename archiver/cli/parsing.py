"""The command line's grammar: every command, argument and flag, and nothing else."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn, TypeAlias

from .. import __version__
from ..config import DEFAULT_CONFIG_PATH

#: --from-journal without a path: the journal `archiver serve` uses for this configuration.
DEFAULT_JOURNAL = Path("\0default-journal")

_MANIFEST_HELP = ("YAML list of video_model_ids: a file, - (standard input), "
                  "s3://BUCKET/KEY or an https:// URL")


_TARGET_HELP = ("only the ids of this manifest (a file, -, s3://BUCKET/KEY or an https:// "
                "URL); or a local archive root DIR, as --root DIR")


class CommandLineError(Exception):
    """argparse refused the command line; :func:`~.commands.main` says so (as text,
    or as JSON under ``--log-format json``) and exits 2."""

    def __init__(self, message: str, prog: str, usage: str) -> None:
        super().__init__(f"{prog}: {message}")
        #: What argparse itself prints: the usage, then ``PROG: error: MESSAGE``.
        self.text = f"{usage}{prog}: error: {message}\n"


class _Parser(argparse.ArgumentParser):
    # argparse prints its own error and exits; raising instead lets main() say it in the
    # log format asked for, and give --json its document. Subcommands inherit the class.
    def error(self, message: str) -> NoReturn:
        raise CommandLineError(message, self.prog, self.format_usage())


def build_parser() -> argparse.ArgumentParser:
    """The ``archiver`` parser; ``args.command`` names the command chosen."""
    parser = _Parser(
        prog="archiver",
        description="Archive Akool generation results before they expire (7 days).",
    )
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_verify(commands)
    _add_status(commands)
    _add_gc(commands)
    _add_index(commands)
    _add_serve(commands)
    _add_demo(commands)
    return parser


# argparse's subparsers action is a private generic class: name it only for the checker.
_Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"


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
    run.add_argument("--index", action="store_true",
                     help="refresh the archive's index.html at the end (as `archiver "
                          "index`); a failure to write it is a warning")
    _add_output_flags(run, json_help="print the run report (as --report writes it) on "
                                     "stdout instead of the summary")


def _add_verify(commands: _Commands) -> None:
    verify = commands.add_parser(
        "verify", help="check archived files against their records (size, SHA-256)")
    verify.add_argument("manifest", nargs="?", metavar="MANIFEST|DIR",
                        help=_TARGET_HELP + " (default: everything archived)")
    _add_config_flag(verify)
    _add_root_flag(verify)
    _add_shard_flag(verify)
    verify.add_argument("--deep", action="store_true",
                        help="S3: download and re-hash every object instead of comparing "
                             "S3's own checksums")
    _add_output_flags(verify)


def _add_status(commands: _Commands) -> None:
    status = commands.add_parser(
        "status", help="which ids are archived, partially downloaded or absent")
    status.add_argument("manifest", nargs="?", metavar="MANIFEST|DIR",
                        help=_TARGET_HELP + " (default: every archived id)")
    _add_config_flag(status)
    _add_root_flag(status)
    _add_shard_flag(status)
    status.add_argument("--remote", action="store_true",
                        help="also ask the API for each job's current status")
    _add_output_flags(status)


def _add_gc(commands: _Commands) -> None:
    gc = commands.add_parser(
        "gc", help="remove files left by attempts that never committed (old enough only)")
    gc.add_argument("manifest", nargs="?", metavar="MANIFEST|DIR",
                    help=_TARGET_HELP + " (default: every id in the archive)")
    _add_config_flag(gc)
    _add_root_flag(gc)
    gc.add_argument("--min-age", metavar="DURATION",
                    help="only ids whose every file is older than this (e.g. 36h, 2d; "
                         "default 24h; at least downloads.item_timeout)")
    gc.add_argument("--dry-run", action="store_true",
                    help="list what would be removed; remove nothing")
    _add_output_flags(gc)


def _add_index(commands: _Commands) -> None:
    index = commands.add_parser(
        "index", help="write index.html into the archive: every archived item, with "
                      "players, sizes and SHA-256 (static, works offline)")
    index.add_argument("dir", nargs="?", type=Path, metavar="DIR",
                       help="a local archive root (default: the configuration's storage)")
    _add_config_flag(index)
    index.add_argument("--per-page", type=_positive, default=1000, metavar="N",
                       help="items per page (default 1000): index.html, index-2.html...")
    _add_output_flags(index)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


def _add_serve(commands: _Commands) -> None:
    serve = commands.add_parser(
        "serve", help="receive Akool's webhooks and archive each job as it finishes")
    _add_config_flag(serve)
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="address to listen on (default: webhook.listen, 127.0.0.1:8080)")
    # No --json: a server has no final document. --log-format json and GET /metrics are
    # its machine-readable side.
    _add_output_flags(serve, json_help=None)


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
    # None: not given (./archiver.yaml, which --root may do without).
    parser.add_argument("-c", "--config", type=Path, default=None,
                        help=f"configuration file, - for stdin (default: "
                             f"./{DEFAULT_CONFIG_PATH})")


def _add_root_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help="a local archive root, instead of the configuration's storage "
                             "(no configuration file needed)")


_JSON_HELP = "print one JSON document on stdout (schema in the README) instead of the text"


def _add_output_flags(parser: argparse.ArgumentParser,
                      json_help: str | None = _JSON_HELP) -> None:
    level = parser.add_mutually_exclusive_group()
    level.add_argument("-q", "--quiet", action="store_true",
                       help="print only errors (one line per failed or expired id)")
    level.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    if json_help is not None:
        parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object per line on stderr (log lines and errors)")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and tracebacks for unexpected errors")
