"""deploy/Dockerfile and .dockerignore, checked with what runs here (no Docker engine: the image
is not built on this machine). hadolint lints it; the rules that matter are also read from the
file itself (non-root user, pinned bases, health check on /healthz, no ADD, hash-checked wheels,
no compiler in the runtime stage); the HEALTHCHECK command is run against a real HTTP server."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
TOOLS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nev-ingest/deploy-tools"


def _tool(name: str) -> Path:
    path = TOOLS / "venv" / "bin" / name
    assert path.exists(), f"{path} is missing; run ./dev setup (it installs the deploy/ linters)"
    return path


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments out."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (from FROM to the next FROM)."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in _instructions(DOCKERFILE.read_text()):
        if word == "FROM":
            name = rest.split()[-1] if " AS " in rest.upper() else rest
            current = stages.setdefault(name, [])
        current.append((word, rest))
    return stages


def _args() -> dict[str, str]:
    return dict(
        rest.split("=", 1)
        for word, rest in _instructions(DOCKERFILE.read_text())
        if word == "ARG" and "=" in rest
    )


def test_hadolint_passes_and_would_catch_an_unpinned_base(tmp_path: Path) -> None:
    hadolint = _tool("hadolint")
    done = subprocess.run([hadolint, DOCKERFILE], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nADD https://example.org/x.tgz /x\nRUN pip install x\n")
    caught = subprocess.run([hadolint, bad], capture_output=True, text=True, check=False)
    assert caught.returncode != 0
    assert "DL3007" in caught.stdout  # the linter really reads the file


def test_bases_are_pinned_and_stages_are_builder_runtime_demo() -> None:
    args = _args()
    for word, rest in _instructions(DOCKERFILE.read_text()):
        if word != "FROM":
            continue
        image = rest.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), image)
        if image in {"builder", "runtime", "rust"}:
            continue  # an earlier stage
        tag = image.partition(":")[2]
        assert re.match(r"^\d+\.\d+\.\d+", tag), f"{image}: pin a full version, not {tag or 'none'}"
    assert args["PYTHON_IMAGE"].startswith("python:3.11.")
    assert "slim" in args["PYTHON_IMAGE"]
    assert set(_stages()) >= {"builder", "runtime", "demo"}


def test_runtime_is_non_root_with_no_compiler_and_installs_only_built_wheels() -> None:
    runtime = _stages()["runtime"]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    runs = " ".join(rest for word, rest in runtime if word == "RUN")
    assert "apt-get" not in runs and "gcc" not in runs and "cargo" not in runs
    assert "--no-index" in runs and "--find-links /wheels" in runs  # no index at install time
    assert "pip uninstall -y pip" in runs
    builder = " ".join(rest for word, rest in _stages()["builder"] if word == "RUN")
    # install (maturin, hatchling) + wheels, both hash-checked
    assert len(re.findall(r"--require-hashes --no-deps -r requirements\.lock", builder)) == 2
    assert "maturin build --release --locked" in builder


def test_no_add_and_the_entry_point_is_nev_ingest_run() -> None:
    instructions = _instructions(DOCKERFILE.read_text())
    assert not [rest for word, rest in instructions if word == "ADD"]
    runtime = dict(_stages()["runtime"])
    assert json.loads(runtime["ENTRYPOINT"]) == ["nev-ingest"]
    assert json.loads(runtime["CMD"]) == ["run"]
    assert "org.opencontainers.image.title" in runtime["LABEL"]


def test_the_builder_copies_every_package_the_wheel_holds() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copied = {
        shlex.split(rest)[0].rstrip("/")
        for word, rest in _stages()["builder"]
        if word == "COPY" and not rest.startswith("--from")
    }
    assert set(packages) <= copied, f"COPY the wheel's packages into the builder: {packages}"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"


def _ignored(path: str, patterns: list[str]) -> bool:
    """docker's .dockerignore rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, "**/" + pat) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_sends_the_sources_and_keeps_out_venv_caches_and_builds() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("requirements.lock", "pyproject.toml", "ingest/cli/run.py", "native/Cargo.toml"):
        assert not _ignored(needed, patterns), needed
    for kept_out in (".venv/bin/python", ".devstack/pg", "native/target/release", ".git/HEAD"):
        assert _ignored(kept_out, patterns), kept_out


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_the_healthcheck_command_passes_on_healthz_200_and_fails_otherwise(
    health_server: http.server.HTTPServer,
) -> None:
    check = dict(_stages()["runtime"])["HEALTHCHECK"]
    argv = json.loads(check[check.index("CMD") + 3 :].strip())
    assert argv[0] == "python"
    env = {**os.environ, "NEV_METRICS_PORT": str(health_server.server_address[1])}
    ok = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, check=False)
    assert ok.returncode == 0, ok.stderr
    _Health.status = 503
    try:
        sick = subprocess.run(
            [sys.executable, *argv[1:]], env=env, capture_output=True, check=False
        )
    finally:
        _Health.status = 200
    assert sick.returncode != 0
