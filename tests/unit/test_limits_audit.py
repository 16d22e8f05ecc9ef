"""The dependency audit's judgement (devtools.audit, run by ./dev audit and ./dev test): a
finding fails; a package that could not be looked up is "not audited", never a silent pass;
offline, the last complete audit judges the versions still pinned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools.audit import judge, pins

pytestmark = pytest.mark.unit

LOCK = "aiokafka==0.14.0 \\\n    --hash=sha256:00\nuvloop==0.23.0 ; sys_platform != 'win32' \\\n"


def _report(tmp_path: Path, deps: list[dict[str, Any]]) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"dependencies": deps, "fixes": []}))
    return path


def _ok(name: str, version: str, *vulns: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "vulns": [{"id": v, "fix_versions": ["9.9"], "aliases": []} for v in vulns],
    }


def _skipped(name: str) -> dict[str, Any]:
    return {"name": name, "skip_reason": f"Dependency not found on PyPI: {name}"}


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.lock"
    path.write_text(LOCK)
    return path


def test_pins_of_a_hashed_lock_with_markers(lock: Path) -> None:
    assert pins(lock) == {("aiokafka", "0.14.0"), ("uvloop", "0.23.0")}


def test_a_finding_fails(tmp_path: Path, lock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(tmp_path, [_ok("aiokafka", "0.14.0", "PYSEC-1"), _ok("uvloop", "0.23.0")])
    assert judge(report, tmp_path, lock) == 1
    assert "VULNERABLE aiokafka 0.14.0: PYSEC-1 (fixed in 9.9)" in capsys.readouterr().out


def test_nothing_looked_up_and_no_cache_is_a_warning(
    tmp_path: Path, lock: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report(tmp_path, [_skipped("aiokafka"), _skipped("uvloop")])
    assert judge(report, tmp_path, lock) == 0
    assert "NOT AUDITED" in capsys.readouterr().out


def test_offline_the_cached_audit_judges_the_versions_still_pinned(
    tmp_path: Path, lock: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = _report(tmp_path, [_ok("aiokafka", "0.14.0"), _ok("uvloop", "0.23.0")])
    assert judge(clean, tmp_path, lock) == 0  # a complete audit: kept in the cache
    offline = _report(tmp_path, [_skipped("aiokafka"), _skipped("uvloop")])
    assert judge(offline, tmp_path, lock) == 0
    assert "cached audit" in capsys.readouterr().out
    # A cached finding for a version still pinned fails offline too; once the pin moved, not.
    found = _report(tmp_path, [_ok("aiokafka", "0.14.0", "PYSEC-2"), _ok("uvloop", "0.23.0")])
    (tmp_path / "last-complete.json").write_text(found.read_text())
    offline = _report(tmp_path, [_skipped("aiokafka"), _skipped("uvloop")])
    assert judge(offline, tmp_path, lock) == 1
    lock.write_text(LOCK.replace("0.14.0", "0.15.0"))
    assert judge(offline, tmp_path, lock) == 0
