#!/usr/bin/env bash
# Install or upgrade nev-ingest on Kubernetes, in the order docs/operations.md ("Upgrade") gives:
#   1. the Secret nev-ingest must exist with every key: the operator creates it ("Deploy"), no
#      kustomization does; without it the pods and the Job would hang in ContainerCreating;
#   2. the previous release's migration Job is deleted once it completed or failed (a Job's pod
#      template is immutable, so it would refuse the new image); one still running (an earlier
#      run's, out of time) is waited for as in 3., never deleted;
#   3. the migration (MIGRATE, default deploy/k8s/migrate) is applied and its Job waited for
#      until it completes OR fails: `kubectl wait --for=condition=complete` alone sits out its
#      whole timeout on a Job that failed;
#   4. only after it completed, the base (BASE, default deploy/k8s) rolls the Deployments.
#
# Usage: deploy/k8s/apply.sh [MIGRATE BASE]   (kustomization directories: your overlays of each)
# The namespace and the Job's name are the migration kustomization's (its Job's metadata, read
# with `kubectl kustomize`): the Secret is checked and the Job looked at where `apply -k` puts
# them; every object of both kustomizations must be in that namespace.
# Environment: NEV_K8S_NAMESPACE (optional: if set, the namespace the kustomizations must
# name), NEV_K8S_MIGRATE_TIMEOUT_S (900: how long the migration may run), NEV_K8S_POLL_S (5:
# seconds between looks at the Job), NEV_K8S_UNSCHEDULABLE_S (300: how long the Job's pod may
# wait for a node), NEV_K8S_IMAGE_PULL_S (300: how long its image may fail to pull). kubectl's
# own context and KUBECONFIG say which cluster.
# A pod of the Job that cannot start (its image's name invalid, its ConfigMap or Secret key
# missing; its image not pulled after NEV_K8S_IMAGE_PULL_S, no node for it after
# NEV_K8S_UNSCHEDULABLE_S) stops the script like a failure: such a Job never fails by itself
# (its backoffLimit counts failed pods only).
# Exit status: 0 rolled; 1 the migration failed, its pod cannot start, its Job is gone or it did
# not finish in time (nothing rolled); 2 bad usage, kustomizations in two namespaces, no
# Deployment of the gateway or not one of the service in BASE, the gateway's ConfigMaps holding
# one of the service's credentials or files, the gateway's and the service's settings differing
# on a key they share (the Kafka brokers, how to reach them, the topics), no usable Secret or no
# answer about the Job (nothing applied).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=${NEV_K8S_MIGRATE_TIMEOUT_S:-900}
poll_s=${NEV_K8S_POLL_S:-5}
# A cluster autoscaler adds a node for an unschedulable pod within a few minutes: only a pod
# unschedulable for longer is taken for one that will never run.
unschedulable_s=${NEV_K8S_UNSCHEDULABLE_S:-300}
# A pull that fails (ErrImagePull, then ImagePullBackOff while the kubelet waits to retry) may be
# a registry or network blip: the kubelet retries, backing off up to 5 minutes, so only a pull
# failing for longer is taken for an image that will never come (a wrong tag, no pull secret).
image_pull_s=${NEV_K8S_IMAGE_PULL_S:-300}
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
for var in NEV_K8S_MIGRATE_TIMEOUT_S NEV_K8S_POLL_S NEV_K8S_UNSCHEDULABLE_S NEV_K8S_IMAGE_PULL_S; do
    value=${!var:-0}
    [[ $value =~ ^[0-9]+$ ]] || die "$var=$value: give a whole number of seconds"
