#!/usr/bin/env bash
# ESPnet's collect_stats (feature statistics for global CMVN, and shape files) in
# parallel jobs over splits of the keys, merged by ESPnet's aggregate_stats_dirs.
# Usage: local/collect_stats.sh --nj N --stats DIR --train-config YAML \
#            --train-keys SCP --valid-keys SCP -- <st_train data and token options>
set -euo pipefail
nj=4
stats=
train_config=
train_keys=
valid_keys=
. utils/parse_options.sh
. local/jobs.sh
[ "${1:-}" = "--" ] && shift

logdir=${stats}/logdir
mkdir -p "${logdir}"
train_parts=$(local/split_keys.sh "${train_keys}" "${nj}" "${logdir}/train")
valid_parts=$(local/split_keys.sh "${valid_keys}" "${nj}" "${logdir}/valid")
parts=$(( train_parts < valid_parts ? train_parts : valid_parts ))
[ "${parts}" -eq "${train_parts}" ] || train_parts=$(local/split_keys.sh "${train_keys}" "${parts}" "${logdir}/train")
[ "${parts}" -eq "${valid_parts}" ] || valid_parts=$(local/split_keys.sh "${valid_keys}" "${parts}" "${logdir}/valid")

export OMP_NUM_THREADS=1
pids=()
for j in $(seq "${parts}"); do
    python -m espnet2_ext.bin.st_train --collect_stats true --config "${train_config}" "$@" \
        --ngpu 0 --train_shape_file "${logdir}/train.${j}.scp" --valid_shape_file "${logdir}/valid.${j}.scp" \
        --output_dir "${logdir}/stats.${j}" >"${logdir}/stats.${j}.log" 2>&1 &
    pids+=($!)
done
wait_jobs "${logdir}/stats" "${pids[@]}"
inputs=()
for j in $(seq "${parts}"); do inputs+=(--input_dir "${logdir}/stats.${j}"); done
python -m espnet2.bin.aggregate_stats_dirs "${inputs[@]}" --output_dir "${stats}"
