"""Settings: read from FVS_* variables, and every one documented in the README."""

import re
from pathlib import Path

import pytest

from app.config import SETTINGS, Config

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_settings() -> dict[str, str]:
    rows = re.findall(r"^\| `(FVS_\w+)` \| `([^`]*)` \|", README.read_text(), re.M)
    return dict(rows)


def test_the_readme_table_lists_every_setting_with_its_default():
    assert readme_settings() == {s.name: s.default for s in SETTINGS}


def test_settings_come_from_prefixed_environment_variables(tmp_path):
    config = Config.from_env(
        {
            "FVS_INDEX": str(tmp_path / "idx"),
            "FVS_MAX_UPLOAD_MB": "2.5",
            "FVS_INDEX_MMAP": "0",
            "FVS_ORT_THREADS": "3",
            "FVS_LOG_LEVEL": "debug",
        }
    )
    assert config.index == tmp_path / "idx"
    assert config.max_upload_bytes == 2_621_440
    assert config.index_mmap is False
    assert config.ort_threads == 3
    assert config.log_level == "DEBUG"
    assert Config.from_env({}).ort_threads is None


def test_a_setting_that_is_not_a_number_is_named():
    with pytest.raises(ValueError, match="a FVS_\\* setting is not a number"):
        Config.from_env({"FVS_MAX_IMAGES": "many"})
