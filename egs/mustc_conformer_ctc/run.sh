#!/usr/bin/env bash
# FBK's IWSLT 2022 direct speech translation (Conformer + CTC compression) on MuST-C.
# Stages: 1 data, 2 fbank, 3 bpe, 4 stats, 5 train, 6 finetune, 7 decode (average,
# translate, score; whole talks and their subtitles too; RESULTS.md, plot), 8 pack, 9 simulate
# (simultaneous translation of the test sets with FBK's policies, SimulEval's scores).
# Behaviour lives in ${conf_dir}/*.yaml.
# Example: ./run.sh --mustc-root /data/MUSTC_v1.0 --tgt-lang de --ngpu 4
set -euo pipefail

stage=1                 # first stage to run
stop_stage=10           # last stage to run
conf_dir=conf           # data, fbank, bpe, train, finetune, decode, simulate, stream .yaml (conf/demo: the mini corpus);
                        # conf links to the project's top-level conf/, as utils/ to its utils/
mustc_root=             # MuST-C root holding en-<tgt>/data/{train,dev,tst-COMMON}
tgt_lang=de             # target language
extra_train=            # comma-separated roots of more corpora in MuST-C layout (train split)
ngpu=0                  # GPUs for training and decoding (0: CPU); batches are rescaled to keep
                        # the config's data per update
nj=4                    # parallel jobs for features, statistics and decoding
train_args=             # more st_train options for stages 5 and 6 (e.g. "--dist_launcher slurm")
compile=                # torch.compile in stages 5 and 6: true | false | auto (on GPUs only);
                        # empty: train.yaml's `compile` (auto)
finetune=true           # run stage 6 and decode its model; false: decode stage 5's
average_num=5           # checkpoints averaged for decoding
average_mode=around     # around: the best and its neighbours (FBK); nbest: ESPnet's n best
average_criterion=valid.loss.min
test_sets="tst-COMMON"  # decoded and scored in stage 7
data=data               # Kaldi-style data dirs
dump=dump               # features and filtered data dirs
exp=exp                 # experiments
tag=                    # experiment name; default: st_ + the conf dir's name

help_message="Usage: $0 [--stage N] [--stop-stage M] [--mustc-root DIR] [--tgt-lang xx] [--ngpu K] ...
Every variable at the top of $0 is an option (--foo-bar sets foo_bar)."
. ./path.sh
. utils/parse_options.sh
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*" >&2; exit 1; }
for option in nj average_num; do
    [ "${!option}" -ge 1 ] || { echo "$0: option --${option//_/-} expects an integer >= 1, got ${!option}" >&2
                                exit 1; }
done
case "${compile}" in
    ''|true|false|auto) ;;
    *) echo "$0: option --compile expects true, false or auto, got '${compile}'" >&2; exit 1;;
esac
[ "${stage}" -le "${stop_stage}" ] || { echo "$0: --stage ${stage} is after --stop-stage ${stop_stage}: nothing would run" >&2
                                        exit 1; }

tag=${tag:-st_$(basename "${conf_dir}")}
train_exp=${exp}/${tag}
finetune_exp=${exp}/${tag}_finetune
spm=${data}/spm
stats=${exp}/st_stats    # features and tokens only: shared by the experiments
mkdir -p "${exp}"

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }

# Runs a stage's command, records it in <exp>/run.cmd, and skips it when the same
# command (configs' contents included) already completed on the same inputs: AFTER names
# the markers of the steps whose outputs it reads (space-separated), so a step that reran
# upstream (a changed conf/data.yaml, say) makes every step after it run again. A step
# killed midway resumes (training from its checkpoint); one whose command or inputs changed
# since it started first removes what ${fresh_start} names in its dir (training's checkpoint,
# a simulation's output: another run's results, which it would refuse to resume).
run_step() {
    local name=$1 exp_dir=$2 after=$3; shift 3
    local marker=${exp_dir}/.done.${name} started=${exp_dir}/.started.${name} key input stale
    key=$(
        printf '%s\n' "$*"
        for a in "$@"; do case "$a" in *.yaml) [ -f "$a" ] && cat "$a";; esac; done
        for input in ${after}; do
            if [ -f "${input}" ]; then printf '%s %s\n' "${input}" "$(cat "${input}")"; else echo "${input} missing"; fi
        done
    )
    key=$(md5sum <<<"${key}" | cut -d' ' -f1)
    if [ -f "${marker}" ] && [ "$(cat "${marker}")" = "${key}" ]; then
        log "  ${name}: already done, skipped (delete ${marker} to redo)"
        return 0
    fi
    mkdir -p "${exp_dir}"
    if { [ -f "${started}" ] && [ "$(cat "${started}")" != "${key}" ]; } ||
       { [ -f "${marker}" ] && [ "$(cat "${marker}")" != "${key}" ]; }; then
        log "  ${name}: its command or inputs changed since it last started: starting it afresh"
        for stale in ${fresh_start:-}; do rm -rf "${exp_dir:?}/${stale}"; done
    fi
    rm -f "${marker}"
    echo "${key}" >"${started}"
    echo "$*" >>"${exp_dir}/run.cmd"
    "$@"
    echo "${key}" >"${marker}"
}

