# Sourced by the parallel stages. wait_jobs LOG_PREFIX PID...: waits for job j
# (the j-th PID, logging to LOG_PREFIX.j.log) and fails, showing the end of each
# failed job's log, if any job failed.
wait_jobs() {
    local prefix=$1 failed=0 j=0 pid
    shift
    for pid in "$@"; do
        j=$((j + 1))
        if ! wait "${pid}"; then
            echo "job ${j} failed, see ${prefix}.${j}.log:" >&2
            tail -n 5 "${prefix}.${j}.log" >&2
            failed=1
        fi
    done
    return "${failed}"
}
