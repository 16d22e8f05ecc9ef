"""deploy/k8s (kustomize base), checked with what runs here (no cluster): each resource against
the Kubernetes JSON schemas (kubernetes-validate, strict: an unknown field fails), then what the
schemas cannot know: the autoscaling rule (max replicas x workers <= partitions), settings and
commands that exist, probes on the metrics port, non-root read-only containers, resources from
docs/capacity.md, and selectors that select."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devtools.devstack import kafka_secure as ks
from ingest.config.load import load_settings
from ingest.config.settings import Settings
from ingest.gateway.server import stop_s
from ingest.pipeline.multiproc_dir import WORKER_METRICS_ROOM
from tests.unit.test_deploy_compose import _tool, check_command, check_settings, load_yaml

pytestmark = pytest.mark.unit

K8S = Path(__file__).parents[2] / "deploy" / "k8s"
MIGRATE = K8S / "migrate"  # the migration Job's kustomization, applied before the base
K8S_VERSION = "1.33.0"  # the oldest minor the base targets (PDB policy/v1, HPA behavior)
WORKER_RSS_MIB = 500  # docs/capacity.md: measured RSS 240-500 MB per worker


def _files(kustomization: Path) -> list[Path]:
    """The manifest files a kustomization directory applies, through the directories it lists
    (kustomize's rule: a directory resource is a kustomization of its own)."""
    out: list[Path] = []
    for name in load_yaml(kustomization / "kustomization.yaml")[0]["resources"]:
        path = (kustomization / name).resolve()
        out += _files(path) if path.is_dir() else [path]
    return out


def _resources(*roots: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> resource, of every file the kustomizations (by default the base and the
    migration) apply."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in {p for root in roots or (K8S, MIGRATE) for p in _files(root)}:
        for doc in load_yaml(path):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def _pod_specs() -> dict[str, dict[str, Any]]:
    r = _resources()
    return {
        name: doc["spec"]["template"]["spec"]
        for (kind, name), doc in r.items()
        if kind in ("Deployment", "Job")
    }


def _documented_secret() -> dict[str, str | None]:
    """Key -> literal value (None: from a file) of the Secret that docs/operations.md, "Deploy",
    tells the operator to create: the one source of the Secret, since no kustomization applies
    it."""
    docs = (K8S.parents[1] / "docs" / "operations.md").read_text()
    create = "kubectl -n nev-ingest create secret generic nev-ingest"
    assert create in docs, f"docs/operations.md, Deploy: give the command ({create} ...)"
    start = docs.index(create)
    command = shlex.split(docs[start:].split("\n\n", 1)[0].replace("\\\n", " "))
    keys: dict[str, str | None] = {}
    for arg in command[len(create.split()) :]:
        kind, _, rest = arg.partition("=")
        key, _, value = rest.partition("=")
        assert kind in ("--from-file", "--from-literal") and key and value, arg
        keys[key] = value if kind == "--from-literal" else None
    return keys


def _secret_keys_used() -> set[tuple[str, str]]:
    """(who, key) of every Secret key a resource reads: the files of the mounted Secret that a
    ``*_FILE`` setting names, and KEDA's TriggerAuthentication references."""
    used: set[tuple[str, str]] = set()
    for (kind, name), doc in _resources().items():
        if kind == "TriggerAuthentication":
            for ref in doc["spec"]["secretTargetRef"]:
                assert ref["name"] == "nev-ingest", f"{name}: reads Secret {ref['name']}"
                used.add((name, ref["key"]))
    for name, pod in _pod_specs().items():
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == "nev-ingest", name
        for c in pod["containers"]:
            (mount,) = [m for m in c["volumeMounts"] if m["name"] == volume["name"]]
            for key, value in _env(c).items():
                path = Path(value)
                if str(path.parent) == mount["mountPath"]:
                    used.add((f"{name} {key}", path.name))
    return used


def _env(
    container: dict[str, Any], r: dict[tuple[str, str], dict[str, Any]] | None = None
) -> dict[str, str]:
    """The container's NEV_ variables: its ConfigMaps (envFrom, a later one winning; of ``r``,
    by default the base's and the migration's files) and then its own ``env``, as the kubelet
    sets them."""
    r = r or _resources()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config = r[("ConfigMap", source["configMapRef"]["name"])]["data"]
        env.update({k: str(v) for k, v in config.items()})
    # a value from the pod (valueFrom) is known only there: a stand-in of the right shape
    env.update({e["name"]: str(e.get("value", "pod-name-0")) for e in container.get("env", [])})
    return env


def _mounted_keys(pod: dict[str, Any]) -> set[str]:
    """The Secret's keys a pod can read: its volume's ``items`` (each under its key's name),
    or, with none listed, every key of the Secret (the documented command's)."""
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    items = volume["secret"].get("items")
    if items is None:
        return set(_documented_secret())
    assert all(i["path"] == i["key"] for i in items), "mount each key under its own name"
    return {i["key"] for i in items}


def _load_as_mounted(
    pod: dict[str, Any],
    container: dict[str, Any],
    tmp_path: Path,
    r: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> Settings:
    """The container's settings loaded with its secret volume as the kubelet fills it: only
    the keys mounted exist, so a setting naming another one stops it as it would the pod."""
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    root = tmp_path / "mounted"
    root.mkdir(parents=True)
    for key in _mounted_keys(pod):
        (root / key).write_text("s3cret\n")
    prefix = mount["mountPath"] + "/"
    env = {
        k: str(root) + "/" + v[len(prefix) :] if v.startswith(prefix) else v
        for k, v in _env(container, r).items()
    }
    return load_settings(environ=env)


def test_each_pod_sees_only_the_secret_keys_it_reads(tmp_path: Path) -> None:
    """docs/security.md's two principals: the gateway mounted the whole Secret, so a pod that
    faces the devices could read the service's database and Kafka passwords. Each pod now
    mounts exactly the keys its settings name (the gateway: its own Kafka password and the
    brokers' CA), and its settings load with only those files there."""
    pods = _pod_specs()
    service_only = {"pg-password", "kafka-password", "kafka-username", "pg-ca.crt"}
    for name, pod in pods.items():
        (c,) = pod["containers"]
        read = {key for who, key in _secret_keys_used() if who.startswith(f"{name} ")}
        assert _mounted_keys(pod) == read, f"{name}: mount exactly the keys it reads ({read})"
        _load_as_mounted(pod, c, tmp_path / name)
    assert not _mounted_keys(pods["nev-gateway"]) & service_only
    assert _mounted_keys(pods["nev-gateway"]) == {"kafka-gateway-password", "kafka-ca.crt"}
    assert "kafka-gateway-password" not in _mounted_keys(pods["nev-ingest"])


# The pods of the release before the gateway had a ConfigMap of its own (0.1.0 as released):
# every container read the ConfigMap nev-ingest alone, with the whole Secret mounted, and the
# gateway set its own Kafka login in its env. Until step 2 of an upgrade rolls them, such pods
# restart (a KEDA scale-out, an eviction, a liveness restart) with what step 1 applied.
_PREVIOUS_RELEASE: dict[str, dict[str, str]] = {
    "nev-ingest": {},
    "nev-ingest-migrate": {},
    "nev-gateway": {
        "NEV_KAFKA_SASL_USERNAME": ks.GATEWAY,
        "NEV_KAFKA_SASL_PASSWORD_FILE": "/run/secrets/nev/kafka-gateway-password",
    },
}


def test_the_previous_releases_pods_still_start_during_an_upgrade(tmp_path: Path) -> None:
    """Step 1 of an upgrade (deploy/k8s/migrate, which includes the ConfigMaps) took the
    service's logins out of nev-ingest while the previous release's service pods, reading it
    alone, still ran: one restarting before step 2 (for ever if the migration failed) exited at
    start (kafka.security_protocol = SASL_SSL needs kafka.sasl_username ...). nev-ingest keeps
    what they read; the gateway reads a ConfigMap of its own."""
    config = _resources(MIGRATE)[("ConfigMap", "nev-ingest")]["data"]
    mounted = tmp_path / "secret"
    mounted.mkdir()
    for key in _documented_secret():  # the whole Secret, as those pods mount it
        (mounted / key).write_text("s3cret\n")
    for name, own in _PREVIOUS_RELEASE.items():
        env = {k: str(v) for k, v in config.items()} | own
        env = {k: v.replace("/run/secrets/nev", str(mounted)) for k, v in env.items()}
        kafka = load_settings(environ=env).kafka  # a UserError here: the pod would exit
        assert kafka.sasl_username == (ks.GATEWAY if name == "nev-gateway" else ks.SERVICE)


def _kustomized(overlay: Path, tmp_path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> resource, as ``kubectl kustomize`` (offline) renders ``overlay``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here: an overlay cannot be rendered")
    built = subprocess.run(
        [kubectl, "kustomize", overlay], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(built.stdout)
    return {(d["kind"], d["metadata"]["name"]): d for d in load_yaml(rendered)}


def test_an_overlay_of_the_services_logins_changes_the_service_and_not_the_gateway(
    tmp_path: Path,
) -> None:
    """docs/operations.md asked operators to set NEV_KAFKA_SASL_USERNAME (and the database's
    CA) in ConfigMap nev-ingest. With the service's logins moved to a ConfigMap read after it,
    such an overlay silently lost to it (the service logged in as the base's principal), and the
    gateway, reading nev-ingest, got a file path its pods no longer mount and exited at start.
    Rendered by kustomize as an operator's overlay is: the service takes the overlay's values,
    the gateway starts, as its own principal."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        f"resources:\n  - {os.path.relpath(K8S, overlay)}\n"
        "patches:\n"
        "  - patch: |\n"
        "      apiVersion: v1\n"
        "      kind: ConfigMap\n"
        "      metadata: {name: nev-ingest}\n"
        "      data:\n"
        "        NEV_KAFKA_SASL_USERNAME: nev-service-eu\n"
        "        NEV_POSTGRES_SSLROOTCERT: /run/secrets/nev/pg-ca.crt\n"
    )
    r = _kustomized(overlay, tmp_path)
    logins = {}
    for name in ("nev-ingest", "nev-gateway"):
        pod = r[("Deployment", name)]["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        settings = _load_as_mounted(pod, c, tmp_path / name, r)  # a UserError: it would exit
        logins[name] = settings.kafka.sasl_username
    assert logins == {"nev-ingest": "nev-service-eu", "nev-gateway": ks.GATEWAY}


def test_every_file_is_listed_and_valid_against_the_kubernetes_schemas(tmp_path: Path) -> None:
    listed = set(_files(K8S)) | set(_files(MIGRATE))
    on_disk = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk, "list every manifest in a kustomization.yaml (and only those)"
    validate = _tool("kubernetes-validate")
    files = sorted(listed)
    done = subprocess.run(
        [validate, "--strict", "-k", K8S_VERSION, *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed for resource") == len(_resources()) - 2  # KEDA's two CRDs
    broken = tmp_path / "deployment.yaml"
    broken.write_text((K8S / "ingest-deployment.yaml").read_text().replace("envFrom:", "envFron:"))
    caught = subprocess.run(
        [validate, "--strict", "-k", K8S_VERSION, broken],
        capture_output=True,
        text=True,
        check=False,
    )
    assert caught.returncode != 0  # strict: an unknown field fails


def test_autoscaling_never_runs_more_workers_than_partitions(tmp_path: Path) -> None:
    r = _resources()
    scaled = r[("ScaledObject", "nev-ingest")]["spec"]
    (service,) = _pod_specs()["nev-ingest"]["containers"]
    settings = check_settings(_env(service), tmp_path)
    workers, partitions = settings.pipeline.workers, settings.kafka.partitions
    assert scaled["maxReplicaCount"] * workers <= partitions
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert scaled["scaleTargetRef"]["name"] == "nev-ingest"
    # KEDA owns the count: a `replicas` in the Deployment would reset it at every apply -k
    target = r[("Deployment", scaled["scaleTargetRef"]["name"])]["spec"]
    assert "replicas" not in target, "drop spec.replicas: KEDA's minReplicaCount is the start"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == settings.kafka.group_id
    assert trigger["metadata"]["bootstrapServers"] == settings.kafka.bootstrap_servers
    auth = r[("TriggerAuthentication", trigger["authenticationRef"]["name"])]["spec"]
    secret = _documented_secret()
    for ref in auth["secretTargetRef"]:
        assert ref["name"] == "nev-ingest" and ref["key"] in secret
    # KEDA names the same Kafka in places of its own: the deploy docs must send an operator
    # pointing the ConfigMap at their cluster to those too, or KEDA watches the wrong lag.
    docs = (K8S.parents[1] / "docs" / "operations.md").read_text()
    kubernetes = docs.split("**Kubernetes.**", 1)[1].split("\n\n", 1)[0]
    for name in ("bootstrapServers", "consumerGroup", "kafka-username"):
        assert name in kubernetes, f"docs/operations.md, Deploy/Kubernetes: say {name} changes"


def test_commands_and_settings_exist(tmp_path: Path) -> None:
    for name, pod in _pod_specs().items():
        for c in pod["containers"]:
            check_command(c["args"])
            check_settings(_env(c), tmp_path)
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            for key, value in _env(c).items():
                if key.endswith("_FILE"):
                    assert str(Path(value).parent) in mounts, f"{name}: {key} is not mounted"


def test_probes_security_and_resources(tmp_path: Path) -> None:
    shutdown = load_settings(environ={}).pipeline.shutdown_timeout_s
    for name, pod in _pod_specs().items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            # a writable /tmp: the workers' metrics files (root filesystem read-only)
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}  # noqa: S108
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), name
            if name == "nev-ingest-migrate":
                continue
            s = check_settings(_env(c), tmp_path)
            gateway = c["args"][0] == "gateway"
            port = s.gateway.metrics_port if gateway else s.metrics.port
            host = s.gateway.metrics_host if gateway else s.metrics.host
            named = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert named["metrics"] == port, name
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
            assert host == "0.0.0.0", f"{name}: the kubelet probes from outside"  # noqa: S104
            if gateway:
                # Above the gateway's worst-case stop (the code's own, docs/gateway.md "Stop"):
                # a stalled part must not get it killed before it answered what Kafka took.
                grace = pod["terminationGracePeriodSeconds"]
                assert grace > stop_s(s.gateway.shutdown_timeout_s), name
    ingest = _pod_specs()["nev-ingest"]
    assert ingest["terminationGracePeriodSeconds"] > shutdown + 20
    (c,) = ingest["containers"]
    workers = int(_env(c)["NEV_PIPELINE_WORKERS"])
    memory = c["resources"]["requests"]["memory"]
    assert memory.endswith("Gi") and int(memory[:-2]) * 1024 >= workers * WORKER_RSS_MIB
    # /tmp holds the live workers' metric files (the room the supervisor wants for each) and
    # the dead workers' archive (at most as much again): restarts leave no files behind.
    [tmp] = [v for v in ingest["volumes"] if v["name"] == "tmp"]
    size = tmp["emptyDir"]["sizeLimit"]
    assert size.endswith("Mi") and int(size[:-2]) << 20 >= 2 * workers * WORKER_METRICS_ROOM


def test_prometheus_scrape_annotations_match_the_metrics_ports_and_jobs(tmp_path: Path) -> None:
    """Each Deployment's pods say where Prometheus scrapes them (``prometheus.io/port``: the
    port the process serves its metrics on), and their ``app.kubernetes.io/name`` is a job of
    deploy/prometheus/prometheus.yml: relabelled to ``job``, the alert rules and dashboards
    select them (docs/operations.md, "Alert rules and runbooks")."""
    config = load_yaml(K8S.parent / "prometheus" / "prometheus.yml")[0]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    scraped = set()
    for (kind, name), doc in _resources().items():
        if kind != "Deployment":
            continue
        template = doc["spec"]["template"]
        notes = template["metadata"]["annotations"]
        (c,) = template["spec"]["containers"]
        s = check_settings(_env(c), tmp_path)
        port = s.gateway.metrics_port if c["args"][0] == "gateway" else s.metrics.port
        assert notes["prometheus.io/scrape"] == "true", name
        assert int(notes["prometheus.io/port"]) == port, f"{name}: scraped on another port"
        job = template["metadata"]["labels"]["app.kubernetes.io/name"]
        assert job in jobs, f"{name}: {job} is no scrape job of prometheus.yml"
        scraped.add(job)
    assert scraped == jobs == {"nev-ingest", "nev-gateway"}


def test_selectors_select_and_the_gateway_is_behind_an_l4_load_balancer() -> None:
    r = _resources()
    labels = {
        name: doc["spec"]["template"]["metadata"]["labels"]
        for (kind, name), doc in r.items()
        if kind == "Deployment"
    }
    for (kind, name), doc in r.items():
        if kind == "PodDisruptionBudget":
            sel = doc["spec"]["selector"]["matchLabels"]
            assert any(sel.items() <= lab.items() for lab in labels.values()), name
        if kind == "Deployment":
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels[name].items()
    svc = r[("Service", "nev-gateway")]["spec"]
    assert svc["type"] == "LoadBalancer"
    assert svc["selector"].items() <= labels["nev-gateway"].items()
    (gw,) = _pod_specs()["nev-gateway"]["containers"]
    ports = {p["name"]: p for p in gw["ports"]}
    for p in svc["ports"]:
        assert p["protocol"] == "TCP" and ports[p["targetPort"]]["protocol"] == "TCP"


def test_the_migration_is_applied_and_waited_for_before_the_deployments() -> None:
    """The Job is not in the base: one ``apply -k`` would start the new pods alongside it. Its
    own kustomization carries the same settings and release tag, and docs/operations.md's
    Upgrade runs deploy/k8s/apply.sh, which applies them in the order that works again for the
    next release (tests/unit/test_deploy_k8s_apply.py), not a ``kubectl wait`` that sits out its
    timeout on a failed Job."""
    jobs = {name for kind, name in _resources(K8S) if kind == "Job"}
    assert not jobs, f"{jobs}: move the Job to {MIGRATE} (applied and waited for first)"
    migrate = _resources(MIGRATE)
    assert ("Job", "nev-ingest-migrate") in migrate
    base = _resources(K8S)
    shared_objects = (
        ("Namespace", "nev-ingest"),
        ("ConfigMap", "nev-ingest"),
        ("ConfigMap", "nev-gateway"),
    )
    for shared in shared_objects:
        assert migrate[shared] == base[shared], f"{shared}: the Job runs with the release's own"
    images = [load_yaml(k / "kustomization.yaml")[0]["images"] for k in (K8S, MIGRATE)]
    assert images[0] == images[1], "the migration and the Deployments are one release"
    docs = (K8S.parents[1] / "docs" / "operations.md").read_text()
    upgrade = docs.split("## Upgrade", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for line in upgrade.splitlines() if line.startswith("       ")]
    assert commands[0].startswith("deploy/k8s/apply.sh"), "Upgrade: run deploy/k8s/apply.sh"
    waits = [c for c in commands if " wait " in c]
    assert not waits, f"docs/operations.md, Upgrade: {waits} waits out a failed Job"


def test_the_gateway_and_the_service_are_their_own_kafka_principals(tmp_path: Path) -> None:
    """docs/security.md's ACLs give nev-gateway (write raw topics and dead letters) and
    nev-service (read raw, write DLQ and alerts) different rights: one shared login would need
    both sets, so either could do the other's job. Each logs in as its own, with its own
    password from the Secret; KEDA reads the consumer group's lag as the service."""
    secret = _documented_secret()
    pods = _pod_specs()
    logins = {}
    for name, principal in (("nev-ingest", ks.SERVICE), ("nev-gateway", ks.GATEWAY)):
        (c,) = pods[name]["containers"]
        kafka = check_settings(_env(c), tmp_path).kafka
        password_file = Path(_env(c)["NEV_KAFKA_SASL_PASSWORD_FILE"])
        assert kafka.sasl_username == principal, f"{name}: log in to Kafka as {principal}"
        assert password_file.name in secret, f"{name}: {password_file.name} is no Secret key"
        logins[name] = password_file.name
    assert len(set(logins.values())) == 2, f"one password for two principals: {logins}"
    assert secret["kafka-username"] == ks.SERVICE  # KEDA's TriggerAuthentication
    assert logins["nev-ingest"] == "kafka-password"  # ... and the password it reads with it


def test_no_apply_writes_the_secret_and_the_documented_one_has_every_key_read() -> None:
    """The Secret is the operator's (``kubectl create secret`` or a secrets manager): one in a
    kustomization would put its values back over the real one at every ``apply -k``, and the
    database and Kafka logins would fail at the next pod start. So no kustomization holds or
    generates a Secret, and the command docs/operations.md gives creates every key a pod or
    KEDA reads, in the namespace the kustomizations deploy to."""
    for root in (K8S, MIGRATE, K8S / "config"):
        kustomization = load_yaml(root / "kustomization.yaml")[0]
        assert "secretGenerator" not in kustomization, root
        assert kustomization["namespace"] == "nev-ingest", root
    secrets = [name for kind, name in _resources() if kind == "Secret"]
    assert not secrets, f"{secrets}: a Secret applied by apply -k overwrites the operator's"
    documented = _documented_secret()
    missing = {(who, key) for who, key in _secret_keys_used() if key not in documented}
    assert not missing, f"docs/operations.md's create secret command lacks {missing}"
    # every documented key is read by something (a stale key would mislead the operator)
    assert set(documented) == {key for _, key in _secret_keys_used()}
    # kustomize itself (kubectl's, offline) builds both without a Secret, from files that exist
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here: the kustomize build is not checked")
    for root in (K8S, MIGRATE):
        built = subprocess.run(
            [kubectl, "kustomize", root], capture_output=True, text=True, check=False
        )
        assert built.returncode == 0, built.stderr
        assert not re.search(r"^kind: Secret$", built.stdout, re.MULTILINE), root
