#!/usr/bin/env bash
# Builds a fuzz target with libFuzzer and AddressSanitizer, seeds it with the protocol's
# golden vectors, and runs it for a fixed time.
#
#   tools/fuzz/run.sh [seconds] [decoder|connection]     (default: 60 s, decoder)
#
# decoder:    the frame decoder alone, under every decoder setting.
# connection: the server's connection handler with real models, batchers and limiter, in an
#             in-memory channel; each input is one connection's bytes.
#
# A crash leaves crash-* files in tools/fuzz/findings/; turn each into a regression vector in
# tools/make_vectors.py. The last lines of output give executions and coverage reached.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
target="${2:-decoder}"
case "$target" in
  decoder) product=FuzzWireDecoder ;;
  connection) product=FuzzServerConnection ;;
  *) echo "usage: $0 [seconds] [decoder|connection]" >&2; exit 64 ;;
esac
# `--sanitize=fuzzer` alone does not reliably give the Swift modules coverage counters (their
# objects came out without them, leaving libFuzzer blind), so the coverage kinds are spelled out;
# dead stripping is off so that no counter section is dropped at link time.
flags="-c release --sanitize=fuzzer --sanitize=address --disable-dead-strip"
flags+=" -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp"

swift build $flags --product "$product" 2>&1 | tail -1
binary="$(swift build $flags --show-bin-path)/$product"

# Seeds: every golden vector, with the first byte set the way that target reads it.
work="corpus-work/$target"
seeds="$work/seeds"
mkdir -p "$seeds" "$work/corpus" findings
python3 - "$seeds" "$target" <<'PY'
import json, os, sys
out, target = sys.argv[1], sys.argv[2]
vectors = os.path.join("..", "..", "Protocol", "vectors")
for name in sorted(os.listdir(vectors)):
    if not name.endswith(".json"):
        continue
    v = json.load(open(os.path.join(vectors, name), encoding="utf-8"))
    data = bytes.fromhex("".join(v["hex"].split()))
    compression = 2 if v["decoder"]["compression"] else 0
    if target == "decoder":
        role = 1 if v["decoder"]["role"] == "client" else 0
        setting = role | compression | 4
    else:
        if v["decoder"]["role"] != "server":
            continue
        # Vectors that open with HELLO are the handshake; the others follow a valid one.
        setting = 0 if len(data) > 5 and data[5] == 0x01 else 1 | compression
    with open(os.path.join(out, name[:-5]), "wb") as f:
        f.write(bytes([setting]) + data)
PY

# A fuzzer without coverage feedback only runs random bytes; refuse to pretend otherwise.
probe="$("$binary" "$seeds" -runs=0 2>&1 || true)"
if ! grep -qE "INITED cov: [1-9]" <<<"$probe"; then
  echo "the fuzzer binary reports no coverage: instrumentation is missing" >&2
  exit 1
fi

"$binary" "$work/corpus" "$seeds" \
  -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="findings/$target-" -print_final_stats=1 2>&1 | tee "$work/last-run.log" | grep -E "^#|Done|stat::|ERROR|SUMMARY" | tail -15
