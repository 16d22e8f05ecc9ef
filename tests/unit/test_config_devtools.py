"""The dev tools' settings: ``[devstack]`` belongs to ``devtools.settings``, not the service.

The service's ``Settings`` has no ``devstack`` section, yet loads a TOML file shared with the dev
tools; the dev tools read their section from every source (file, ``NEV_DEVSTACK_*``, ``--set``)
with the service's loader and checks; both generated references are up to date.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from devtools.settings import (
    DEV_SECTIONS,
    DOCS_PATH,
    DevSettings,
    DevstackSettings,
    load_dev_settings,
    render_docs,
    update_docs,
)
from ingest.config import SECTIONS, Settings
from ingest.config import docs as service_docs
from ingest.config.load import load_settings
from ingest.config.settings import DEV_TOOL_SECTIONS
from ingest.errors import UserError
from tests.unit.test_config_cli import _assert_one_line_error, _cli

pytestmark = pytest.mark.unit

SHARED = """\
[kafka]
client_id = "from-file"

[devstack]
state_dir = "/srv/dev-state"
kafka_heap = "2g"
"""


def _shared(tmp_path: Path, text: str = SHARED) -> Path:
    path = tmp_path / "shared.toml"
    path.write_text(text)
    return path


def test_the_service_settings_have_no_devstack_section() -> None:
    assert not hasattr(Settings(), "devstack")
    assert "devstack" not in SECTIONS
    assert "[devstack]" not in service_docs.show_toml(Settings())
    assert "NEV_DEVSTACK_" not in service_docs.render_docs()


def test_the_dev_sections_are_the_service_ones_plus_those_the_service_skips() -> None:
    assert issubclass(DevSettings, Settings)
    assert set(DEV_SECTIONS) == set(SECTIONS) | DEV_TOOL_SECTIONS
    assert [f.name for f in dataclasses.fields(DevSettings)] == list(DEV_SECTIONS)


def test_a_shared_file_with_devstack_loads_for_both(tmp_path: Path) -> None:
    path = _shared(tmp_path)
    service = load_settings(config_file=path, environ={})
    dev = load_dev_settings(config_file=path, environ={})
    assert service.kafka.client_id == dev.kafka.client_id == "from-file"
    assert dev.devstack == DevstackSettings(state_dir="/srv/dev-state", kafka_heap="2g")
    # The service's part of the dev tools' settings is what the service itself reads.
    assert Settings(**{name: getattr(dev, name) for name in SECTIONS}) == service


def test_the_service_skips_the_devstack_table_but_the_dev_tools_check_it(tmp_path: Path) -> None:
    path = _shared(tmp_path, '[devstack]\nstate_dirr = "x"\nstart_timeout_s = 0\n')
    assert load_settings(config_file=path, environ={}) == Settings()
    with pytest.raises(UserError, match=r"unknown key devstack.state_dirr \(did you mean"):
        load_dev_settings(config_file=path, environ={})


def test_the_service_ignores_devstack_variables_and_refuses_devstack_flags() -> None:
    env = {"NEV_DEVSTACK_STATE_DIR": "/srv/elsewhere", "NEV_DEVSTACK_START_TIMEOUT_S": "nan"}
    assert load_settings(environ=env) == Settings()
    with pytest.raises(UserError, match=r"'devstack.state_dir' is not SECTION.KEY \(sections: "):
        load_settings(environ={}, overrides={"devstack.state_dir": "/srv/elsewhere"})


def test_the_dev_loader_reads_every_source_in_order(tmp_path: Path) -> None:
    path = _shared(tmp_path)
    env = {"NEV_DEVSTACK_KAFKA_HEAP": "3g", "NEV_DEVSTACK_KAFKA_VERSION": "4.2.0"}
    dev = load_dev_settings(
        config_file=path, environ=env, overrides={"devstack.kafka_version": "4.1.1"}
    )
    assert dev.devstack.state_dir == "/srv/dev-state"  # file over default
    assert dev.devstack.kafka_heap == "3g"  # environment over file
    assert dev.devstack.kafka_version == "4.1.1"  # --set over environment
    assert load_dev_settings(environ={"NEV_CONFIG": str(path)}).devstack.kafka_heap == "2g"


def test_the_dev_loader_validates_like_the_service_one() -> None:
    with pytest.raises(UserError, match=r"devstack.start_timeout_s = 0.5: expected a number from"):
        load_dev_settings(environ={"NEV_DEVSTACK_START_TIMEOUT_S": "0.5"})
    # The service's cross-key checks hold for the dev tools too.
    with pytest.raises(UserError, match="pool_min_size"):
        load_dev_settings(environ={"NEV_POSTGRES_POOL_MIN_SIZE": "9"})


def test_the_dev_tools_reference_in_development_md_is_up_to_date() -> None:
    committed = DOCS_PATH.read_text(encoding="utf-8")
    assert render_docs() in committed
    assert update_docs(committed) == committed, (
        "docs/development.md is stale: run `nev-ingest devstack config-docs --write`"
    )
    for field in dataclasses.fields(DevstackSettings):
        assert f"| `{field.name}` | `NEV_DEVSTACK_{field.name.upper()}` |" in committed


def test_update_docs_replaces_only_the_block_between_the_markers() -> None:
    text = "before\n" + render_docs().replace("state_dir", "old_key") + "\nafter\n"
    assert update_docs(text) == "before\n" + render_docs() + "\nafter\n"
    with pytest.raises(UserError, match="put the markers"):
        update_docs("no markers here\n")


def test_commands_as_a_person_runs_them(tmp_path: Path) -> None:
    # A service command refuses a dev-tools flag in one line ...
    result = _cli("config", "show", "--set", "devstack.state_dir=/srv/x")
    _assert_one_line_error(result, "'devstack.state_dir' is not SECTION.KEY (sections: kafka,")
    # ... and reads a shared file, printing only its own sections.
    result = _cli("config", "show", "--config", str(_shared(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert 'client_id = "from-file"' in result.stdout
    assert "devstack" not in result.stdout
    # A dev-tools command takes the flag: nothing runs in this empty state directory.
    state = tmp_path / "state"
    result = _cli("devstack", "status", "--set", f"devstack.state_dir={state}")
    assert (result.returncode, result.stderr) == (1, "")
    assert "postgres   stopped" in result.stdout
    result = _cli("devstack", "config-docs")
    assert (result.returncode, result.stdout) == (0, render_docs() + "\n")
