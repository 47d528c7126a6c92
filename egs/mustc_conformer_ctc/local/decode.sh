#!/usr/bin/env bash
# Translate a dump dir with espnet2_ext.bin.st_inference in parallel jobs over
# splits of its keys, then merge the jobs' outputs into OUT/1best_recog/.
# Usage: local/decode.sh --nj N --ngpu K --config decode.yaml --model MODEL.pth --data DUMP_DIR --out OUT
set -euo pipefail
nj=4
ngpu=0
config=
model=
data=
out=
. utils/parse_options.sh
. local/jobs.sh

logdir=${out}/logdir
mkdir -p "${logdir}"
parts=$(local/split_keys.sh "${data}/feats.scp" "${nj}" "${logdir}/keys")
threads=$(( $(nproc) / parts ))
export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
pids=()
for j in $(seq "${parts}"); do
    rm -rf "${logdir}/output.${j}"
    python -m espnet2_ext.bin.st_inference --config "${config}" --ngpu "${ngpu}" \
        --data_path_and_name_and_type "${data}/feats.scp,speech,kaldi_ark" --key_file "${logdir}/keys.${j}.scp" \
        --st_train_config "$(dirname "${model}")/config.yaml" --st_model_file "${model}" \
        --output_dir "${logdir}/output.${j}" >"${logdir}/decode.${j}.log" 2>&1 &
    pids+=($!)
done
wait_jobs "${logdir}/decode" "${pids[@]}"
mkdir -p "${out}/1best_recog"
for f in text token token_int score; do
    cat "${logdir}"/output.*/1best_recog/"${f}" | sort -k1,1 >"${out}/1best_recog/${f}.tmp"
    mv "${out}/1best_recog/${f}.tmp" "${out}/1best_recog/${f}"
done
echo "$0: $(wc -l <"${out}/1best_recog/text") translations in ${out}/1best_recog/text"
