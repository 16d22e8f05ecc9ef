"""deploy/k8s/apply.sh, the install/upgrade procedure of docs/operations.md ("Upgrade"), without a
cluster: a fake ``kubectl`` first on PATH records every call and answers the script's ``get``s
from the scenario's Secret and Job through the real kubectl, offline (``create --dry-run=client``,
``label --local``), so the script's own go-template and JSONPath expressions are what is run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.test_deploy_compose import _tool
from tests.unit.test_deploy_k8s import K8S, MIGRATE, _documented_secret, _resources

pytestmark = pytest.mark.unit

SCRIPT = K8S / "apply.sh"
DOCS = K8S.parents[1] / "docs"
KEYS = list(_documented_secret())
LOGS = "nev-ingest migrate: error: migration 0079_x.sql failed"
# Guard only (no timing is asserted): a script that misses a Failed Job polls until its own
# 900 s timeout; the test fails on this instead of waiting that out.
GUARD_S = 120

FAKE = """#!{python}
import json, subprocess, sys
from pathlib import Path

real, state = {real!r}, Path({state!r})
args = sys.argv[1:]
with (state / "calls").open("a") as f:
    f.write(json.dumps(args) + "\\n")
out = next((a for a in args if a.startswith(("go-template=", "jsonpath="))), None)
if args[:1] == ["kustomize"]:  # offline: the kustomization's objects, as apply -k makes them
    printed = state / "kustomized"  # or what another kustomize printed for them
    if printed.exists():
        sys.exit(print(printed.read_text()))
    sys.exit(subprocess.run([real, *args]).returncode)
if args[:2] == ["label", "--local"]:  # offline, on its standard input
    sys.exit(subprocess.run([real, *args]).returncode)
if args[2:4] == ["get", "secret"]:
    keys = state / "secret-keys"
    if not keys.exists():
        print('Error from server (NotFound): secrets "nev-ingest" not found', file=sys.stderr)
        sys.exit(1)
    lits = ["--from-literal=" + k + "=v" for k in keys.read_text().split()]
    cmd = [real, "create", "secret", "generic", "nev-ingest", *lits, "--dry-run=client"]
    sys.exit(subprocess.run([*cmd, "-o", out]).returncode)
if args[2:4] == ["get", "job"]:
    if "range" in out:  # one look at the Job's state: the scenario's next one
        calls = (state / "calls").read_text().splitlines()
        applied = any(json.loads(c)[:2] == ["apply", "-k"] for c in calls)
        name = "job-states" if applied else "pre-states"  # the Job of an earlier run before
        states = json.loads((state / name).read_text())
        (state / "current").write_text(json.dumps(states[0]))
        (state / name).write_text(json.dumps(states[1:] or states))
    current = json.loads((state / "current").read_text())
    if current is None:
        print("Unable to connect to the server: EOF", file=sys.stderr)
        sys.exit(1)
    if current == "NotFound":
        print('Error from server (NotFound): jobs.batch "' + args[4] + '" not found',
              file=sys.stderr)
        sys.exit(1)
    msg = "Job has reached the specified backoff limit"
    conditions = [dict(type=t, status="True", message=msg) for t in current]
    job = dict(apiVersion="batch/v1", kind="Job", metadata=dict(name="nev-ingest-migrate"),
               spec=dict(template=dict(spec=dict(restartPolicy="Never",
                         containers=[dict(name="migrate", image="nev-ingest")]))),
               status=dict(conditions=conditions))
    (state / "job.json").write_text(json.dumps(job))
    cmd = [real, "label", "--local", "-f", str(state / "job.json"), "fake=1", "-o", out]
    sys.exit(subprocess.run(cmd).returncode)
if args[2:4] == ["get", "pods"]:  # the Job's pods: the script's expression on each
    head, tail = "jsonpath={{range .items[*]}}", "{{end}}"
    if not (out.startswith(head) and out.endswith(tail)):
        sys.exit("fake kubectl: expected " + head + "...." + tail + ", not " + out)
    looks = json.loads((state / "pods").read_text())  # the pods at each look; the last stays
    (state / "pods").write_text(json.dumps(looks[1:] or looks))
    for i, pod in enumerate(looks[0]):
        (state / "pod.json").write_text(json.dumps(pod))
        each = "jsonpath=" + out[len(head):-len(tail)]
        cmd = [real, "label", "--local", "-f", str(state / "pod.json"), "fake=1", "-o", each]
        subprocess.run(cmd, check=True)
