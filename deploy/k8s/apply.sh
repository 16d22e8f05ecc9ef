#!/usr/bin/env bash
# Install or upgrade nev-ingest on Kubernetes, in the order docs/operations.md ("Upgrade") gives:
#   1. the Secret nev-ingest must exist with every key: the operator creates it ("Deploy"), no
#      kustomization does; without it the pods and the Job would hang in ContainerCreating;
#   2. the previous release's migration Job is deleted (a Job's pod template is immutable, so it
#      would refuse the new image);
#   3. the migration (MIGRATE, default deploy/k8s/migrate) is applied and its Job waited for
#      until it completes OR fails: `kubectl wait --for=condition=complete` alone sits out its
#      whole timeout on a Job that failed;
#   4. only after it completed, the base (BASE, default deploy/k8s) rolls the Deployments.
#
# Usage: deploy/k8s/apply.sh [MIGRATE BASE]   (kustomization directories: your overlays of each)
# Environment: NEV_K8S_NAMESPACE (nev-ingest), NEV_K8S_MIGRATE_TIMEOUT_S (900: how long the
# migration may run), NEV_K8S_POLL_S (5: seconds between looks at the Job). kubectl's own
# context and KUBECONFIG say which cluster.
# Exit status: 0 rolled; 1 the migration failed or did not finish in time (nothing rolled);
# 2 bad usage or no usable Secret (nothing applied).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ns=${NEV_K8S_NAMESPACE:-nev-ingest}
timeout_s=${NEV_K8S_MIGRATE_TIMEOUT_S:-900}
poll_s=${NEV_K8S_POLL_S:-5}
job=nev-ingest-migrate
secret=nev-ingest
# The keys the pods (through the *_FILE settings) and KEDA read; the same as the
# `kubectl create secret` command of docs/operations.md, "Deploy" (a unit test compares them).
secret_keys=(pg-password kafka-username kafka-password kafka-gateway-password pg-ca.crt kafka-ca.crt)

die() {
    echo "apply.sh: $1" >&2
    exit "${2:-2}"
}

case $# in
0) migrate=$here/migrate base=$here ;;
2) migrate=$1 base=$2 ;;
*) die "usage: $0 [MIGRATE_KUSTOMIZATION BASE_KUSTOMIZATION] (both or neither)" ;;
esac
for dir in "$migrate" "$base"; do
    [ -f "$dir/kustomization.yaml" ] || die "$dir has no kustomization.yaml: give the migration's and the base's kustomization directories"
done
for var in NEV_K8S_MIGRATE_TIMEOUT_S NEV_K8S_POLL_S; do
    value=${!var:-0}
    [[ $value =~ ^[0-9]+$ ]] || die "$var=$value: give a whole number of seconds"
done
# Base 10: bash reads a leading 0 as octal (0600 would be 384 s, 0900 an error after the
# migration was already applied).
timeout_s=$((10#$timeout_s))
poll_s=$((10#$poll_s))

# 1. The Secret, before anything is applied.
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
# The $k and $v are kubectl's go-template variables, not the shell's:
# shellcheck disable=SC2016
if ! present=$(kubectl -n "$ns" get secret "$secret" \
    -o 'go-template={{range $k, $v := .data}}{{$k}}{{"\n"}}{{end}}' 2>"$errors"); then
    die "cannot read the Secret $secret in namespace $ns ($(paste -sd ' ' "$errors")): create it first with every key (docs/operations.md, \"Deploy\": kubectl -n $ns create secret generic $secret ...); nothing was applied"
fi
missing=()
for key in "${secret_keys[@]}"; do
    grep -qxF -- "$key" <<<"$present" || missing+=("$key")
done
if [ "${#missing[@]}" -gt 0 ]; then
    die "the Secret $secret in namespace $ns lacks ${missing[*]}: recreate it with every key (docs/operations.md, \"Deploy\"); nothing was applied"
fi

# 2. and 3. The migration, waited for.
kubectl -n "$ns" delete job "$job" --ignore-not-found
kubectl apply -k "$migrate"
echo "apply.sh: waiting up to ${timeout_s}s for job/$job to complete or fail" >&2
deadline=$((SECONDS + timeout_s))
while :; do
    # A failed look (the API server briefly away) is not the Job's end: look again until the
    # deadline.
    state=$(kubectl -n "$ns" get job "$job" \
        -o 'jsonpath={range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}') || state=""
    case " $state " in
    *" Complete "*) break ;;
    *" Failed "*)
        why=$(kubectl -n "$ns" get job "$job" \
            -o 'jsonpath={.status.conditions[?(@.type=="Failed")].message}') || why="?"
        echo "apply.sh: the last lines of its log:" >&2
        kubectl -n "$ns" logs "job/$job" --tail=20 >&2 || true
        die "job/$job failed ($why): the Deployments were NOT rolled. Why: kubectl -n $ns logs job/$job (and kubectl -n $ns describe job/$job); fix it, then run this again" 1
        ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
        die "job/$job neither completed nor failed in ${timeout_s}s: the Deployments were NOT rolled. It may still run: kubectl -n $ns logs job/$job and kubectl -n $ns describe job/$job; once it completed, kubectl apply -k $base (or raise NEV_K8S_MIGRATE_TIMEOUT_S and run this again)" 1
    fi
    sleep "$poll_s"
done

# 4. Only now the Deployments.
kubectl apply -k "$base"
echo "apply.sh: migrated and applied $base" >&2
