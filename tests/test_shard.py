"""--shard K/N: each id belongs to exactly one shard, and every command honours it."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import yaml

from archiver.errors import UsageError
from archiver.fleet.shard import Shard, api_share, parse_shard, shard_of
from archiver.manifest import Manifest
from archiver.storage.local.flock import RunLock

from .conftest import CLI_ENV, run_cli, write_yaml

IDS = [f"shardid{n:03d}" for n in range(24)]


def test_every_id_in_exactly_one_shard_by_sha256_prefix():
    """The owner is the first 8 bytes of SHA-256, big-endian, mod N; shards partition ids."""
    ids = [f"{n:024x}" for n in range(2000)]
    for count in (1, 2, 3, 4, 7):
        owners = {i: [k for k in range(count) if Shard(k, count).owns(i)] for i in ids}
        assert all(len(found) == 1 for found in owners.values())
        for item in ids[:50]:
            digest = hashlib.sha256(item.encode()).digest()
            assert owners[item] == [int.from_bytes(digest[:8], "big") % count]
        sizes = [sum(1 for o in owners.values() if o == [k]) for k in range(count)]
        assert min(sizes) > len(ids) / count * 0.8  # a real hash: no empty shard
    manifest = Manifest.from_ids(reversed(ids[:100]))
    picked = Shard(1, 3).select(manifest)
    assert [i.id for i in picked] == [i for i in reversed(ids[:100]) if shard_of(i, 3) == 1]


@pytest.mark.parametrize(("spec", "env", "expected"), [
    ("2/4", {}, Shard(2, 4)),
    ("auto/4", {"JOB_COMPLETION_INDEX": "3"}, Shard(3, 4)),
    ("auto/8", {"AWS_BATCH_JOB_ARRAY_INDEX": "5"}, Shard(5, 8)),
    ("auto/2", {"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "2"}, Shard(1, 2)),
])
def test_parse_shard(spec, env, expected):
    """K/N is taken literally; auto/N reads the index the batch engine sets."""
    assert parse_shard(spec, env) == expected


@pytest.mark.parametrize(("spec", "env", "words"), [
    ("auto/4", {}, "JOB_COMPLETION_INDEX"),
    ("4/4", {}, "not below N=4"),
    ("auto/4", {"JOB_COMPLETION_INDEX": "4"}, "not below N=4"),
    ("1/0", {}, "at least 1"),
    ("-1/4", {}, "expected K/N"),
    ("two/4", {}, "expected K/N"),
    ("auto/4", {"JOB_COMPLETION_INDEX": "x"}, "not a task index"),
    ("auto/4", {"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "3"}, "must agree"),
])
def test_bad_shard_is_a_usage_error(spec, env, words):
    """Malformed specs, an index out of range, no index in the environment: named."""
    with pytest.raises(UsageError, match=words):
        parse_shard(spec, env)


def test_cli_bad_shard_exits_2_with_one_line(workdir, served):
    """No index in the environment: exit 2, one line on stderr, no request made."""
    standin, _ = served
    write_yaml(workdir / "videos.yaml", IDS)
    env = {**CLI_ENV, "JOB_COMPLETION_INDEX": "", "AWS_BATCH_JOB_ARRAY_INDEX": "",
           "CLOUD_RUN_TASK_INDEX": ""}
    for spec in ("auto/4", "4/4"):
        result = run_cli("run", "videos.yaml", "--shard", spec, cwd=workdir, env=env)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("archiver: error: --shard")
    assert standin.api_calls == 0


def test_shards_archive_disjoint_sets_once_with_report_and_metrics(workdir, served):
    """Four shard runs archive every id once; report, metrics, status and verify follow."""
    standin, _ = served
    for item in IDS:
        standin.add_job(item)
    write_yaml(workdir / "videos.yaml", IDS)
    env = {**CLI_ENV, "JOB_COMPLETION_INDEX": "2"}
    for k in range(4):
        spec = "auto/4" if k == 2 else f"{k}/4"
        result = run_cli("run", "videos.yaml", "--shard", spec, "--report", f"r{k}.json",
                         "--metrics-file", f"m{k}.prom", cwd=workdir, env=env)
        assert result.returncode == 0, result.stderr
        report = json.loads((workdir / f"r{k}.json").read_text())
        assert report["shard"] == f"{k}/4"
        mine = sorted(i for i in IDS if shard_of(i, 4) == k)
        assert sorted(i["id"] for i in report["items"]) == mine
        metrics = (workdir / f"m{k}.prom").read_text()
        assert f'archiver_exit_status{{shard="{k}",shards="4"}} 0' in metrics
        assert (f'archiver_items{{shard="{k}",shards="4",outcome="archived",'
                f'family="video"}} {len(mine)}') in metrics
    assert sorted(p.name for p in (workdir / "archive").iterdir() if not
                  p.name.startswith(".")) == sorted(IDS)
    assert set(standin.polls.values()) == {1}
    assert set(standin.file_requests.values()) == {1}

    status = run_cli("status", "videos.yaml", "--shard", "1/4", cwd=workdir, env=CLI_ENV)
    listed = sorted(line.split()[0] for line in status.stdout.splitlines())
    assert listed == sorted(i for i in IDS if shard_of(i, 4) == 1)
    verify = run_cli("verify", "--shard", "3/4", cwd=workdir, env=CLI_ENV)
    assert verify.returncode == 0, verify.stderr
    count = sum(1 for i in IDS if shard_of(i, 4) == 3)
    assert f"archiver verify: {count} item(s)" in verify.stdout


def test_local_shards_lock_apart(workdir, served):
    """On local storage each shard has its own flock: shard 0 held, shard 1 still runs."""
    standin, _ = served
    for item in IDS[:6]:
        standin.add_job(item)
    write_yaml(workdir / "videos.yaml", IDS[:6])
    (workdir / "archive").mkdir()
    with RunLock(workdir / "archive" / ".archiver.shard-0-of-2.lock"):
        held = run_cli("run", "videos.yaml", "--shard", "0/2", cwd=workdir, env=CLI_ENV)
        free = run_cli("run", "videos.yaml", "--shard", "1/2", cwd=workdir, env=CLI_ENV)
    assert held.returncode == 75, held.stderr
    assert "another archiver run holds" in held.stderr
    assert free.returncode == 0, free.stderr
    done = {p.name for p in Path(workdir / "archive").iterdir() if (p / "archive.json").exists()}
    assert done == {i for i in IDS[:6] if shard_of(i, 2) == 1}


async def test_library_archive_takes_only_its_shard(make_config, standin, tmp_path):
    """archive(..., shard=) archives that shard's ids of a whole manifest, and says so."""
    from archiver.run import archive

    for item in IDS[:8]:
        standin.add_job(item)
    result = await archive(make_config(), Manifest.from_ids(IDS[:8]), shard=Shard(0, 2))
    assert result.shard == "0/2"
    assert sorted(i.id for i in result.items) == sorted(i for i in IDS[:8]
                                                         if shard_of(i, 2) == 0)
    assert (tmp_path / "archive" / ".archiver.shard-0-of-2.lock").exists()