if args[2:3] == ["logs"]:
    print({logs!r})
"""


@dataclass
class Run:
    rc: int
    stderr: str
    calls: list[str]  # each kubectl call's arguments, joined

    def polls(self, before_apply: bool = False) -> int:
        """Looks at the Job's state after ``apply -k`` of the migration (or before it)."""
        first = next((i for i, c in enumerate(self.calls) if c.startswith("apply -k ")), None)
        calls = self.calls[:first] if before_apply else self.calls[first:] if first else []
        return sum("jsonpath={range .status" in c for c in calls)

    def applied(self) -> list[str]:
        return [c.removeprefix("apply -k ") for c in self.calls if c.startswith("apply -k ")]


def _run(
    tmp_path: Path,
    job_states: list[list[str] | str | None],
    secret_keys: list[str] | None = KEYS,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    pre_states: list[list[str] | str | None] | None = None,
    pods: list[dict[str, object]] | None = None,
    pod_looks: list[list[dict[str, object]]] | None = None,
    kustomized: str | None = None,
) -> Run:
    """apply.sh against the fake kubectl: ``job_states`` are the Job's True conditions at each
    look after ``apply -k`` (None: kubectl cannot reach the API server then; "NotFound": there
    is no such Job; the last one stays), ``pre_states`` the same before it (an earlier run's
    Job; default: none); ``pods`` the Job's pods, at every look, or ``pod_looks`` at each look
    (the last stays); ``kustomized`` what ``kubectl kustomize`` prints (default: the real
    one's output)."""
    real = shutil.which("kubectl")
    if real is None:
        pytest.skip("no kubectl here: the fake answers through the real one, offline")
    state = tmp_path / "state"
    state.mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(FAKE.format(python=sys.executable, real=real, state=str(state), logs=LOGS))
    fake.chmod(0o755)
    (state / "job-states").write_text(json.dumps(job_states))
    (state / "pre-states").write_text(json.dumps(pre_states or ["NotFound"]))
    (state / "pods").write_text(json.dumps(pod_looks or [pods or []]))
    if kustomized is not None:
        (state / "kustomized").write_text(kustomized)
    (state / "current").write_text("[]")
    if secret_keys is not None:
        (state / "secret-keys").write_text("\n".join(secret_keys))
    done = subprocess.run(
        ["bash", SCRIPT, *args],
        env={
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "NEV_K8S_POLL_S": "0",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=GUARD_S,
    )
    calls = state / "calls"
    lines = calls.read_text().splitlines() if calls.exists() else []
    calls_made = [" ".join(json.loads(line)) for line in lines]
    # Not the parse of kustomize's output (``label --local``: offline, in a pipeline with it,
    # so logged before or after it): what the script asks the cluster, and in which order.
    offline = [c for c in calls_made if c.startswith("label --local -f - ")]
    assert all(" -n " not in c for c in offline), offline
    return Run(done.returncode, done.stderr, [c for c in calls_made if c not in offline])


def test_a_completed_migration_then_rolls_the_deployments_in_order(tmp_path: Path) -> None:
    run = _run(tmp_path / "first", [[], None, ["SuccessCriteriaMet", "Complete"]])
    assert run.rc == 0, run.stderr
    steps = [c.split(" -o ")[0] for c in run.calls]
    pods = "-n nev-ingest get pods -l job-name=nev-ingest-migrate"  # none that cannot start
    assert steps == [
        f"kustomize {MIGRATE}",
        f"kustomize {K8S}",
        "-n nev-ingest get secret nev-ingest",
        "-n nev-ingest get job nev-ingest-migrate",  # none yet: a first install
        f"apply -k {MIGRATE}",
        *["-n nev-ingest get job nev-ingest-migrate", pods] * 2,  # running, then unreachable
        "-n nev-ingest get job nev-ingest-migrate",
        f"apply -k {K8S}",
    ]
    for previous in (["Complete"], ["FailureTarget", "Failed"]):  # the last release's Job
        run = _run(tmp_path / previous[-1], [["Complete"]], pre_states=[previous])
        assert run.rc == 0, run.stderr
        steps = [c.split(" -o ")[0] for c in run.calls][3:6]
        assert steps == [
            "-n nev-ingest get job nev-ingest-migrate",
            "-n nev-ingest delete job nev-ingest-migrate --ignore-not-found",
            f"apply -k {MIGRATE}",
        ]


def test_a_failed_migration_stops_at_once_non_zero_with_its_logs_and_rolls_nothing(
    tmp_path: Path,
) -> None:
    """``kubectl wait --for=condition=complete`` sat out its 15 minutes on a failed Job; the
    script stops at the first look that shows Failed (FailureTarget first, as Kubernetes 1.31+
    sets it), names the cause and the logs command, and never applies the base."""
    run = _run(tmp_path, [[], None, ["FailureTarget"], ["FailureTarget", "Failed"], []])
    assert run.rc == 1, run.stderr
    assert run.polls() == 4, "stop at the first look that shows Failed"
    assert run.applied() == [str(MIGRATE)], "a failed migration must not roll the Deployments"
    assert "kubectl -n nev-ingest logs job/nev-ingest-migrate" in run.stderr
    assert "backoff limit" in run.stderr and LOGS in run.stderr


def test_a_migration_past_the_timeout_rolls_nothing(tmp_path: Path) -> None:
    run = _run(tmp_path, [[]], env={"NEV_K8S_MIGRATE_TIMEOUT_S": "0"})
    assert run.rc == 1, run.stderr
    assert "neither completed nor failed in 0s" in run.stderr
    assert "run this again to wait for it further" in run.stderr
    assert run.applied() == [str(MIGRATE)]


def test_a_running_job_of_an_earlier_run_is_waited_for_not_deleted(tmp_path: Path) -> None:
    """The timeout's advice, run this again, began by deleting the Job that still ran: its
    migration was killed halfway. Now a Job neither complete nor failed is waited for, and
    deleted (for the release's own) only once it completed."""
    run = _run(tmp_path / "done", [["Complete"]], pre_states=[[], None, ["Complete"]])
    assert run.rc == 0, run.stderr
    steps = [c.split(" -o ")[0] for c in run.calls]
    delete = steps.index("-n nev-ingest delete job nev-ingest-migrate --ignore-not-found")
    looks_first = sum("jsonpath={range .status" in c for c in run.calls[:delete])
    assert looks_first == run.polls(before_apply=True) == 3, "deleted only once it completed"
    assert run.applied() == [str(MIGRATE), str(K8S)]
    assert "earlier run neither completed nor failed yet: waiting for it" in run.stderr
    run = _run(
        tmp_path / "late", [["Complete"]], pre_states=[[]], env={"NEV_K8S_MIGRATE_TIMEOUT_S": "0"}
    )
    assert run.rc == 1 and run.applied() == [], run.stderr
    assert not any(" delete " in c for c in run.calls), run.calls
    assert "run this again to wait for it further" in run.stderr
    run = _run(tmp_path / "failed", [["Complete"]], pre_states=[[], ["Failed"]])
    assert run.rc == 1 and run.applied() == [], run.stderr
    assert "job/nev-ingest-migrate failed" in run.stderr


def test_no_secret_or_one_lacking_keys_applies_nothing(tmp_path: Path) -> None:
    run = _run(tmp_path / "none", [["Complete"]], secret_keys=None)
    assert run.rc == 2 and run.applied() == [], run.stderr
    assert "create secret generic nev-ingest" in run.stderr and "not found" in run.stderr
    assert "\n" not in run.stderr.strip(), "one line"
    partial = [k for k in KEYS if k not in ("kafka-gateway-password", "pg-ca.crt")]
    run = _run(tmp_path / "partial", [["Complete"]], secret_keys=partial)
    assert run.rc == 2 and run.applied() == [], run.stderr
    assert "lacks kafka-gateway-password pg-ca.crt" in run.stderr


def test_overlays_and_bad_usage(tmp_path: Path) -> None:
    overlays = _overlays(tmp_path / "overlays")
    run = _run(tmp_path / "ok", [["Complete"]], args=tuple(map(str, overlays)))
    assert run.rc == 0 and run.applied() == list(map(str, overlays)), run.stderr
    for name, args, env in (
        ("one", (str(overlays[0]),), {}),
        ("nokust", (str(tmp_path), str(overlays[1])), {}),
        ("minutes", (), {"NEV_K8S_MIGRATE_TIMEOUT_S": "15m"}),
    ):
        run = _run(tmp_path / name, [["Complete"]], args=args, env=env)
        assert run.rc == 2 and run.calls == [], f"{name}: {run.stderr}"
        assert run.stderr.startswith("apply.sh: ") and run.stderr.count("\n") == 1, run.stderr


def _overlays(root: Path, namespace: str | None = None) -> list[Path]:
    """An operator's overlays of deploy/k8s/migrate and deploy/k8s, in ``namespace`` if given."""
    overlays = []
    for name, of in (("migrate", MIGRATE), ("base", K8S)):
        overlay = root / name
        overlay.mkdir(parents=True)
        text = f"resources:\n  - {os.path.relpath(of, overlay)}\n"  # kustomize: no absolute
        if namespace is not None:
            text += f"namespace: {namespace}\n"
        (overlay / "kustomization.yaml").write_text(text)
        overlays.append(overlay)
    return overlays


def test_the_namespace_is_the_kustomizations_not_the_environments(tmp_path: Path) -> None:
    """The kustomizations name their namespace: NEV_K8S_NAMESPACE alone checked the Secret and
    deleted the old Job in another namespace than apply -k used, then waited out the timeout
    for a Job that was never there."""
    overlays = tuple(map(str, _overlays(tmp_path / "prod", "prod")))
    run = _run(tmp_path / "overlays", [["Complete"]], args=overlays)
    assert run.rc == 0, run.stderr
    looks = [c for c in run.calls if not c.startswith(("kustomize ", "apply -k "))]
    assert looks and all(c.startswith("-n prod ") for c in looks), looks
    for name, args, env in (
        ("mismatch", (), {"NEV_K8S_NAMESPACE": "prod"}),
        ("split", (overlays[0], str(K8S)), {}),  # the Job in prod, the Deployments not
    ):
        run = _run(tmp_path / name, [["Complete"]], args=args, env=env)
        assert run.rc == 2 and run.applied() == [], f"{name}: {run.stderr}"
        assert all(c.startswith("kustomize ") for c in run.calls), run.calls
        assert run.stderr.startswith("apply.sh: ") and run.stderr.count("\n") == 1, run.stderr


def test_the_script_checks_the_documented_keys_and_passes_shellcheck() -> None:
    assert os.access(SCRIPT, os.X_OK), f"chmod +x {SCRIPT}"
    text = SCRIPT.read_text()
    listed = re.search(r"^secret_keys=\((.*)\)$", text, re.MULTILINE)
    assert listed and listed[1].split() == KEYS, "apply.sh and docs/operations.md: same keys"
    done = subprocess.run(
        [_tool("shellcheck"), SCRIPT], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_seconds_with_a_leading_zero_are_decimal(tmp_path: Path) -> None:
    """bash read 0600 as octal (384 s) and stopped at 0900 ("value too great for base") after
    the migration was already applied."""
    for value in ("0900", "0600"):
        run = _run(tmp_path / value, [["Complete"]], env={"NEV_K8S_MIGRATE_TIMEOUT_S": value})
        assert run.rc == 0, run.stderr
        assert f"waiting up to {int(value)}s" in run.stderr


def test_a_job_not_found_after_the_apply_stops_at_once(tmp_path: Path) -> None:
    """NotFound is no passing API error: the loop waited out its whole timeout for it."""
    run = _run(tmp_path, [None, "NotFound"])
    assert run.rc == 1, run.stderr
    assert run.polls() == 2, "an unreachable API server is looked at again, NotFound is not"
    assert "job/nev-ingest-migrate is not in namespace nev-ingest" in run.stderr
    assert run.applied() == [str(MIGRATE)]


def _pod(status: dict[str, object]) -> dict[str, object]:
    return dict(
        apiVersion="v1",
        kind="Pod",
        metadata=dict(name="nev-ingest-migrate-x7k2p", labels={"job-name": "nev-ingest-migrate"}),
        spec=dict(containers=[dict(name="migrate", image="nev-ingest")]),
        status=dict(phase="Pending", **status),
    )


def _waiting(reason: str, message: str) -> dict[str, object]:
    return _pod(
        dict(
            containerStatuses=[
                dict(name="migrate", state=dict(waiting=dict(reason=reason, message=message)))
            ]
        )
    )


UNSCHEDULABLE = _pod(
    dict(
        conditions=[
            dict(
                type="PodScheduled",
                status="False",
                reason="Unschedulable",
                message="0/3 nodes are available: 3 Insufficient cpu.",
            )
        ]
    )
)


def test_a_pod_that_cannot_start_stops_at_once_and_rolls_nothing(tmp_path: Path) -> None:
    """A pod that never starts never makes the Job Failed (backoffLimit counts failed pods
    only): the script waited out its timeout. It now stops at the first look that shows it, with
    the reason and what to run; an unschedulable pod after NEV_K8S_UNSCHEDULABLE_S."""
    slow = {"NEV_K8S_MIGRATE_TIMEOUT_S": "20", "NEV_K8S_POLL_S": "1"}  # the old script's end
    no_grace = {"NEV_K8S_IMAGE_PULL_S": "0"}
    for name, pod, env in (
        (
            "pull",
            _waiting("ImagePullBackOff", 'Back-off pulling image "nev-ingest:0.1.0"'),
            no_grace,
        ),
        ("never", _waiting("ErrImageNeverPull", 'Container image "x" is not present'), {}),
        ("name", _waiting("InvalidImageName", 'Failed to apply default image tag "x:"'), {}),
        ("config", _waiting("CreateContainerConfigError", 'configmap "nev-ingest" not found'), {}),
        ("unschedulable", UNSCHEDULABLE, {"NEV_K8S_UNSCHEDULABLE_S": "0"}),
    ):
        run = _run(tmp_path / name, [[]], pods=[pod], env={**slow, **env})
        assert run.rc == 1 and run.applied() == [str(MIGRATE)], f"{name}: {run.stderr}"
        assert run.polls() == 1, f"{name}: stop at the first look that shows it"
        assert "cannot start its pod (nev-ingest-migrate-x7k2p " in run.stderr, run.stderr
        assert "kubectl -n nev-ingest describe pod nev-ingest-migrate-x7k2p" in run.stderr
        assert "kubectl -n nev-ingest delete job nev-ingest-migrate" in run.stderr
    # A cluster autoscaler's new node is waited for: the pod is named, the deadline stops it.
    run = _run(
        tmp_path / "autoscaler", [[]], pods=[UNSCHEDULABLE], env={"NEV_K8S_MIGRATE_TIMEOUT_S": "0"}
    )
    assert run.rc == 1, run.stderr
    assert "Unschedulable: 0/3 nodes are available" in run.stderr
    assert "neither completed nor failed in 0s (its pod nev-ingest-migrate-x7k2p" in run.stderr
    # A pod that started (or no pod yet) is no reason to stop.
    running = _pod(dict(containerStatuses=[dict(name="migrate", state=dict(running={}))]))
    run = _run(tmp_path / "running", [[], ["Complete"]], pods=[running])
    assert run.rc == 0 and run.polls() == 2, run.stderr


PULL_FAILED = _waiting("ErrImagePull", 'failed to pull "nev-ingest:0.1.0": i/o timeout')
BACK_OFF = _waiting("ImagePullBackOff", 'Back-off pulling image "nev-ingest:0.1.0"')


def test_a_pull_that_fails_for_a_while_is_waited_for(tmp_path: Path) -> None:
    """A registry blip stopped the script at the first ErrImagePull, though the kubelet pulls
    again and the migration then runs. A pull failing (ErrImagePull and ImagePullBackOff, as the
    kubelet alternates them) has NEV_K8S_IMAGE_PULL_S, as an unschedulable pod has its own
    grace; past it, the script stops as before, saying for how long it failed."""
    running = _pod(dict(containerStatuses=[dict(name="migrate", state=dict(running={}))]))
    run = _run(
        tmp_path / "blip",
        [[], [], [], ["Complete"]],
        pod_looks=[[PULL_FAILED], [BACK_OFF], [running]],
    )
    assert run.rc == 0 and run.applied() == [str(MIGRATE), str(K8S)], run.stderr
    assert run.polls() == 4
    assert "ErrImagePull: failed to pull" in run.stderr and "waiting up to 300s" in run.stderr
    # Failing past the grace: stopped (the Job's own timeout is further away).
    slow = {"NEV_K8S_MIGRATE_TIMEOUT_S": "60", "NEV_K8S_POLL_S": "1", "NEV_K8S_IMAGE_PULL_S": "1"}
    run = _run(tmp_path / "gone", [[]], pod_looks=[[PULL_FAILED], [BACK_OFF]], env=slow)
    assert run.rc == 1 and run.applied() == [str(MIGRATE)], run.stderr
    assert run.polls() >= 2, "not at the first look"
    assert "cannot start its pod (nev-ingest-migrate-x7k2p ImagePullBackOff: " in run.stderr
    assert "for 1s: the Deployments were NOT rolled" in run.stderr
    run = _run(tmp_path / "bad", [[]], env={"NEV_K8S_IMAGE_PULL_S": "5m"})
    assert run.rc == 2 and run.calls == [], run.stderr


def test_the_objects_are_read_as_yaml_not_by_their_layout(tmp_path: Path) -> None:
    """apply.sh read each object's kind, name and namespace with an awk of kustomize's layout
    (metadata's fields indented by exactly two spaces): the same objects printed otherwise
    (indented by four, or metadata in flow style) gave the Job no name nor namespace. kubectl's
    own YAML parser reads them now, whatever the layout."""
    objects = [
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n    name: nev-ingest-migrate\n"
        "    namespace: prod\nspec:\n    backoffLimit: 3\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nev-ingest, namespace: prod}\n"
        "data:\n  namespace: other\n",
        *(  # the service and the gateway (apply.sh finds them by what they run)
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: prod}}\n"
            f"spec:\n    template:\n        spec:\n            containers:\n"
            f"                - {{name: {name}, args: [{args}]}}\n"
            for name, args in (("nev-ingest", "run"), ("nev-gateway", "gateway, run"))
        ),
    ]
    run = _run(tmp_path, [["Complete"]], kustomized="---\n".join(objects))
    assert run.rc == 0, run.stderr
    looks = [c for c in run.calls if not c.startswith(("kustomize ", "apply -k "))]
    assert looks and all(c.startswith("-n prod ") for c in looks), looks