data_triples() {  # the three inputs of training for one dump dir
    echo "$1/feats.scp,speech,kaldi_ark $1/text.tgt.tagged,text,text $1/text.src.norm,src_text,text"
}

tokens_args=(
    --input_size 80 --use_preprocessor true
    --token_type bpe --bpemodel "${spm}/tgt.model" --token_list "${spm}/tgt_tokens.txt"
    --src_token_type bpe --src_bpemodel "${spm}/src.model" --src_token_list "${spm}/src_tokens.txt"
)
data_args=()
for t in $(data_triples "${dump}/train"); do data_args+=(--train_data_path_and_name_and_type "$t"); done
for t in $(data_triples "${dump}/dev"); do data_args+=(--valid_data_path_and_name_and_type "$t"); done
dist_args=()            # several GPUs on one node: ESPnet's own launcher, one process per GPU
[ "${ngpu}" -gt 1 ] && dist_args=(--multiprocessing_distributed true)
read -r -a extra_train_args <<<"${train_args}"
if [ -n "${compile}" ]; then extra_train_args+=(--compile "${compile}"); fi
shape_args=()
for s in speech_shape text_shape src_text_shape; do
    shape_args+=(--train_shape_file "${stats}/train/${s}" --valid_shape_file "${stats}/valid/${s}")
done

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data: MuST-C en-${tgt_lang} from ${mustc_root:?--mustc-root is required} -> ${data}/"
    run_step data "${data}" "" python local/data_prep.py --config "${conf_dir}/data.yaml" \
        --mustc_root "${mustc_root}" --tgt_lang "${tgt_lang}" --extra_train "${extra_train}" --out "${data}"
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Stage 2: fbank: 80-dim Kaldi fbank, ${nj} jobs -> ${dump}/"
    run_step fbank_train "${dump}" "${data}/.done.data" python -m espnet2_ext.bin.make_fbank --config "${conf_dir}/fbank.yaml" \
        --data_dir "${data}/train" --out_dir "${dump}/train" --nj "${nj}"
    for set in dev ${test_sets}; do
        run_step "fbank_${set}" "${dump}" "${data}/.done.data" python -m espnet2_ext.bin.make_fbank \
            --data_dir "${data}/${set}" --out_dir "${dump}/${set}" --nj "${nj}" --min_frames 0 --max_frames none
    done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "Stage 3: bpe: SentencePiece target and source models -> ${spm}/"
    run_step bpe "${data}" "${dump}/.done.fbank_train" python local/train_bpe.py --config "${conf_dir}/bpe.yaml" \
        --data_dir "${dump}/train" --out_dir "${spm}"
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "Stage 4: stats: ESPnet collect_stats (global CMVN, shapes), ${nj} jobs -> ${stats}/"
    run_step stats "${stats}" "${dump}/.done.fbank_train ${dump}/.done.fbank_dev ${data}/.done.bpe" \
        local/collect_stats.sh --nj "${nj}" --stats "${stats}" \
        --train-config "${conf_dir}/train.yaml" --train-keys "${dump}/train/feats.scp" \
        --valid-keys "${dump}/dev/feats.scp" -- "${tokens_args[@]}" "${data_args[@]}"
fi

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    log "Stage 5: train: ${conf_dir}/train.yaml on ${ngpu} GPU(s) -> ${train_exp}/"
    read -r -a batch_args <<<"$(python local/batch_settings.py --train_config "${conf_dir}/train.yaml" --ngpu "${ngpu}")"
    normalize_args=()   # global CMVN needs stage 4's statistics; utterance CMVN (FBK's) needs none
    if grep -Eq '^normalize:[[:space:]]*global_mvn' "${conf_dir}/train.yaml"; then
        normalize_args=(--normalize_conf "stats_file=${stats}/train/feats_stats.npz")
    fi
    fresh_start=checkpoint.pth run_step train "${train_exp}" "${stats}/.done.stats" python -m espnet2_ext.bin.st_train --config "${conf_dir}/train.yaml" \
        "${tokens_args[@]}" "${data_args[@]}" "${shape_args[@]}" "${batch_args[@]}" \
        "${normalize_args[@]}" \
        --ngpu "${ngpu}" "${dist_args[@]}" "${extra_train_args[@]}" --resume true --output_dir "${train_exp}"
