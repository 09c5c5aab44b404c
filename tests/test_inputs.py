"""Configuration and manifest parsing: good input accepted, bad input named precisely."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from archiver.config import load_config, parse_config
from archiver.errors import ConfigError, ManifestError
from archiver.manifest import ManifestItem, load_manifest, parse_manifest

from .conftest import CLI_ENV, run_cli

GOOD_CONFIG = """\
api:
  base_url: https://openapi.akool.com
  api_key: ${AKOOL_TEST_KEY}
polling:
  interval: 10
  max_interval: 120
  deadline: 1800
concurrency:
  polls: 16
  downloads: 8
storage:
  backend: local
  local:
    root: ./archive
"""


def test_example_config_is_valid(monkeypatch):
    """config.example.yaml, shipped in the repository, parses with every key documented."""
    monkeypatch.setenv("AKOOL_API_KEY", "example-key")
    config = load_config(Path(__file__).parent.parent / "config.example.yaml")
    assert config.api.api_key.get_secret_value() == "example-key"


def test_example_config_documents_every_key():
    """Every configuration key (and nested key) appears in config.example.yaml."""
    from pydantic import BaseModel

    from archiver.config import Config

    text = (Path(__file__).parent.parent / "config.example.yaml").read_text()

    def keys(model: type[BaseModel]) -> set[str]:
        found = set()
        for name, info in model.model_fields.items():
            found.add(name)
            for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    found |= keys(arg)
        return found

    missing = sorted(k for k in keys(Config) if f"{k}:" not in text)
    assert missing == []


def test_env_references_are_expanded_and_secret(monkeypatch):
    """${VAR} is read from the environment and the key is masked in repr()."""
    monkeypatch.setenv("AKOOL_TEST_KEY", "sk-very-secret-value")
    config = parse_config(GOOD_CONFIG)
    assert config.api.api_key.get_secret_value() == "sk-very-secret-value"
    assert "sk-very-secret-value" not in repr(config)
    assert config.concurrency.polls == 16 and config.polling.interval == 10.0


def test_unset_env_variable_names_key_and_line(monkeypatch):
    """A missing environment variable is reported with the key and line that use it."""
    monkeypatch.delenv("AKOOL_TEST_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        parse_config(GOOD_CONFIG, source="cfg.yaml")
    assert str(caught.value) == (
        "cfg.yaml:3: api.api_key: environment variable AKOOL_TEST_KEY is not set")


def test_env_default_is_used(monkeypatch):
    """${VAR:-default} falls back to the default."""
    monkeypatch.delenv("AKOOL_NO_SUCH", raising=False)
    config = parse_config("api:\n  api_key: ${AKOOL_NO_SUCH:-fallback-key}\n")
    assert config.api.api_key.get_secret_value() == "fallback-key"


@pytest.mark.parametrize(("text", "expected"), [
    ("api:\n  api_key: k\npolling:\n  intervall: 5\n",
     "cfg.yaml:4: polling.intervall: unknown key"),
    ("api:\n  api_key: k\nconcurrency:\n  polls: many\n", "cfg.yaml:4: concurrency.polls: "),
    ("api:\n  api_key: k\nconcurrency:\n  polls: 0\n",
     "concurrency.polls: Input should be greater"),
    ("polling:\n  interval: 1\n", "cfg.yaml: api: missing value"),
    ("api:\n  base_url: openapi.akool.com\n  api_key: k\n",
     "cfg.yaml:2: api.base_url: must be an http:// or https:// URL"),
    ("api:\n  api_key: k\n  token: t\n", "set only one of api.api_key and api.token"),
    ("api:\n  api_key: k\nstorage:\n  backend: ftp\n", "cfg.yaml:4: storage.backend: "),
    ("api: [1, 2\n", "cfg.yaml:2: invalid YAML"),
    ("- just\n- a list\n", "cfg.yaml: the configuration must be a mapping"),
    ("api:\n  api_key: k\npolling:\n  interval: 50\n  max_interval: 10\n",
     "polling.max_interval must be >= polling.interval"),
])
def test_bad_config_is_named(text, expected):
    """Each kind of configuration mistake gives one line naming the key (and line)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="cfg.yaml")
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_missing_and_unreadable_config(tmp_path):
    """A missing or unreadable file is a ConfigError naming the path."""
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    folder = tmp_path / "a-directory.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(folder)


