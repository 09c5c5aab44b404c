"""The documentation: the README stays a short front door, the configuration reference
(docs/configuration.md), the configuration model and config.example.yaml say the same,
and the site builds with ``mkdocs build --strict`` (a broken link or anchor fails)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from archiver.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _gen_config():
    """docs/gen_config.py, imported from its path (docs/ is no package)."""
    spec = importlib.util.spec_from_file_location("gen_config", ROOT / "docs" / "gen_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _gen_config()


def test_readme_is_a_short_front_door_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "pip install -e . && archiver demo" in text
    assert "pip install -e '.[test]' && python -m pytest" in text
    # .ci/run runs exactly the README's test command.
    assert "\npip install -e '.[test]' && python -m pytest\n" in (ROOT / ".ci" / "run").read_text()


def test_readme_links_to_every_page_of_the_site():
    text = README.read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "index.md")
    assert [p for p in pages if f"(docs/{p})" not in text] == []


def test_prose_lines_of_the_docs_fit_in_100_columns():
    """Tables and code blocks may be wide; prose may not."""
    long = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        fenced = False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced and not line.startswith(("|", "<!--")) and len(line) > 100:
                long.append(f"{page.name}:{number}")
    assert long == []


def test_the_configuration_reference_is_generated_from_the_model():
    """Regenerate the reference: the committed page must be what the model says now.
    Fix: python docs/gen_config.py"""
    page = GEN.PAGE.read_text()
    assert GEN.BEGIN in page and GEN.END in page
    assert GEN.page_with_reference(page) == page, "run: python docs/gen_config.py"


def test_the_reference_names_every_key_of_the_model():
    page = GEN.PAGE.read_text()
    leaves = [key for key in GEN.model_keys() if f"`{key}`" not in page]
    assert leaves == []


def test_config_example_names_exactly_the_keys_of_the_model():
    """Every key of config.example.yaml (commented out or not) exists in the model, and
    every key of the model is in config.example.yaml."""
    model = set(GEN.model_keys())
    example = set(GEN.example_keys())
    assert sorted(example - model) == [], "config.example.yaml names keys the model lacks"
    assert sorted(model - example) == [], "config.example.yaml lacks keys of the model"


def test_example_key_parser_reads_commented_out_sections():
    """The parser the check above relies on: a commented-out section's keys nest by the
    spaces after their '#', prose above the first key is no key, and a wrong key is
    found (so the check can fail)."""
    text = ("# header: prose, not a key\n\napi:\n  base_url: x   # where\n"
            "  # token: y                     # alternative\n"
            "  #                              # more words\n"
            "# webhook:\n#   client_id: z\n#   retries:\n#     attempts: 1\n"
            "storage:\n  # s3:\n  #   bucket: b\n  #   typo_key: 1\n")
    keys = GEN.example_keys(text)
    assert list(keys) == ["api", "api.base_url", "api.token", "webhook", "webhook.client_id",
                          "webhook.retries", "webhook.retries.attempts", "storage",
                          "storage.s3", "storage.s3.bucket", "storage.s3.typo_key"]
    assert keys["api.token"] == "alternative more words"
    assert "storage.s3.typo_key" not in set(GEN.model_keys())


def test_config_example_states_the_defaults(monkeypatch):
    """config.example.yaml "documents every key with its default": loaded as it is, it
    is the default configuration, but for the key it sets from the environment."""
    monkeypatch.setenv("AKOOL_API_KEY", "k" * 24)
    loaded = load_config(ROOT / "config.example.yaml")
    assert loaded == Config(api={"api_key": "k" * 24})
    assert yaml.safe_load((ROOT / "config.example.yaml").read_text())["api"]["api_key"] \
        == "${AKOOL_API_KEY}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[test]')")
def test_the_site_builds_strictly(tmp_path):
    """Every page in nav, every link and anchor resolving, nothing fetched from the
    network (no Google Fonts, no social cards). Not ``-q``: it hides the warnings that
    --strict turns into a failure, and the build passes with a broken link."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    html = (tmp_path / "site" / "configuration" / "index.html").read_text()
    assert "storage.s3.part_size" in html
    assert "fonts.googleapis.com" not in html