def _patched(root: Path, patches: str) -> tuple[str, str]:
    """An operator's overlays (migration, base), the base's with ``patches`` (kustomize's
    ``patches:`` list, indented as in its kustomization.yaml)."""
    migrate, base = _overlays(root)
    with (base / "kustomization.yaml").open("a") as f:
        f.write("patches:\n" + patches)
    return str(migrate), str(base)


def _data(name: str, **data: str) -> str:
    lines = "".join(f"        {k}: {v}\n" for k, v in data.items())
    return (
        "  - patch: |\n      apiVersion: v1\n      kind: ConfigMap\n"
        f"      metadata: {{name: {name}}}\n      data:\n{lines}"
    )


def _refused(run: Run, said: str) -> None:
    """A refusal before anything was applied: one line, holding ``said``."""
    assert run.rc == 2 and run.applied() == [], run.stderr
    assert all(c.startswith("kustomize ") for c in run.calls), run.calls
    assert run.stderr.startswith("apply.sh: ") and run.stderr.count("\n") == 1, run.stderr
    assert said in run.stderr, run.stderr


def _applied(tmp_path: Path, cases: dict[str, str]) -> None:
    """Each case's patches of the base (``_patched``) let the script apply both overlays."""
    for name, patches in cases.items():
        args = _patched(tmp_path / name, patches)
        run = _run(tmp_path / name, [["Complete"]], args=args)
        assert run.rc == 0 and run.applied() == list(args), f"{name}: {run.stderr}"