done
# Base 10: bash reads a leading 0 as octal (0600 would be 384 s, 0900 an error after the
# migration was already applied).
timeout_s=$((10#$timeout_s))
poll_s=$((10#$poll_s))
unschedulable_s=$((10#$unschedulable_s))
image_pull_s=$((10#$image_pull_s))

errors=$(mktemp)
trap 'rm -f "$errors"' EXIT

# The namespace and the Job, from what `apply -k` will create (not from the environment: the
# kustomizations name their namespace, and a script looking elsewhere checked another
# namespace's Secret and waited for a Job that was never there).
# read_objects DIR YAML OUTPUT: OUTPUT ("jsonpath=..." or "go-template=...") of each object of
# YAML, what the kustomization DIR makes (render). Read by kubectl's own YAML parser (`label
# --local`: offline, nothing is sent to the cluster; the label is on its output only), not by
# matching kustomize's layout (an awk of its lines, which another indentation or a flow-style
# metadata made read no name nor namespace).
read_objects() {
    kubectl label --local -f - nev-ingest/apply-sh=read 2>"$errors" -o "$3" <<<"$2" ||
        die "kubectl kustomize $1 made what kubectl cannot read ($(paste -sd ' ' "$errors")): fix that kustomization; nothing was applied"
}
render() {
    kubectl kustomize "$1" 2>"$errors" ||
        die "kubectl kustomize $1 failed ($(paste -sd ' ' "$errors")): fix that kustomization; nothing was applied"
}
# (render's and read_objects' die ends only the $(...): exit with its status)
migrate_yaml=$(render "$migrate") || exit
base_yaml=$(render "$base") || exit
# One line "KIND NAME NAMESPACE" per object.
where='jsonpath={.kind}{" "}{.metadata.name}{" "}{.metadata.namespace}{"\n"}'
migrate_objects=$(read_objects "$migrate" "$migrate_yaml" "$where") || exit
base_objects=$(read_objects "$base" "$base_yaml" "$where") || exit
jobs=$(awk '$1 == "Job"' <<<"$migrate_objects")
[ "$(grep -c . <<<"$jobs")" -eq 1 ] ||
    die "$migrate makes $(grep -c . <<<"$jobs") Jobs: it must make exactly one, the migration Job; nothing was applied"
read -r _ job ns <<<"$jobs"
[ -n "$ns" ] ||
    die "$migrate gives job/$job no namespace: set namespace: in that kustomization (deploy/k8s/migrate has namespace: nev-ingest); nothing was applied"
if [ -n "${NEV_K8S_NAMESPACE:-}" ] && [ "$NEV_K8S_NAMESPACE" != "$ns" ]; then
    die "NEV_K8S_NAMESPACE=$NEV_K8S_NAMESPACE but $migrate puts job/$job in namespace $ns: set namespace: $NEV_K8S_NAMESPACE in overlays of both kustomizations (or unset NEV_K8S_NAMESPACE); nothing was applied"
fi
while read -r kind name namespace; do
    if [ -n "$namespace" ] && [ "$namespace" != "$ns" ]; then
        die "$kind/$name is in namespace $namespace, job/$job in $ns: the Secret, the Job and the Deployments must share one namespace (set the same namespace: in both kustomizations); nothing was applied"
    fi
done <<<"$migrate_objects"$'\n'"$base_objects"

# The gateway's settings against the service's. The gateway reads a ConfigMap of its own
# (nev-gateway; nev-ingest is kept as it was for the pods of the release being upgraded), so an
# overlay that patched the service's alone would leave the gateway on the base's Kafka or
# topics: the keys both must read alike (the brokers and how to reach them, the topics the
# gateway writes and the service reads) must be equal. The service's credentials and files
# (its Kafka and database logins, client certificates and keys) must NOT be in the gateway's
# ConfigMaps: they name files its pods do not mount (it would exit at start) or give it the
# service's secrets; the gateway's own Kafka login is set in its Deployment's env. Any other key
# may differ (the gateway's own settings, the service's alone).
# The containers are found by what they run (the first of their args: "gateway" the gateway,
# "run" the service) and their ConfigMaps by what they name (envFrom, env), so an overlay's
# namePrefix or nameSuffix changes nothing; not finding them refuses, never skips the check.
shared=(NEV_KAFKA_BOOTSTRAP_SERVERS NEV_KAFKA_SECURITY_PROTOCOL NEV_KAFKA_SASL_MECHANISM
    NEV_KAFKA_SSL_CAFILE NEV_KAFKA_TOPIC_VEHICLE NEV_KAFKA_TOPIC_CHARGER NEV_KAFKA_TOPIC_BATTERY
    NEV_KAFKA_TOPIC_TCEC NEV_KAFKA_TOPIC_DLQ)
service_only=(NEV_KAFKA_SASL_USERNAME NEV_KAFKA_SASL_PASSWORD NEV_KAFKA_SASL_PASSWORD_FILE
    NEV_KAFKA_SSL_CERTFILE NEV_KAFKA_SSL_KEYFILE NEV_KAFKA_SSL_KEY_PASSWORD
    NEV_KAFKA_SSL_KEY_PASSWORD_FILE NEV_POSTGRES_PASSWORD NEV_POSTGRES_PASSWORD_FILE
    NEV_POSTGRES_SSLROOTCERT NEV_POSTGRES_SSLCERT NEV_POSTGRES_SSLKEY)
# One line per fact, values quoted (%q): "data CONFIGMAP KEY VALUE" per key of each ConfigMap;
# per container of each Deployment, "container ROLE DEPLOYMENT/CONTAINER" (ROLE: its first
# arg), then "from ID CONFIGMAP" per envFrom in order, "env ID KEY VALUE" per env value,
# "envref ID KEY CONFIGMAP CMKEY" per env from a ConfigMap's key, "envother ID KEY" per other.
# shellcheck disable=SC2016
settings_template='go-template={{if eq .kind "ConfigMap"}}{{$n := .metadata.name}}{{range $k, $v := .data}}data {{$n}} {{$k}} {{printf "%q" $v}}{{"\n"}}{{end}}{{end}}{{if eq .kind "Deployment"}}{{$d := .metadata.name}}{{range .spec.template.spec.containers}}{{$id := printf "%s/%s" $d .name}}{{$role := "-"}}{{with .args}}{{$role = index . 0}}{{end}}container {{$role}} {{$id}}{{"\n"}}{{range .envFrom}}{{with .configMapRef}}from {{$id}} {{.name}}{{"\n"}}{{end}}{{end}}{{range .env}}{{$k := .name}}{{if .valueFrom}}{{if .valueFrom.configMapKeyRef}}envref {{$id}} {{$k}} {{.valueFrom.configMapKeyRef.name}} {{.valueFrom.configMapKeyRef.key}}{{else}}envother {{$id}} {{$k}}{{end}}{{else}}env {{$id}} {{$k}} {{printf "%q" (or .value "")}}{{end}}{{"\n"}}{{end}}{{end}}{{end}}'
settings=$(read_objects "$base" "$base_yaml" "$settings_template") || exit
declare -A data=() from=() env=()
gateways=() services=()
while read -r what rest; do
    case $what in
    data)
        read -r name key value <<<"$rest"
        data[$name/$key]=$value
        ;;
    container)
        read -r role id <<<"$rest"
        case $role in
        gateway) gateways+=("$id") ;;
        run) services+=("$id") ;;
        esac
        ;;
    from)
        read -r id name <<<"$rest"
        from[$id]+=" $name"
        ;;
    env | envref | envother) ;; # read below, once every ConfigMap's data is known
    esac
done <<<"$settings"
while read -r what id key name cmkey; do
    case $what in
    env) env[$id/$key]=$name${cmkey:+ $cmkey} ;; # the quoted value (read split it at blanks)
    envref) env[$id/$key]=${data[$name/$cmkey]-"(key $cmkey of ConfigMap $name)"} ;;
    envother) env[$id/$key]="(valueFrom)" ;;
    esac