fi

if "${finetune}" && [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    log "Stage 6: finetune: ${conf_dir}/finetune.yaml from ${train_exp}/valid.loss.best.pth -> ${finetune_exp}/"
    for input in "${train_exp}/config.yaml" "${train_exp}/valid.loss.best.pth"; do
        [ -e "${input}" ] || { echo "$0: stage 6 needs stage 5's ${input}, which is missing: run stage 5 first" >&2
                               exit 1; }
    done
    mkdir -p "${finetune_exp}"
    python local/merge_configs.py --base_config "${train_exp}/config.yaml" \
        --override_config "${conf_dir}/finetune.yaml" --out "${finetune_exp}/finetune_config.yaml"
    read -r -a batch_args <<<"$(python local/batch_settings.py --train_config "${finetune_exp}/finetune_config.yaml" --ngpu "${ngpu}")"
    fresh_start=checkpoint.pth run_step finetune "${finetune_exp}" "${train_exp}/.done.train" python -m espnet2_ext.bin.st_train \
        --config "${finetune_exp}/finetune_config.yaml" "${batch_args[@]}" \
        --init_param "${train_exp}/valid.loss.best.pth" --ngpu "${ngpu}" "${dist_args[@]}" "${extra_train_args[@]}" \
        --resume true \
        --output_dir "${finetune_exp}"
fi

decode_exp=${train_exp} trained_step=train
if "${finetune}"; then decode_exp=${finetune_exp} trained_step=finetune; fi
decode_name=decode_$(basename "${conf_dir}")
device=cpu; [ "${ngpu}" -gt 0 ] && device=cuda
model=${decode_exp}/${average_criterion%.*}.ave_${average_num}${average_mode}.pth   # averaged in stage 7
if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    log "Stage 7: decode: average ${average_num} (${average_mode}), translate ${test_sets} and their whole talks, score -> ${decode_exp}/"
    run_step average "${decode_exp}" "${decode_exp}/.done.${trained_step}" python -m espnet2_ext.bin.average_checkpoints --exp_dir "${decode_exp}" \
        --num "${average_num}" --mode "${average_mode}" --criterion "${average_criterion}" --out "${model}"
    for set in ${test_sets}; do
        out=${decode_exp}/${decode_name}/${set}
        run_step "decode_${set}" "${decode_exp}" "${decode_exp}/.done.average ${dump}/.done.fbank_${set}" \
            local/decode.sh --nj "${nj}" --ngpu "${ngpu}" \
            --config "${conf_dir}/decode.yaml" --model "${model}" --data "${dump}/${set}" --out "${out}"
        run_step "score_${set}" "${decode_exp}" "${decode_exp}/.done.decode_${set}" python -m espnet2_ext.bin.score_st \
            --hyp "${out}/1best_recog/text" --ref "${dump}/${set}/text.tgt" --out "${out}/score" --tgt_lang "${tgt_lang}"
        # as IWSLT: whole talks, our own segmentation, re-segmented onto the reference sentences to score
        mkdir -p "${out}/talks"
        run_step "translate_talks_${set}" "${decode_exp}" "${decode_exp}/.done.average" python -m espnet2_ext.bin.translate \
            --st_train_config "${decode_exp}/config.yaml" --st_model_file "${model}" --device "${device}" \
            --config "${conf_dir}/decode.yaml" --format jsonl --output "${out}/talks/translations.jsonl" \
            "${data}/${set}/wav.scp"
        run_step "score_talks_${set}" "${decode_exp}" "${decode_exp}/.done.translate_talks_${set}" python -m espnet2_ext.bin.score_st_talks \
            --hyp "${out}/talks/translations.jsonl" --data_dir "${data}/${set}" --out "${out}/talks/score" \
            --tgt_lang "${tgt_lang}"
    done
    python -m espnet2_ext.bin.plot_curves --exp_dir "${decode_exp}"
    if "${finetune}"; then python -m espnet2_ext.bin.plot_curves --exp_dir "${train_exp}"; fi
    python -m espnet2_ext.bin.make_results --exp_dir "${decode_exp}" --out "${decode_exp}/RESULTS.md"
    log "Results: ${decode_exp}/RESULTS.md"
    for set in ${test_sets}; do
        out=${decode_exp}/${decode_name}/${set}
        log "  ${set}, gold segmentation: $(head -n 2 "${out}/score/result.txt" | paste -sd' ')"
        log "  ${set}, own segmentation: $(head -n 2 "${out}/talks/score/result.txt" | paste -sd' ')"
        log "  ${set}, subtitles (${out}/talks/score/subtitles/): $(grep '^SubER' "${out}/talks/score/result.txt" | paste -sd';')"
    done
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
    log "Stage 8: pack: config, averaged model, SentencePiece models, CMVN -> ${decode_exp}/packed/model.zip"
    cmvn_args=()        # stage 4's global CMVN statistics, for simultaneous translation (cmvn: global)
    if [ -f "${stats}/train/feats_stats.npz" ]; then
        cmvn_args=(--global_cmvn "${stats}/train/feats_stats.npz")
    fi
    # stage 9's and 10's shared settings (chunk, attention layer, f, history) become the zip's defaults
    stream_args=()
    [ -f "${conf_dir}/stream.yaml" ] && stream_args=(--stream_conf "${conf_dir}/stream.yaml")
    run_step pack "${decode_exp}" "${decode_exp}/.done.average ${stats}/.done.stats" python -m espnet2_ext.bin.pack_model --exp_dir "${decode_exp}" \
        --model_file "${model}" --outpath "${decode_exp}/packed/model.zip" "${cmvn_args[@]}" \
        --simulate_conf "${conf_dir}/simulate.yaml" "${stream_args[@]}"
fi
if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
    zip=${decode_exp}/packed/model.zip
    [ -e "${zip}" ] || { echo "$0: stage 9 needs stage 8's ${zip}, which is missing: run stage 8 first" >&2
                         exit 1; }
    simulate_name=simulate_$(basename "${conf_dir}")
    log "Stage 9: simulate: the settings of ${conf_dir}/simulate.yaml on ${test_sets} -> ${decode_exp}/${simulate_name}/"
    mkdir -p "${decode_exp}/${simulate_name}"   # simulate creates --output, not its parents
    for set in ${test_sets}; do   # gold segmentation; settings in ${nj} processes of one thread each
        fresh_start="${simulate_name}/${set}" \
        run_step "simulate_${set}" "${decode_exp}" "${decode_exp}/.done.pack" python -m espnet2_ext.bin.simulate --model "${zip}" \
            --data_dir "${data}/${set}" --settings "${conf_dir}/simulate.yaml" --computation_aware \
            --device "${device}" --num_threads 1 --nj "${nj}" --output "${decode_exp}/${simulate_name}/${set}"
    done
    python -m espnet2_ext.bin.plot_simulation --exp_dir "${decode_exp}"
    python -m espnet2_ext.bin.make_results --exp_dir "${decode_exp}" --out "${decode_exp}/RESULTS.md"
    log "Results: ${decode_exp}/RESULTS.md"
fi
if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ]; then
    zip=${decode_exp}/packed/model.zip
    [ -e "${zip}" ] || { echo "$0: stage 10 needs stage 8's ${zip}, which is missing: run stage 8 first" >&2
                         exit 1; }
    stream_name=stream_$(basename "${conf_dir}")
    log "Stage 10: stream: the whole talks of ${test_sets} with the settings of ${conf_dir}/stream.yaml -> ${decode_exp}/${stream_name}/"
    mkdir -p "${decode_exp}/${stream_name}"
    for set in ${test_sets}; do   # wav.scp's recordings, scored against segments; ${nj} processes of one thread
        fresh_start="${stream_name}/${set}" \
        run_step "stream_${set}" "${decode_exp}" "${decode_exp}/.done.pack" python -m espnet2_ext.bin.simulate \
            --model "${zip}" --data_dir "${data}/${set}" --settings "${conf_dir}/stream.yaml" --computation_aware \
            --tgt_lang "${tgt_lang}" --device "${device}" --num_threads 1 --nj "${nj}" \
            --output "${decode_exp}/${stream_name}/${set}"
    done
    python -m espnet2_ext.bin.plot_simulation --exp_dir "${decode_exp}"
    python -m espnet2_ext.bin.make_results --exp_dir "${decode_exp}" --out "${decode_exp}/RESULTS.md"
    log "Results: ${decode_exp}/RESULTS.md"
fi
log "Done (stages ${stage}-${stop_stage})."
