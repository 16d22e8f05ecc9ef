"""The Prometheus text the service serves on /metrics, read back: samples, sums over labels,
histogram buckets and quantiles like PromQL's. The one parser of that text for the integration
tests, the benchmarks and the demo (the service only writes it)."""

from __future__ import annotations

import urllib.request

__all__ = [
    "LATENCY",
    "by_label",
    "exposed",
    "fetch",
    "histogram_quantile",
    "parse_histogram",
    "parse_samples",
    "scrape",
    "total",
]

LATENCY = "nev_ingest_end_to_end_latency_seconds"


def fetch(port: int, *, host: str = "127.0.0.1") -> str:
    """The /metrics text of the service on ``port`` ("" while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:  # URLError and connection errors alike: not serving (yet)
        return ""


def parse_samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample line (comments and blank lines skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def scrape(port: int) -> dict[str, float]:
    """``parse_samples(fetch(port))``: {} while the service does not answer."""
    return parse_samples(fetch(port))


def _matches(key: str, name: str, labels: dict[str, str]) -> bool:
    base, _, rest = key.partition("{")
    return base == name and all(f'{k}="{v}"' in rest for k, v in labels.items())


def exposed(samples: dict[str, float], name: str) -> bool:
    """Whether any sample of ``name`` is there (with or without labels)."""
    return any(key.partition("{")[0] == name for key in samples)


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0.0 when none)."""
    return sum(value for key, value in samples.items() if _matches(key, name, labels))


def by_label(samples: dict[str, float], name: str, label: str) -> dict[str, float]:
    """The samples of ``name`` summed per value of ``label`` (samples without it left out)."""
    out: dict[str, float] = {}
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base == name and f'{label}="' in rest:
            v = rest.split(f'{label}="', 1)[1].split('"', 1)[0]
            out[v] = out.get(v, 0.0) + value
    return out


def parse_histogram(text: str, name: str = LATENCY) -> dict[str, float]:
    """Cumulative buckets (``le`` -> count, summed over labels) plus ``count`` and ``sum``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        key, _, value = line.rpartition(" ")
        if key.startswith(name + "_bucket"):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            out[le] = out.get(le, 0.0) + float(value)
        elif key.startswith(name + "_count"):
            out["count"] = out.get("count", 0.0) + float(value)
        elif key.startswith(name + "_sum"):
            out["sum"] = out.get("sum", 0.0) + float(value)
    return out


def histogram_quantile(hist: dict[str, float], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket."""
    buckets = sorted((float(k), v) for k, v in hist.items() if k not in ("count", "sum"))
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return round(prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-9), 3)
        prev_le, prev_n = le, n
    return None