done <<<"$settings"
# setting ID KEY: the value container ID gets for KEY (its env, else the last ConfigMap of its
# envFrom holding KEY, as the kubelet does) in $value, where from in $source; fails if unset.
setting() {
    local map
    if [[ -v env[$1/$2] ]]; then
        value=${env[$1/$2]} source="the env of Deployment ${1%%/*}"
        return 0
    fi
    value="" source=""
    for map in ${from[$1]:-}; do
        if [[ -v data[$map/$2] ]]; then
            value=${data[$map/$2]} source="ConfigMap $map"
        fi
    done
    [ -n "$source" ]
}
[ "${#gateways[@]}" -gt 0 ] ||
    die "$base has no Deployment running the gateway (a container whose args begin with \"gateway\", as gateway-deployment.yaml's): its settings cannot be checked against the service's; keep that Deployment in your overlay of $base; nothing was applied"
[ "${#services[@]}" -eq 1 ] ||
    die "$base has ${#services[@]} containers running the service (args beginning with \"run\", as ingest-deployment.yaml's): it must have exactly one, to check the gateway's settings against; nothing was applied"
service=${services[0]}
for gw in "${gateways[@]}"; do
    for map in ${from[$gw]:-}; do
        for key in "${service_only[@]}"; do
            [[ ! -v data[$map/$key] ]] ||
                die "the gateway (Deployment ${gw%%/*}) reads $key, the service's credential or file, from ConfigMap $map ($base): set it only in the ConfigMap the service reads and take it out of $map (the gateway's own Kafka login goes in its Deployment's env; docs/operations.md, \"Upgrade\"); nothing was applied"
        done
    done
    for key in "${shared[@]}"; do
        # (a newline: no quoted value holds one, so unset differs from every value)
        if setting "$service" "$key"; then
            theirs=$value said_theirs="$key=$value in $source"
        else
            theirs=$'\n' said_theirs="no $key"
        fi
        if setting "$gw" "$key"; then
            ours=$value said_ours="$key=$value in $source"
        else
            ours=$'\n' said_ours="no $key"
        fi
        [ "$theirs" != "$ours" ] || continue
        die "the service (Deployment ${service%%/*}) has $said_theirs, the gateway (Deployment ${gw%%/*}) $said_ours: the gateway must write where the service reads; set the same $key in both ConfigMaps in your overlay of $base (docs/operations.md, \"Upgrade\"); nothing was applied"
    done
