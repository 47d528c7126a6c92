#!/usr/bin/env bash
# The whole recipe on the embedded mini corpus (synthetic English->German speech),
# small enough for a laptop CPU: generates the corpus, then runs every stage with
# conf/demo. Extra options go to run.sh (e.g. --stage 5).
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
corpus=downloads/mini_corpus
python local/make_mini_corpus.py --out "${corpus}" --seed 1
./run.sh --conf-dir conf/demo --mustc-root "${corpus}" --tgt-lang de --nj 2 --ngpu 0 "$@"