# ---------------------------------------------------------------------- manifest

def test_manifest_mapping_with_labels_and_duplicates():
    """Both entry forms are accepted, labels kept, duplicates archived once."""
    manifest = parse_manifest(
        "videos:\n"
        "  - 64dd92c1f0b6684651e90e09\n"
        "  - id: 64dd92c1f0b6684651e90e0a\n"
        "    label: onboarding-es\n"
        "  - 64dd92c1f0b6684651e90e09\n"
        "  - 64dd92c1f0b6684651e90e0a\n"
    )
    assert manifest.items == (
        ManifestItem("64dd92c1f0b6684651e90e09"),
        ManifestItem("64dd92c1f0b6684651e90e0a", "onboarding-es"),
    )


def test_manifest_bare_list():
    """A bare YAML list of ids is a manifest too; an empty one is empty."""
    assert [i.id for i in parse_manifest("- abc\n- d_e-f\n")] == ["abc", "d_e-f"]
    assert len(parse_manifest("videos: []\n")) == 0
    assert len(parse_manifest("")) == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("videos:\n  - ok1\n  - a/b\n", "m.yaml:3: videos[1]: invalid video_model_id 'a/b'"),
    ("- ok\n- ..\n", "m.yaml:2: item 1: invalid video_model_id '..'"),
    ("- 'has space'\n", "invalid video_model_id 'has space'"),
    ('- "nul\\0byte"\n', "invalid video_model_id 'nul\\x00byte'"),
    ("- " + "x" * 10_000 + "\n", "(10000 characters)"),
    ("- 12345\n", "m.yaml:1: item 0: id must be a string, got a number"),
    ("videos:\n  - label: x\n", "videos[0]: missing 'id'"),
    ("videos:\n  - id: abc\n    lable: x\n", "unknown key 'lable'"),
    ("just a string\n", "expected a list of video_model_ids"),
    ("42\n", "got a number"),
    ("vidoes:\n  - abc\n", "unknown key 'vidoes'"),
    ("videos: [abc\n", "m.yaml:2: invalid YAML"),
])
def test_bad_manifest_is_named(text, expected):
    """Each invalid manifest or id is rejected with its position, in one line."""
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, source="m.yaml")
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert len(message) < 300


def test_missing_or_unreadable_manifest(tmp_path):
    """A missing file, a directory and non-UTF-8 bytes each give a one-line error."""
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "none.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ManifestError, match=r"dir.yaml: cannot read manifest: Is a directory"):
        load_manifest(tmp_path / "dir.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"- caf\xe9\n")
    with pytest.raises(ManifestError, match="cannot read manifest: not UTF-8 text"):
        load_manifest(tmp_path / "latin1.yaml")


# ------------------------------------------------------- anchors, aliases, big manifests

def _laughs(line: str, levels: int = 30) -> str:
    """The "billion laughs": each level two aliases of the one before, 2**30 strings.

    *line* places one level, e.g. ``"  l{n}: {value}"``.
    """
    values = ["&l0 [lol, lol]"] + [f"&l{n} [*l{n - 1}, *l{n - 1}]" for n in range(1, levels)]
    return "".join(line.format(n=n, value=value) + "\n" for n, value in enumerate(values))


def test_config_alias_bomb_is_refused_by_the_cli(tmp_path):
    """A config with nested aliases exits 2 at once with one line naming file and line."""
    (tmp_path / "archiver.yaml").write_text("api:\n  api_key: k\n" + _laughs("l{n}: {value}"))
    (tmp_path / "videos.yaml").write_text("- abc\n")
    result = run_cli("run", "videos.yaml", cwd=tmp_path, timeout=20)  # a hang guard only
    assert result.returncode == 2
    assert result.stderr == (
        "archiver: error: archiver.yaml:3: YAML anchors (&l0) are not allowed\n")


def test_manifest_alias_bomb_is_refused_by_the_cli(workdir):
    """A manifest with nested aliases exits 2 at once with one line naming file and line."""
    (workdir / "videos.yaml").write_text("videos:\n  - abc\n" + _laughs("  - {value}"))
    result = run_cli("run", "videos.yaml", cwd=workdir, env=CLI_ENV, timeout=20)
    assert result.returncode == 2
    assert result.stderr == (
        "archiver: error: videos.yaml:3: YAML anchors (&l0) are not allowed\n")
    assert not (workdir / "archive").exists()


@pytest.mark.parametrize(("text", "expected"), [
    ("- abc\n- *abc\n", "m.yaml:2: YAML aliases (*abc) are not allowed"),
    ("- &first abc\n", "m.yaml:1: YAML anchors (&first) are not allowed"),
    ("videos:\n  - {id: x, label: &l a}\n", "m.yaml:2: YAML anchors (&l) are not allowed"),
    ("videos: [a, *" + "z" * 100 + "]\n", "YAML aliases (*" + "z" * 40 + "...) are not"),
])
def test_manifest_anchors_and_aliases_are_named(text, expected):
    """Any anchor or alias in a manifest is refused, naming its line."""
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, source="m.yaml")
    assert expected in str(caught.value)