def test_the_gateways_settings_agree_with_the_services_and_hold_none_of_its_logins(
    tmp_path: Path,
) -> None:
    """The gateway reads the ConfigMap nev-gateway, no longer nev-ingest (kept as it was for the
    pods of the release being upgraded). An overlay that patched nev-ingest alone (the Kafka or
    database the docs said to point it at) would leave the gateway on the base's; one that gave
    the gateway a service login would stop it at start (a file its pods do not mount) or log it
    in as the service. Each is refused, in one line, before anything is applied; the service's
    logins set in nev-ingest (what the docs asked for) are the service's alone."""
    servers = "kafka.prod.svc:9093"
    refused = {
        "one side": (_data("nev-ingest", NEV_KAFKA_BOOTSTRAP_SERVERS=servers), "nev-gateway"),
        "a login": (
            _data("nev-gateway", NEV_POSTGRES_PASSWORD_FILE="/run/secrets/nev/pg-password"),
            "take it out of nev-gateway",
        ),
        "reads nev-ingest": (
            "  - target: {kind: Deployment, name: nev-gateway}\n    patch: |\n"
            "      - op: replace\n"
            "        path: /spec/template/spec/containers/0/envFrom/0/configMapRef/name\n"
            "        value: nev-ingest\n",
            "from ConfigMap nev-ingest",
        ),
    }
    said_by: dict[str, str] = {}
    for name, (patches, said) in refused.items():
        run = _run(tmp_path / name, [["Complete"]], args=_patched(tmp_path / name, patches))
        _refused(run, said)
        assert 'docs/operations.md, "Upgrade"' in run.stderr, run.stderr
        said_by[name] = run.stderr
    assert f'NEV_KAFKA_BOOTSTRAP_SERVERS="{servers}"' in said_by["one side"]
    allowed = {
        "both sides": _data("nev-ingest", NEV_KAFKA_BOOTSTRAP_SERVERS=servers)
        + _data("nev-gateway", NEV_KAFKA_BOOTSTRAP_SERVERS=servers),
        "service login": _data("nev-ingest", NEV_KAFKA_SASL_USERNAME="nev-service-eu"),
    }
    _applied(tmp_path, allowed)


