"""A real Prometheus (the Debian ``prometheus`` binary ./dev setup installs) of one test's own:
a free loopback port, a scratch data directory, a generated configuration that scrapes the
given jobs' targets every second and loads deploy/prometheus/alerts.yml; ready when ``/-/ready``
answers (polled, never slept for). Plus the HTTP API calls the tests make, and the metric names
a PromQL expression refers to."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Final

from devtools.devstack.process import free_port
from tests.integration.pipeline_support import until

__all__ = ["ALERT_RULES", "PrivatePrometheus", "metric_names"]

ALERT_RULES: Final = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


class PrivatePrometheus:
    """``prometheus`` scraping ``jobs`` (job name -> host:port targets, e.g. ``nev-ingest``
    and ``nev-gateway`` as deploy/prometheus/prometheus.yml names them); ``stop`` ends it."""

    def __init__(self, home: Path, jobs: dict[str, list[str]], *, rule_files: list[Path]) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: run ./dev setup (installs the Debian package)"
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in jobs.items()
            ],
        }
        config_file = home / "prometheus.yml"
        config_file.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.log = home / "prometheus.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def answers_ready(self) -> bool:
        """``/-/ready`` answers 200 (AssertionError with the log when the process exited)."""
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as resp:  # noqa: S310 (http to loopback)
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    async def wait_ready(self, timeout_s: float = 60) -> None:
        async def ready() -> bool:
            return self.answers_ready()

        await until(ready, timeout_s=timeout_s, what="prometheus /-/ready")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the ``data`` of a success, AssertionError with the error."""
        query = urllib.parse.urlencode(params)
        try:
            url = f"{self.url}/api/v1/{path}?{query}"
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (http to loopback)
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[Any]:
        """An instant query's result vector (an error fails with Prometheus' message)."""
        data = self.api("query", query=expr)
        result: list[Any] = data["result"]
        return result

    def series(self, name: str) -> list[dict[str, str]]:
        found: list[dict[str, str]] = self.api("series", **{"match[]": name})
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()


# PromQL words that look like metric names but are not: operators, modifiers and grouping.
_KEYWORDS: Final = frozenset(
    ("and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"),
) | {"bool", "offset", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: identifiers that are not functions (followed by a
    parenthesis), label names (inside {} or a grouping), durations or keywords."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = {m.group(1) for m in _NAME.finditer(text)}
    # Numbers like 1e3 start with a digit and never match; durations went with the ranges.
    return {n for n in names if n not in _KEYWORDS and not re.fullmatch(r"(?i)inf|nan", n)}