def test_config_alias_is_named():
    """An alias in the configuration is refused, naming its line."""
    with pytest.raises(ConfigError) as caught:
        parse_config("api:\n  api_key: k\npolling:\n  interval: *x\n", source="cfg.yaml")
    assert str(caught.value) == "cfg.yaml:4: YAML aliases (*x) are not allowed"


def test_deeply_nested_yaml_is_refused():
    """Nesting deeper than any real config or manifest is one line, not a RecursionError."""
    deep = "[" * 2000 + "]" * 2000
    with pytest.raises(ConfigError) as caught:
        parse_config(f"api:\n  api_key: k\nx: {deep}\n", source="cfg.yaml")
    assert str(caught.value) == "cfg.yaml:3: YAML nested more than 50 levels deep"
    with pytest.raises(ManifestError) as caught:
        # (libyaml itself stops at 1,000 levels)
        parse_manifest("videos:\n  - " + "[" * 900 + "]" * 900 + "\n", source="m.yaml")
    assert str(caught.value) == "m.yaml:2: YAML nested more than 50 levels deep"


@pytest.mark.parametrize(("text", "expected"), [
    ("videos: ['12345', \"abc\", !!str 678]\n", [("12345", None), ("abc", None), ("678", None)]),
    ("- {id: x, label: 1.5}\n- {id: y, label: ~}\n- {id: z, label: ''}\n",
     [("x", "1.5"), ("y", None), ("z", "")]),
    ("- {id: x}\n- {id: x, label: second}\n- {id: x, label: third}\n- x\n",
     [("x", "second")]),
    ("---\nvideos:\n  - 'a'\n  - {'id': b, \"label\": \"c d\"}\n...\n",
     [("a", None), ("b", "c d")]),
    ("# nothing yet\n", []),
    ("videos:\n", []),
])
def test_unusual_but_valid_manifests(text, expected):
    """Quoted, tagged and null values mean what YAML says, on every parsing path."""
    assert [(i.id, i.label) for i in parse_manifest(text)] == expected


@pytest.mark.parametrize("shape", ["ids", "entries"])
def test_big_manifest_memory_stays_near_its_items(shape):
    """Parsing builds no node tree: peak memory is about the items kept plus the text."""
    ids = [f"{n:08d}abcdef{n:010x}" for n in range(5000)]
    if shape == "ids":
        text = "videos:\n" + "".join(f"  - {i}\n" for i in ids)
    else:
        text = "videos:\n" + "".join(f"  - id: {i}\n    label: job {n}\n"
                                     for n, i in enumerate(ids))
    tracemalloc.start()
    try:
        manifest = parse_manifest(text)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [i.id for i in manifest] == ids
    # A node tree with two marks per node took 20x the items (85 MiB for 20,000 entries).
    assert peak < kept + 4 * len(text)
