#!/bin/sh
# Copies the byte-exact Asterisk transcripts into the fuzz corpora, each with a leading
# selector byte.
#   decode_client, decode_upstream: every transcript (both directions); selector = chunking
#     (0: one chunk, 1 and 7: fixed sizes, 200: random sizes).
#   client_session: the client->server transcripts (*.c2s.raw); selector bit 7 prefixes a
#     Login (bit 6: as the restricted tenant), bits 4..5 the dialect (auto, 13, 1.8, 1.4),
#     bits 0..3 the chunking. Octal selectors: 000 as is, one chunk; 007 7-byte chunks;
#     200 admin login, one chunk; 300 tenant login, one chunk; 217 admin, random chunks;
#     220 admin, Asterisk 13; 260 admin, Asterisk 1.4.
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
mkdir -p corpus/client_session
for raw in "$src"/*.c2s.raw; do
    name=$(basename "$raw" .c2s.raw)
    for sel in 000 007 200 300 217 220 260; do
        { printf "\\$sel"; cat "$raw"; } > "corpus/client_session/$name.$sel"
    done
done
echo "seeded: $(ls corpus/decode_client | wc -l) files per decoder target," \
    "$(ls corpus/client_session | wc -l) for client_session"
