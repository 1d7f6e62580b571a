"""Helpers for the config tests: write a config file and load or check it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridbus.config import ConfigError
from hybridbus.config.load import check_config, load_options

DATA = Path(__file__).resolve().parent / "data"


class ConfFiles:
    """Writes `c.conf` (and friends) in a temporary directory that is also the cwd,
    so messages name the file as `c.conf`, the way the note's examples do."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, text: str, name: str = "c.conf") -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return name

    def load(self, text: str):
        """(options, warnings) for a config that must load."""
        return load_options(self.write(text))

    def errors(self, text: str) -> list[str]:
        """The error lines of a config that must fail."""
        with pytest.raises(ConfigError) as info:
            load_options(self.write(text))
        return info.value.lines

    def warnings(self, text: str) -> list[str]:
        return self.load(text)[1]

    def check(self, text: str) -> tuple[int, list[str]]:
        return check_config(self.write(text))


@pytest.fixture
def conf(tmp_path, monkeypatch) -> ConfFiles:
    monkeypatch.chdir(tmp_path)
    return ConfFiles(tmp_path)
