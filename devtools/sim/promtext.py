"""Prometheus histograms read back from /metrics text: buckets, and quantiles like PromQL's."""

from __future__ import annotations

__all__ = ["LATENCY", "histogram_quantile", "parse_histogram"]

LATENCY = "nev_ingest_end_to_end_latency_seconds"


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
