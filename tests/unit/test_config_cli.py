"""`nev-ingest config ...` as a person runs it: one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **(env or {})},
        timeout=60,
        check=False,
    )


def _closed_port() -> int:
    # Bound and closed again: nothing listens there for the moment the test needs.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nev-ingest: error: ")
    assert text in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_key() -> None:
    result = _cli("config", "show", env={"NEV_KAFKA_PARTITION": "3"})
    _assert_one_line_error(result, "unknown key kafka.partition (did you mean 'partitions'?)")


def test_bad_port() -> None:
    result = _cli("config", "show", "--set", "metrics.port=0")
    _assert_one_line_error(result, "metrics.port = 0: expected an integer from 1 to 65535")


def test_unreachable_broker() -> None:
    servers = f"127.0.0.1:{_closed_port()}"
    result = _cli(
        "config",
        "check",
        "--skip",
        "postgres",
        "--timeout",
        "5",
        env={"NEV_KAFKA_BOOTSTRAP_SERVERS": servers},
    )
    _assert_one_line_error(result, f"kafka.bootstrap_servers = {servers}: no broker answered")
    assert "start the dev stack (nev-ingest devstack up" in result.stderr  # it listens there


def test_an_unreachable_remote_broker_is_no_dev_stack_matter() -> None:
    # A production cluster: `devstack up` would start nothing there; say what to check instead,
    # in `config check` and at the gateway's start alike (`run` shares the gateway's check).
    servers = "kafka.invalid:9092"  # .invalid: never resolves (RFC 2606)
    env = {
        "NEV_KAFKA_BOOTSTRAP_SERVERS": servers,
        "NEV_KAFKA_REQUEST_TIMEOUT_MS": "3000",  # the gateway's check waits this long
        "NEV_GATEWAY_LISTEN_VEHICLE": "127.0.0.1:0",
    }
    for args in (("config", "check", "--skip", "postgres", "--timeout", "3"), ("gateway",)):
        result = _cli(*args, env=env)
        _assert_one_line_error(
            result,
            f"check that the brokers of kafka.bootstrap_servers ({servers}) are up and reachable",
        )
        assert "devstack" not in result.stderr, result.stderr
        assert "NEV_KAFKA_BOOTSTRAP_SERVERS" in result.stderr  # the setting to fix


def test_unreachable_database() -> None:
    dsn = f"postgresql://nev@127.0.0.1:{_closed_port()}/nev"
    result = _cli("config", "check", "--skip", "kafka", env={"NEV_POSTGRES_DSN": dsn})
    _assert_one_line_error(result, f"postgres.dsn = {dsn}: cannot connect")
    assert "start the dev stack (nev-ingest devstack up)" in result.stderr  # it listens there


def test_an_unreachable_remote_database_is_no_dev_stack_matter() -> None:
    # A production host: `devstack up` would start nothing there; say what to check instead.
    dsn = "postgresql://nev@db.invalid:5432/nev"  # .invalid: never resolves (RFC 2606)
    for args in (("config", "check", "--skip", "kafka"), ("migrate",)):
        result = _cli(*args, env={"NEV_POSTGRES_DSN": dsn})
        _assert_one_line_error(result, "check that the server at db.invalid is up and reachable")
        assert "devstack" not in result.stderr, result.stderr
        assert "NEV_POSTGRES_DSN" in result.stderr  # the setting to fix


def test_show_masks_secrets() -> None:
    result = _cli(
        "config",
        "show",
        "--format",
        "json",
        env={"NEV_POSTGRES_DSN": "postgresql://nev:hunter2@db/nev"},
    )
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert "postgresql://nev:********@db/nev" in result.stdout


def test_missing_prerequisite_says_how_to_install_it_and_starts_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    result = _cli(
        "devstack",
        "up",
        env={"PATH": str(tmp_path), "NEV_DEVSTACK_STATE_DIR": str(state_dir)},
    )
    _assert_one_line_error(result, "java not found on PATH; install it: apt-get install -y")
    assert not (state_dir / "state.json").exists()


def test_with_shards_each_shard_is_checked_and_named() -> None:
    # The service writes the shards, not postgres.dsn: a shard nobody answers on is the error.
    dsn = f"postgresql://nev@127.0.0.1:{_closed_port()}/nev"
    result = _cli("config", "check", "--skip", "kafka", "--set", f"storage.shards={dsn}")
    _assert_one_line_error(result, f"storage.shards[0] = {dsn}: cannot connect")
    assert "fix storage.shards[0]" in result.stderr


def test_a_reader_that_went_away_ends_the_output_quietly() -> None:
    # `nev-ingest config show | head -1` once head quit: stdout buffered (no PYTHONUNBUFFERED),
    # so the pipe breaks at the last flush, which must still be inside the command.
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ingest", "config", "show"],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        )  # fmt: skip
    finally:
        os.close(write)
    assert result.returncode == 0 and result.stderr == ""


def test_a_role_setting_may_not_be_public_or_none() -> None:
    # PostgreSQL reserves both as role names: migrate would fail creating the role.
    result = _cli("config", "show", "--set", "roles.public=none")
    _assert_one_line_error(result, "roles.public = 'none': expected a plain SQL name that may")


def test_an_error_after_output_into_a_closed_pipe_keeps_its_status(tmp_path: Path) -> None:
    # decode prints the first file's frames, then fails on the second (exit 2); the reader of
    # its output is gone. The status is the failure's, and no "Exception ignored" follows.
    good = tmp_path / "one.hex"
    good.write_text(
        "232302fe4c5346443033323035484330303131383001001e19010a00000001010301"
        "0000000000000000000000000000000000000000000000000000000000\n"
    )
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ingest", "decode", str(good), str(tmp_path / "none.hex")],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        )  # fmt: skip
    finally:
        os.close(write)
    assert result.returncode == 2, result.stderr
    assert "Exception ignored" not in result.stderr and "cannot read" in result.stderr


def _with_closed(fd: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``nev-ingest ARGS`` started with descriptor ``fd`` closed (``>&-`` is 1, ``2>&-`` 2):
    Python then has no sys.stdout / sys.stderr; the other stream is captured."""
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        stdout=subprocess.DEVNULL if fd == 1 else subprocess.PIPE,
        stderr=subprocess.DEVNULL if fd == 2 else subprocess.PIPE,
        text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        preexec_fn=lambda: os.close(fd),
    )  # fmt: skip


