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
    """A missing environment variable is reported with the key and line that use it
    (by default every section is used, as for a library's load_config())."""
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
    ("api:\n  api_key: 0123\n", "cfg.yaml:2: api.api_key: Input should be a valid string"),
    ("api:\n  api_key: k\nconcurrency:\n  polls: 1.5\n", "cfg.yaml:4: concurrency.polls: "),
    ("downloads:\n  allow_private: 0.5\n", "cfg.yaml:2: downloads.allow_private: "),
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
    ("- [12345]\n", "m.yaml:1: item 0: id must be a string, got a list"),
    ("videos:\n  - ok\n  - {id: {a: 1}}\n", "m.yaml:3: videos[1]: id must be a string, got a "
     "mapping"),
    ("- {id: x, label: [a]}\n", "m.yaml:1: item 0: label must be text, got a list"),
    ("videos: 12\n", "expected a list of video_model_ids (or 'videos:' with one), got a number"),
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


# ------------------------------------- issue 20, point 4: what YAML reads otherwise

ZEROS = "000000000000000000000000"
#: Plain scalars YAML 1.1 reads as an int (octal), float, hex int, date and bool.
AS_WRITTEN = [ZEROS, "0123", "1e3", "0x1F", "2024-01-01", "true"]


@pytest.mark.parametrize("text", [
    "".join(f"- {i}\n" for i in AS_WRITTEN),
    "videos:\n" + "".join(f"  - {i}\n" for i in AS_WRITTEN),
    "videos:\n" + "".join(f"  - id: {i}\n" for i in AS_WRITTEN),
    "videos:\n" + "".join(f"  - {{id: {i}, label: x}}\n" if n % 2 else f"  - {i}\n"
                          for n, i in enumerate(AS_WRITTEN)),
    # A tag sends the manifest down the general path (the node tree), which must agree.
    "videos:\n  - !!str " + AS_WRITTEN[0] + "\n" + "".join(f"  - {i}\n" for i in AS_WRITTEN[1:]),
    "videos:\n  - id: " + AS_WRITTEN[0] + "\n    label: !!str x\n"
    + "".join(f"  - id: {i}\n" for i in AS_WRITTEN[1:]),
], ids=["bare", "videos", "entries", "mixed", "general-bare", "general-entries"])
def test_ids_are_the_text_as_written(text):
    """An unquoted all-digit id is not the number 0, nor 1e3 a float: every position
    the manifest allows takes the id from the scalar's text, on both parsing paths."""
    assert [i.id for i in parse_manifest(text, source="m.yaml")] == AS_WRITTEN


def test_labels_are_the_text_as_written():
    """A label that YAML would read as a number, date or bool keeps its text."""
    manifest = parse_manifest("- {id: a, label: 007}\n- {id: b, label: 1.50}\n"
                              "- {id: c, label: yes}\n- {id: d, label: 2024-01-01}\n")
    assert [i.label for i in manifest] == ["007", "1.50", "yes", "2024-01-01"]


@pytest.mark.parametrize(("value", "expected"), [
    ("${AKOOL_API_KEY", "cfg.yaml:2: api.api_key: ${AKOOL_API_KEY has no closing '}' and "
                        "would be taken literally: write ${AKOOL_API_KEY}"),
    ("x${AKOOL_API_KEY", "has no closing '}'"),
    ("${", "cfg.yaml:2: api.api_key: ${ has no closing '}' and would be taken literally: "
           "write ${NAME} or ${NAME:-default}"),
    ("$AKOOL_API_KEY", "cfg.yaml:2: api.api_key: $AKOOL_API_KEY would be taken literally "
                       "(only ${AKOOL_API_KEY}, with braces, is replaced): "
                       "write ${AKOOL_API_KEY}"),
])
def test_env_references_that_would_be_taken_literally_are_named(monkeypatch, value, expected):
    """`${VAR` never closed and a shell's `$VAR` stop at load, naming the fix; the
    variable's value (set here) is never what decides."""
    monkeypatch.setenv("AKOOL_API_KEY", "sk-set-in-the-environment")
    with pytest.raises(ConfigError) as caught:
        parse_config(f"api:\n  api_key: '{value}'\n", source="cfg.yaml")
    assert expected in str(caught.value)
    assert "sk-set-in-the-environment" not in str(caught.value)


def test_a_shell_variable_in_a_path_is_named():
    """`root: $HOME/archive` would make a folder named `$HOME`: refused with the fix."""
    with pytest.raises(ConfigError) as caught:
        parse_config("storage:\n  local:\n    root: $HOME/archive\n", source="cfg.yaml")
    assert str(caught.value) == (
        "cfg.yaml:3: storage.local.root: $HOME would be taken literally (only ${HOME}, with "
        "braces, is replaced): write ${HOME}/archive")


def test_a_dollar_inside_a_value_is_kept(monkeypatch):
    """Only a value that starts like a shell variable is refused: `ab$cd` is a key."""
    assert parse_config("api:\n  api_key: ab$cd\n").api.api_key.get_secret_value() == "ab$cd"


def test_unset_variables_in_unused_sections_do_not_stop_a_command(monkeypatch):
    """A section the command does not use may name unset variables: its defaults apply.
    In a section it uses, the message names the command that needs it."""
    monkeypatch.delenv("AKOOL_TEST_KEY", raising=False)
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    text = GOOD_CONFIG + "webhook:\n  client_id: ${NO_SUCH_SECRET}\n  client_secret: x\n"
    config = parse_config(text, source="cfg.yaml", unused={"api", "webhook"})
    assert config.api.api_key is None and config.webhook is None
    assert config.concurrency.polls == 16  # the sections used are read as written
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="cfg.yaml", unused={"webhook"}, needed_by="archiver run")
    assert str(caught.value) == ("cfg.yaml:3: api.api_key: environment variable AKOOL_TEST_KEY "
                                 "is not set (archiver run needs it)")
    # Anything else wrong in an unused section is still an error: the file is wrong.
    with pytest.raises(ConfigError, match=r"cfg\.yaml:2: webhook\.max_age: "):
        parse_config("webhook:\n  max_age: -1\n  client_id: ${NO_SUCH_SECRET:-x}\n"
                     "  client_secret: y\n", source="cfg.yaml", unused={"webhook"})


def test_credentials_are_checked_by_the_commands_that_call_akool():
    """No key at all is a valid configuration; require_credentials names who needs one."""
    from archiver.config import require_credentials

    config = parse_config("storage:\n  local:\n    root: ./a\n")
    assert not config.api.has_credentials
    with pytest.raises(ConfigError) as caught:
        require_credentials(config, "archiver run", "cfg.yaml")
    assert str(caught.value) == (
        "cfg.yaml: archiver run calls Akool's API and needs its key: set api.api_key "
        "(e.g. api_key: ${AKOOL_API_KEY}, with the key in the environment) or api.token")
