"""Settings: read from FVS_* variables, and every one documented in the README."""

import re
from pathlib import Path

import pytest

from app import create_app
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
    defaults = Config.from_env({})
    assert defaults.ort_threads is None
    assert defaults.index_mmap is True
    assert defaults.ort_spinning is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("yes", True), (" On ", True)]
    + [("0", False), ("", False), ("false", False), ("No", False), ("off", False)],
)
def test_on_off_settings_read_the_usual_spellings(value, expected):
    config = Config.from_env({"FVS_ORT_SPINNING": value, "FVS_INDEX_MMAP": value})
    assert config.ort_spinning is expected
    assert config.index_mmap is expected


def test_a_setting_that_is_not_a_number_is_named():
    with pytest.raises(ValueError, match="a FVS_\\* setting is not a number"):
        Config.from_env({"FVS_MAX_IMAGES": "many"})


@pytest.mark.parametrize(("threads", "spinning"), [(2, False), (1, True)])
def test_the_model_session_gets_the_thread_settings(
    built_index, random_model_dir, threads, spinning
):
    from service_fixtures import make_config

    config = make_config(
        built_index, random_model_dir, ort_threads=threads, ort_spinning=spinning
    )
    engine = create_app(config).extensions["engine"]
    options = engine.embedder.session.get_session_options()
    assert options.intra_op_num_threads == threads
    entry = options.get_session_config_entry("session.intra_op.allow_spinning")
    assert entry == ("1" if spinning else "0")