def test_a_command_started_with_stdout_closed_runs() -> None:
    # cron, `>&-`: the final flush must not trip on a missing sys.stdout
    result = _with_closed(1, "config", "check", "--skip", "kafka", "--skip", "postgres")
    assert result.returncode == 0 and result.stderr == ""


def test_with_stderr_closed_an_error_stays_off_stdout() -> None:
    # `2>&-`: print(file=None) would write the error into stdout, into a CSV or JSON a reader
    # parses.
    result = _with_closed(2, "config", "show", "--set", "roles.public=none")
    assert result.returncode == 2 and result.stdout == ""


def test_a_command_that_writes_with_stdout_closed_runs() -> None:
    # config show writes through sys.stdout.write: with stdout closed that went to None
    result = _with_closed(1, "config", "show")
    assert result.returncode == 0 and result.stderr == ""


def _into_closed_pipes(*args: str, stdout: bool, stderr: bool) -> subprocess.CompletedProcess[str]:
    """``nev-ingest ARGS`` whose stdout and/or stderr is a pipe nobody reads any more (its
    reader quit, as ``| head`` does); the other stream is captured. stdout buffered, as in a
    shell."""
    pipes = {}
    for name, closed in (("stdout", stdout), ("stderr", stderr)):
        if closed:
            read, write = os.pipe()
            os.close(read)
            pipes[name] = write
    try:
        return subprocess.run(
            [sys.executable, "-m", "ingest", *args],
            stdout=pipes.get("stdout", subprocess.PIPE),
            stderr=pipes.get("stderr", subprocess.PIPE),
            text=True, timeout=120, check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        )  # fmt: skip
    finally:
        for fd in pipes.values():
            os.close(fd)


FRAME = (
    "232302fe4c5346443033323035484330303131383001001e19010a00000001010301"
    "0000000000000000000000000000000000000000000000000000000000"
)


def test_a_reader_gone_while_frames_are_written_ends_decode_quietly(tmp_path: Path) -> None:
    # far more output than a pipe holds: the write itself breaks, inside the command
    many = tmp_path / "many.hex"
    many.write_text((FRAME + "\n") * 20_000)
    result = _into_closed_pipes("decode", str(many), stdout=True, stderr=False)
    assert result.returncode == 0 and result.stderr == ""


def test_a_reader_gone_by_decode_s_last_flush_leaves_its_counts_and_status(
    tmp_path: Path,
) -> None:
    few = tmp_path / "few.hex"
    few.write_text(FRAME + "\n" + "zz\n")  # rejected lines: exit 1
    result = _into_closed_pipes("decode", str(few), stdout=True, stderr=False)
    assert result.returncode == 1 and "nev-ingest decode: 2 frames" in result.stderr


def test_a_gone_reader_of_stderr_leaves_the_status() -> None:
    result = _into_closed_pipes(
        "config", "show", "--set", "metrics.port=0", stdout=False, stderr=True
    )
    assert result.returncode == 2