def test_only_the_shared_keys_must_agree_and_no_service_credential_reaches_the_gateway(
    tmp_path: Path,
) -> None:
    """The check demanded that every key of nev-ingest be repeated in nev-gateway: the service's
    PostgreSQL client certificate, Kafka mTLS or a password set in nev-ingest was refused until
    copied into nev-gateway, where it stopped the gateway at start (a file it does not mount) or
    gave it the service's secret. Now only the keys both read alike must be equal (the brokers,
    how to reach them, the topics); each credential or file of the service is refused in
    nev-gateway; anything else may differ."""
    cert = {
        "NEV_POSTGRES_SSLCERT": "/run/secrets/nev/pg-client.crt",
        "NEV_POSTGRES_SSLKEY": "/run/secrets/nev/pg-client.key",
    }
    mtls = {
        "NEV_KAFKA_SSL_CERTFILE": "/run/secrets/nev/kafka-client.crt",
        "NEV_KAFKA_SSL_KEYFILE": "/run/secrets/nev/kafka-client.key",
        "NEV_KAFKA_SSL_KEY_PASSWORD": "k3y",
    }
    allowed = {
        "pg client cert": _data("nev-ingest", **cert),
        "kafka mtls": _data("nev-ingest", **mtls),
        "passwords": _data("nev-ingest", NEV_POSTGRES_PASSWORD="pw", NEV_KAFKA_SASL_PASSWORD="pw"),
        "service only": _data("nev-ingest", NEV_PIPELINE_WORKERS='"4"', NEV_LOG_LEVEL="DEBUG"),
        "gateway only": _data("nev-gateway", NEV_GATEWAY_MAX_CONNECTIONS_PER_PEER='"50"'),
    }
    _applied(tmp_path, allowed)
    for key, value in {**cert, **mtls, "NEV_POSTGRES_PASSWORD": "pw"}.items():
        patches = _data("nev-ingest", **{key: value}) + _data("nev-gateway", **{key: value})
        run = _run(tmp_path / key, [["Complete"]], args=_patched(tmp_path / key, patches))
        _refused(run, f"reads {key}, the service's credential or file, from ConfigMap nev-gateway")
    run = _run(
        tmp_path / "dlq",
        [["Complete"]],
        args=_patched(tmp_path / "dlq", _data("nev-gateway", NEV_KAFKA_TOPIC_DLQ="eu.dlq")),
    )
    _refused(run, 'has NEV_KAFKA_TOPIC_DLQ="nev.dlq" in ConfigMap nev-ingest')