# ------------------------------------------------------- one account's API budget

@pytest.mark.parametrize(("rate", "shard", "expected"), [
    (40.0, Shard(2, 4), 10.0), (10.0, Shard(3, 4), 2.5), (40.0, None, 40.0),
    (40.0, Shard(0, 1), 40.0), (None, Shard(1, 4), None), (None, None, None),
])
def test_api_share_is_the_shards_part_of_the_account(rate, shard, expected):
    """api.requests_per_second is the account's: a shard of N gets 1/N, a whole run all."""
    assert api_share(rate, shard) == expected


def test_api_share_is_logged_once_at_info_for_a_shard(caplog):
    """A shard says its part of the budget once, at info; a whole run, no budget: nothing."""
    with caplog.at_level(logging.INFO, logger="archiver.fleet.shard"):
        api_share(5.0, Shard(1, 8))
        api_share(5.0, None)
        api_share(None, Shard(1, 8))
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "archiver.fleet.shard"]
    assert said == [(logging.INFO, "shard 1/8: at most 0.625 API requests/s, 1/8 of "
                     "api.requests_per_second (5, the account's budget)")]


async def test_library_run_reports_its_share_of_the_budget(make_config, standin):
    """RunResult and the JSON report carry the run's API budget next to its shard."""
    from archiver.report import build_report
    from archiver.run import archive

    for item in IDS[:8]:
        standin.add_job(item)
    config = make_config(api={"requests_per_second": 10})
    sharded = await archive(config, Manifest.from_ids(IDS[:8]), shard=Shard(1, 4))
    whole = await archive(config, Manifest.from_ids(IDS[:8]))
    unlimited = await archive(make_config(), Manifest.from_ids(IDS[:8]), shard=Shard(1, 4))
    assert [(r.shard, r.api_requests_per_second) for r in (sharded, whole, unlimited)] == \
        [("1/4", 2.5), (None, 10.0), ("1/4", None)]
    report = build_report(sharded, 0)
    assert (report["shard"], report["api_requests_per_second"]) == ("1/4", 2.5)
    assert json.loads(json.dumps(report))["api_requests_per_second"] == 2.5


def test_cli_dry_run_of_a_shard_uses_and_reports_its_share(workdir, served):
    """--dry-run --shard K/N: the share is logged once (-v) and in the report."""
    standin, _ = served
    for item in IDS[:8]:
        standin.add_job(item)
    write_yaml(workdir / "videos.yaml", IDS[:8])
    config = yaml.safe_load((workdir / "archiver.yaml").read_text())
    config["api"]["requests_per_second"] = 10
    write_yaml(workdir / "archiver.yaml", config)
    result = run_cli("run", "videos.yaml", "--dry-run", "--shard", "1/4", "--report", "r.json",
                     "-v", cwd=workdir, env=CLI_ENV)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "API requests/s" in line]
    assert len(said) == 1 and "shard 1/4: at most 2.5 API requests/s" in said[0], \
        result.stderr
    report = json.loads((workdir / "r.json").read_text())
    assert (report["shard"], report["api_requests_per_second"]) == ("1/4", 2.5)
    assert not (workdir / "archive").exists() or not any((workdir / "archive").iterdir())