done

# 1. The Secret, before anything is applied.
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

# job_state: the Job's True conditions ("Complete ", "FailureTarget Failed ", ...; nothing while
# it runs), or "NotFound"; fails when kubectl cannot say (the API server briefly away).
job_state() {
    if kubectl -n "$ns" get job "$job" 2>"$errors" \
        -o 'jsonpath={range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}'; then
        return 0
    fi
    grep -q NotFound "$errors" || return 1
    echo NotFound
}

# stuck_pod: "POD REASON: MESSAGE" of the Job's first pod that cannot start (the kubelet's
# waiting reason, or the scheduler's Unschedulable); fails if there is none or kubectl cannot
# say (the next look asks again).
stuck_pod() {
    local pods name reasons message reason
    pods=$(kubectl -n "$ns" get pods -l "job-name=$job" 2>"$errors" -o 'jsonpath={range .items[*]}{.metadata.name}{"\t"}{.status.containerStatuses[*].state.waiting.reason} {.status.conditions[?(@.reason=="Unschedulable")].reason}{"\t"}{.status.containerStatuses[*].state.waiting.message} {.status.conditions[?(@.reason=="Unschedulable")].message}{"\n"}{end}') ||
        return 1
    while IFS=$'\t' read -r name reasons message; do
        for reason in $reasons; do
            case $reason in
            ImagePullBackOff | ErrImagePull | ErrImageNeverPull | InvalidImageName | CreateContainerConfigError | Unschedulable)
                message=${message#"${message%%[! ]*}"} # the blanks around an empty part
                echo "$name $reason: ${message%"${message##*[! ]}"}"
                return 0
                ;;
            esac
        done
    done <<<"$pods"
    return 1
}

cannot_start() {
    die "job/$job cannot start its pod ($1)${2:+ for ${2}s}: the Deployments were NOT rolled, and the Job would never fail by itself (its backoffLimit counts failed pods only). Why: kubectl -n $ns describe pod ${1%% *}; fix it (the image's name or tag, the registry's pull secret, the ConfigMap or Secret it reads, room on the nodes), then kubectl -n $ns delete job $job (that pod never started: no migration is stopped) and run this again" 1
}

# wait_for_job: returns once the Job completed; a failure, a pod that cannot start, a Job that
# is gone or the deadline end the script (status 1).
wait_for_job() {
    local deadline state why stuck unschedulable_since="" pull_since=""
    echo "apply.sh: waiting up to ${timeout_s}s for job/$job to complete or fail" >&2
    deadline=$((SECONDS + timeout_s))
    while :; do
        # A failed look is not the Job's end: look again until the deadline. A Job that is not
        # there is: it was made (or seen) before this loop, so it went elsewhere or something
        # deleted it, and no later look finds it.
        state=$(job_state) || state=""
        case " $state " in
        " NotFound ")
            die "job/$job is not in namespace $ns ($(paste -sd ' ' "$errors")): the Deployments were NOT rolled. Was it deleted? kubectl get jobs -A | grep $job; then run this again" 1
            ;;
        *" Complete "*) return 0 ;;
        *" Failed "*)
            why=$(kubectl -n "$ns" get job "$job" \
                -o 'jsonpath={.status.conditions[?(@.type=="Failed")].message}') || why="?"
            echo "apply.sh: the last lines of its log:" >&2
            kubectl -n "$ns" logs "job/$job" --tail=20 >&2 || true
            die "job/$job failed ($why): the Deployments were NOT rolled. Why: kubectl -n $ns logs job/$job (and kubectl -n $ns describe job/$job); fix it, then run this again" 1
            ;;
        esac
        stuck=$(stuck_pod) || stuck=""
        # Each grace runs from the first look that shows its cause and ends when another look
        # does not (the pod started, or is stuck for another reason).
        case $stuck in
        *" Unschedulable: "*) pull_since="" ;;
        *" ErrImagePull: "* | *" ImagePullBackOff: "*) unschedulable_since="" ;;
        *) unschedulable_since="" pull_since="" ;;
        esac
        case $stuck in
        "") ;;
        *" Unschedulable: "*)
            if [ -z "$unschedulable_since" ]; then
                unschedulable_since=$SECONDS
                echo "apply.sh: $stuck (waiting up to ${unschedulable_s}s for a node)" >&2
            fi
            [ $((SECONDS - unschedulable_since)) -lt "$unschedulable_s" ] ||
                cannot_start "$stuck" "$unschedulable_s"
            ;;
        # The kubelet alternates the two while it retries: one grace for both.
        *" ErrImagePull: "* | *" ImagePullBackOff: "*)
            if [ -z "$pull_since" ]; then
                pull_since=$SECONDS
                echo "apply.sh: $stuck (waiting up to ${image_pull_s}s for the image: the kubelet pulls again)" >&2
            fi
            [ $((SECONDS - pull_since)) -lt "$image_pull_s" ] ||
                cannot_start "$stuck" "$image_pull_s"
            ;;
        *) cannot_start "$stuck" ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "job/$job neither completed nor failed in ${timeout_s}s${stuck:+ (its pod $stuck)}: the Deployments were NOT rolled. It may still run (kubectl -n $ns logs job/$job; kubectl -n $ns describe job/$job): run this again to wait for it further (a running Job is waited for, never deleted), with a larger NEV_K8S_MIGRATE_TIMEOUT_S if it needs longer" 1
        fi
        sleep "$poll_s"
    done
}

# 2. The previous Job, deleted once it finished (its pod template is immutable). One that still
# runs (an earlier run of this script ran out of time, or another operator's) is waited for:
# deleting it would kill its migration halfway; once it completed, the release's migration is
# applied as usual (it then has little or nothing left to do).
if ! previous=$(job_state); then
    die "cannot look at job/$job in namespace $ns ($(paste -sd ' ' "$errors")): check kubectl's access to the cluster; nothing was applied"
fi
case " $previous " in
" NotFound ") ;;
*" Complete "* | *" Failed "*) kubectl -n "$ns" delete job "$job" --ignore-not-found ;;
*)
    echo "apply.sh: job/$job of an earlier run neither completed nor failed yet: waiting for it (not deleting it: that would stop its migration halfway)" >&2
    wait_for_job
    kubectl -n "$ns" delete job "$job" --ignore-not-found
    ;;
esac

# 3. The migration, waited for.
kubectl apply -k "$migrate"
wait_for_job

# 4. Only now the Deployments.
kubectl apply -k "$base"
echo "apply.sh: migrated and applied $base" >&2