def test_the_shared_keys_are_those_nev_gateway_holds_and_real_settings() -> None:
    """apply.sh's two lists against the ConfigMaps and the settings: nev-gateway holds the
    shared keys with nev-ingest's values (and its own log format), and each listed key is a
    setting's variable (a misspelt one would check nothing)."""
    text = SCRIPT.read_text()
    lists = {
        name: re.search(rf"^{name}=\(([^)]*)\)$", text, re.MULTILINE | re.DOTALL)
        for name in ("shared", "service_only")
    }
    shared, service_only = (m[1].split() if m else [] for m in lists.values())
    config = _resources(K8S)
    ingest = config[("ConfigMap", "nev-ingest")]["data"]
    gateway = config[("ConfigMap", "nev-gateway")]["data"]
    assert sorted(set(gateway) - {"NEV_LOG_FORMAT"}) == sorted(shared)
    assert all(gateway[k] == ingest[k] for k in shared)
    documented = set(re.findall(r"`(NEV_[A-Z0-9_]+)`", (DOCS / "configuration.md").read_text()))
    secrets = {"NEV_KAFKA_SASL_PASSWORD", "NEV_KAFKA_SSL_KEY_PASSWORD", "NEV_POSTGRES_PASSWORD"}
    real = documented | {f"{k}_FILE" for k in secrets}
    assert set(shared) | set(service_only) <= real
    assert not set(shared) & set(service_only)


