#!/bin/sh
# Copies the byte-exact Asterisk transcripts into the fuzz corpora, each with a few
# leading chunk-selector bytes (0: one chunk, 1 and 7: fixed sizes, 200: random sizes).
set -eu
cd "$(dirname "$0")"
src=../fixtures/transcripts
for target in decode_client decode_upstream; do
    mkdir -p "corpus/$target"
    for raw in "$src"/*.raw; do
        name=$(basename "$raw" .raw)
        for sel in 000 001 007 310; do
            { printf "\\$sel"; cat "$raw"; } > "corpus/$target/$name.$sel"
        done
    done
done
echo "seeded: $(ls corpus/decode_client | wc -l) files per target"
