#!/usr/bin/env bash
# Usage: local/split_keys.sh SCP N OUT_PREFIX
# Splits the keys of SCP into at most N contiguous parts OUT_PREFIX.1.scp ... and
# prints how many parts were written (fewer than N when SCP has fewer lines).
set -euo pipefail
scp=$1; n=$2; prefix=$3
lines=$(wc -l <"${scp}")
[ "${lines}" -gt 0 ] || { echo "$0: ${scp} is empty" >&2; exit 1; }
parts=$(( n < lines ? n : lines ))
rm -f "${prefix}".*.scp
awk -v parts="${parts}" -v lines="${lines}" -v prefix="${prefix}" \
    '{ part = int((NR - 1) * parts / lines) + 1; print $1 > (prefix "." part ".scp") }' "${scp}"
echo "${parts}"