def test_renamed_objects_are_checked_not_skipped(tmp_path: Path) -> None:
    """The check looked for the Deployment named nev-gateway and the ConfigMap nev-ingest: an
    overlay with a namePrefix or nameSuffix (eu-nev-gateway, ...) skipped it silently, so one
    that patched the service's Kafka alone left the gateway on the base's. The containers are
    now found by what they run and their ConfigMaps by what they name; with no gateway to
    check, the script refuses."""
    servers = "kafka.eu.svc:9093"
    for name, suffix in (("prefix", "namePrefix: eu-\n"), ("suffix", "nameSuffix: -eu\n")):
        cases = {
            "one side": _data("nev-ingest", NEV_KAFKA_BOOTSTRAP_SERVERS=servers),
            "both": _data("nev-ingest", NEV_KAFKA_BOOTSTRAP_SERVERS=servers)
            + _data("nev-gateway", NEV_KAFKA_BOOTSTRAP_SERVERS=servers),
            "a login": _data("nev-gateway", NEV_POSTGRES_PASSWORD_FILE="/run/secrets/nev/pg"),
        }
        for case, patches in cases.items():
            root = tmp_path / name / case
            args = _patched(root, patches)
            for overlay in args:
                with (Path(overlay) / "kustomization.yaml").open("a") as f:
                    f.write(suffix)
            run = _run(root, [["Complete"]], args=args)
            if case == "both":
                assert run.rc == 0 and run.applied() == list(args), f"{name}: {run.stderr}"
            elif case == "one side":
                _refused(run, f'NEV_KAFKA_BOOTSTRAP_SERVERS="{servers}" in ConfigMap ')
            else:
                _refused(run, "reads NEV_POSTGRES_PASSWORD_FILE, the service's credential")
    gone = (
        "  - patch: |\n      $patch: delete\n      apiVersion: apps/v1\n      kind: Deployment\n"
        "      metadata: {name: nev-gateway}\n"
    )
    run = _run(tmp_path / "gone", [["Complete"]], args=_patched(tmp_path / "gone", gone))
    _refused(run, "has no Deployment running the gateway")
