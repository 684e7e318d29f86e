#!/bin/sh
# Collects a sharded sockcap run from Kubernetes: waits for the Job to finish, saves
# each shard's log (holding its framed report) as OUT/shard-I.log, and merges them
# with `sockcap merge` into OUT/merged.json and the text report on stdout.
#
#   deploy/k8s/collect.sh [MERGE_OPTION...]    e.g. --junit merged.xml --html merged.html
#
# Environment: JOB (default sockcap), NAMESPACE (default: kubectl's current one),
# OUT (default sockcap-$JOB), SOCKCAP (the sockcap binary, default `sockcap`),
# KUBECTL (default `kubectl`), POLL_SECONDS (default 5).
#
# Exit status: sockcap merge's (0 every expectation held; 1 an expectation failed or a
# shard is missing, the report marked partial; 2 bad input), or 2 when the Job cannot
# be read. Run it before the Job's ttlSecondsAfterFinished: the logs go with the pods.
set -eu

job=${JOB:-sockcap}
out=${OUT:-sockcap-$job}
kubectl=${KUBECTL:-kubectl}
sockcap=${SOCKCAP:-sockcap}
poll=${POLL_SECONDS:-5}

k() {
    if [ -n "${NAMESPACE:-}" ]; then
        "$kubectl" --namespace "$NAMESPACE" "$@"
    else
        "$kubectl" "$@"
    fi
}

# The Job ends Complete or Failed; its activeDeadlineSeconds bounds the wait.
while :; do
    conditions=$(k get job "$job" -o 'jsonpath={range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}') || {
        echo "collect.sh: cannot read job/$job" >&2
        exit 2
    }
    case " $conditions " in
        *" Complete "* | *" Failed "*) break ;;
    esac
    sleep "$poll"
done
echo "collect.sh: job/$job finished: $conditions" >&2

n=$(k get job "$job" -o 'jsonpath={.spec.completions}') || exit 2
mkdir -p "$out"
# The shard logs are appended to "$@", after the merge options given.
i=0
while [ "$i" -lt "$n" ]; do
    selector="batch.kubernetes.io/job-name=$job,batch.kubernetes.io/job-completion-index=$i"
    # One pod per index (backoffLimit 0); should there be more, the newest one.
    pod=$(k get pods -l "$selector" --sort-by=.metadata.creationTimestamp -o 'jsonpath={.items[*].metadata.name}') || exit 2
    pod=${pod##* }
    log="$out/shard-$i.log"
    if [ -z "$pod" ]; then
        echo "collect.sh: shard $i: no pod (index $i never ran or was deleted)" >&2
    elif k logs "pod/$pod" >"$log"; then
        echo "collect.sh: shard $i: $pod -> $log" >&2
        set -- "$@" "$log"
    else
        echo "collect.sh: shard $i: cannot read the logs of $pod" >&2
        rm -f "$log"
    fi
    i=$((i + 1))
done

exec "$sockcap" merge --expect-shards "$n" --json "$out/merged.json" "$@"
