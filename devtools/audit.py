"""The dependency audit's judgement and the crate's SBOM, for ``./dev audit`` and ``./dev sbom``.

``judge``: reads pip-audit's JSON report of requirements.lock. A package pip-audit could not
look up (offline, or an index without PyPI's per-release JSON API) is *not audited*, which is
not the same as *no known vulnerability*: when nothing could be looked up, the last complete
audit kept in the cache judges the lock instead (its findings for the versions still pinned),
and without one the result is a warning, never a pass in disguise nor a failure of ``./dev
test`` for want of a network.

``crate-sbom``: a CycloneDX 1.6 JSON SBOM of native/ from ``cargo metadata`` (the crates of
Cargo.lock with their versions, licences and checksums), used when ``cargo cyclonedx`` is not
installed.

    python -m devtools.audit judge REPORT.json CACHE_DIR requirements.lock
    python -m devtools.audit crate-sbom native/Cargo.toml OUT.json
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["crate_sbom", "judge", "main", "pins"]

_LAST: str = "last-complete.json"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> set[tuple[str, str]]:
    """(normalised name, version) of every ``name==version`` line of a requirements file."""
    return {(_name(m[1]), m[2]) for m in _PIN.finditer(lock.read_text())}


def _say(line: str) -> None:
    print(f"    {line}", flush=True)


def _vulnerable(report: dict[str, Any]) -> list[str]:
    out = []
    for dep in report.get("dependencies", []):
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed release yet"
            out.append(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
    return out


def judge(report_path: Path, cache: Path, lock: Path) -> int:
    """0: audited (or could not be, with a warning); 1: a known vulnerability in the lock."""
    report: dict[str, Any] = json.loads(report_path.read_text())
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = len(deps) - len(skipped)
    found = _vulnerable(report)
    if audited and not skipped:
        shutil.copyfile(report_path, cache / _LAST)
    if found:
        for line in found:
            _say(f"pip-audit: VULNERABLE {line}")
        _say("pip-audit: raise these pins in pyproject.toml, then ./dev lock")
        return 1
    if audited:
        note = f"; {len(skipped)} could not be looked up" if skipped else ""
        _say(f"pip-audit: {audited} packages of requirements.lock audited, none vulnerable{note}")
        return 0
    last = cache / _LAST
    if not last.exists():
        _say(
            f"WARNING pip-audit: none of the {len(deps)} packages could be looked up (no "
            "network, or an index without PyPI's per-release JSON API) and no earlier audit "
            "is cached: NOT AUDITED; run ./dev audit where pypi.org is reachable"
        )
        return 0
    cached: dict[str, Any] = json.loads(last.read_text())
    pinned = pins(lock)
    still = [
        line
        for dep in cached.get("dependencies", [])
        if (_name(dep["name"]), dep.get("version")) in pinned
        for line in _vulnerable({"dependencies": [dep]})
    ]
    when = time.strftime("%Y-%m-%d", time.gmtime(last.stat().st_mtime))
    if still:
        for line in still:
            _say(f"pip-audit (cached audit of {when}): VULNERABLE {line}")
        return 1
    _say(
        f"WARNING pip-audit: offline; judged by the cached audit of {when}: no known "
        "vulnerability in the versions still pinned (newer advisories not seen)"
    )
    return 0


def crate_sbom(manifest: Path, out: Path) -> None:
    """Write the CycloneDX JSON SBOM of the crate at ``manifest`` (all of Cargo.lock's crates
    that ``cargo metadata`` resolves for this platform's build, dev and build deps included)."""
    # --all-features: the wheel is built with the "python" feature (pyo3).
    cmd = ["cargo", "metadata", "--locked", "--all-features", "--format-version", "1"]
    cmd.append("--manifest-path")
    run = subprocess.run([*cmd, str(manifest)], check=True, capture_output=True, text=True)
    meta = json.loads(run.stdout)
    root_id = meta["resolve"]["root"]
    components, root = [], None
    for pkg in meta["packages"]:
        purl = f"pkg:cargo/{pkg['name']}@{pkg['version']}"
        comp: dict[str, Any] = {
            "type": "library",
            "bom-ref": purl,
            "name": pkg["name"],
            "version": pkg["version"],
            "purl": purl,
        }
        if pkg.get("license"):
            comp["licenses"] = [{"expression": pkg["license"]}]
        if pkg["id"] == root_id:
            root = comp | {"type": "library"}
        else:
            components.append(comp)
    refs = {p["id"]: f"pkg:cargo/{p['name']}@{p['version']}" for p in meta["packages"]}
    deps = [
        {"ref": refs[n["id"]], "dependsOn": sorted(refs[d] for d in n["dependencies"])}
        for n in meta["resolve"]["nodes"]
    ]
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tools": {"components": [{"type": "application", "name": "devtools.audit"}]},
            "component": root,
        },
        "components": sorted(components, key=lambda c: (c["name"], c["version"])),
        "dependencies": deps,
    }
    out.write_text(json.dumps(bom, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 4 and args[0] == "judge":
        return judge(Path(args[1]), Path(args[2]), Path(args[3]))
    if len(args) == 3 and args[0] == "crate-sbom":
        crate_sbom(Path(args[1]), Path(args[2]))
        return 0
    print(__doc__.rsplit("\n\n", 1)[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
