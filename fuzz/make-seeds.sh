#!/usr/bin/env bash
# Rebuilds the seed corpus fuzz/corpus/<target>/ from REAL outputs: runs `warden demo`, admits a
# tiny cut of the demo's synthetic corpus and trains a tiny model on it, then copies the files
# each target reads (multi-file inputs joined with warden_fuzz_targets::SECTION).
#
#   fuzz/make-seeds.sh [WARDEN_BINARY]     (default: target/release/warden; build it first)
#
# Keys are generated afresh by the demo, so every run gives new (equally valid) seeds; the
# committed corpus is one such run. Afterwards `cargo test --release -p warden-fuzz-targets`
# replays them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
warden="$(realpath "${1:-$root/target/release/warden}")"
corpus="$root/fuzz/corpus"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
"$warden" demo --dir d >demo.log 2>&1
cd d

# A tiny corpus: the demo's sources cut to a few documents / lines each.
mkdir -p tiny-synth/dialogue tiny-synth/heldout
cp corpus-synth/declaration.toml tiny-synth/
head -8 corpus-synth/news.jsonl >tiny-synth/news.jsonl
head -5 corpus-synth/customers.jsonl >tiny-synth/customers.jsonl
for f in prose.txt gpl-snippets.txt heldout/prose-heldout.txt dialogue/scenes-00.txt dialogue/scenes-01.txt; do
    awk '/^[[:space:]]*$/ { n++; if (n >= 5) exit } { print }' "corpus-synth/$f" >"tiny-synth/$f"
done
"$warden" corpus admit tiny-synth/declaration.toml --out tiny-corpus --key keys/corpus.key --quiet >/dev/null

# A tiny training run: the README's complete config example, scaled down.
sed -n '/^### The config (complete example)/,/^```$/p' "$root/README.md" | sed '1,3d;$d' >full-config.toml
sed -e 's/^corpus = .*/corpus = "tiny-corpus"/' -e 's/^steps = 300/steps = 4/' \
    -e 's/^batch_size = 16/batch_size = 2/' -e 's/^layers = 2/layers = 1/' -e 's/^width = 64 .*/width = 8/' \
    -e 's/^heads = 4/heads = 2/' -e 's/^context = 64 .*/context = 8/' -e 's/^checkpoint_every = 10 .*/checkpoint_every = 2/' \
    -e 's/^every = 50 .*/every = 2/' -e 's/^min_interval = 50 .*/min_interval = 2/' \
    -e 's/^max_samples = 32 .*/max_samples = 2/' -e 's/^candidates = 255 .*/candidates = 3/' \
    full-config.toml >tiny.toml
"$warden" train tiny.toml --out tiny-run --key keys/training.key --trust trust.toml >/dev/null
"$warden" lineage export --format json lineage >lineage.jsonl

rm -rf "$corpus"
mkdir -p "$corpus"
seed() { # seed TARGET NAME FILE... : joins the files with the section separator
    local target="$1" name="$2"
    shift 2
    mkdir -p "$corpus/$target"
    python3 - "$corpus/$target/$name" "$@" <<'EOF'
import sys
sep = b"\n%%warden-fuzz-section%%\n"
out, files = sys.argv[1], sys.argv[2:]
open(out, "wb").write(sep.join(open(f, "rb").read() for f in files))
EOF
}

# Lineage: one stored entry and one JSON record per record kind (first of each), the
# checkpoint notes, and whole small lineage directories.
python3 - "$corpus" lineage/seg-00000000000000000000.wlog \
    lineage/checkpoints.wlog tiny-run/lineage/checkpoints.wlog trust.toml lineage.jsonl <<'EOF'
import json, os, struct, sys
corpus, seg, cps, tiny_cps, trust, jsonl = sys.argv[1:]
sep = b"\n%%warden-fuzz-section%%\n"
def frames(path):
    b = open(path, "rb").read()
    origin_len = struct.unpack_from("<H", b, 12)[0]
    pos = 14 + origin_len + 4
    while pos + 8 <= len(b):
        n = struct.unpack_from("<I", b, pos)[0]
        yield b[pos + 8 : pos + 8 + n]
        pos += 8 + n + 4
def put(target, name, data):
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    open(os.path.join(corpus, target, name), "wb").write(data)
seen = set()
kinds = [json.loads(line)["kind"] for line in open(jsonl)]
for kind, entry in zip(kinds, frames(seg)):
    signed = entry[-66:-64] == b"\x58\x40"  # a 64-byte signature, else null
    key = (kind, signed)
    if key in seen:
        continue
    seen.add(key)
    put("lineage_entry", "%s%s.cbor" % (kind.replace(".", "-"), "-signed" if signed else ""), entry)
seen = set()
for line in open(jsonl):
    kind = json.loads(line)["kind"]
    if kind in seen:
        continue
    seen.add(kind)
    put("lineage_json", kind.replace(".", "-") + ".json", line.strip().encode())
trust_bytes = open(trust, "rb").read()
notes = list(frames(cps))
for i in sorted({0, len(notes) // 2, len(notes) - 1}):
    put("checkpoint_note", "demo-%d.note" % i, trust_bytes + sep + notes[i])
for i, note in enumerate(list(frames(tiny_cps))[:2]):
    put("checkpoint_note", "tiny-run-%d.note" % i, trust_bytes + sep + note)
EOF
mkdir -p "$corpus/segment_frames"
cp tiny-run/lineage/seg-00000000000000000000.wlog "$corpus/segment_frames/tiny-run-segment.wlog"
cp tiny-run/lineage/checkpoints.wlog "$corpus/segment_frames/tiny-run-checkpoints.wlog"
cp tiny-corpus/lineage/seg-00000000000000000000.wlog "$corpus/segment_frames/tiny-corpus-segment.wlog"
seed store_read tiny-run trust.toml tiny-run/lineage/seg-00000000000000000000.wlog tiny-run/lineage/checkpoints.wlog
seed store_read tiny-corpus trust.toml tiny-corpus/lineage/seg-00000000000000000000.wlog tiny-corpus/lineage/checkpoints.wlog

# Policy bundles: every demo bundle text (admissible and not), the canonical text, signed bundles.
mkdir -p "$corpus/policy_bundle"
cp policy/*.toml policy/admitted/bundle.canonical.toml "$corpus/policy_bundle/"
for f in policy/admitted/bundle.admitted.json policy/admitted/history/*.json; do
    seed policy_signed_bundle "$(basename "$f")" trust.toml "$f"
done

# Corpus: declarations, sources, the files of an admission.
mkdir -p "$corpus/corpus_declaration" "$corpus/corpus_source_text" "$corpus/corpus_source_jsonl" \
    "$corpus/corpus_sample_index" "$corpus/corpus_fingerprint_index" "$corpus/train_canaries"
cp corpus-synth/declaration.toml "$corpus/corpus_declaration/synth-declaration.toml"
sed -n '/^### The declaration/,/^```$/p' "$root/README.md" | sed '1,3d;$d' >"$corpus/corpus_declaration/readme-declaration.toml"
cp tiny-synth/prose.txt tiny-synth/gpl-snippets.txt tiny-synth/dialogue/scenes-00.txt "$corpus/corpus_source_text/"
cp tiny-synth/news.jsonl tiny-synth/customers.jsonl "$corpus/corpus_source_jsonl/"
seed corpus_signed_declaration tiny-corpus trust.toml tiny-corpus/declaration.json tiny-corpus/declaration.sig tiny-corpus/samples.idx
cp tiny-corpus/samples.idx "$corpus/corpus_sample_index/tiny-corpus.idx"
cp tiny-corpus/fingerprints/*.fp "$corpus/corpus_fingerprint_index/"
cp corpus-synth/canaries.json "$corpus/train_canaries/"

# Training: configs, the policy as the run keeps it, checkpoints, the manifest.
mkdir -p "$corpus/train_config" "$corpus/train_policy" "$corpus/train_checkpoint"
cp full-config.toml "$corpus/train_config/readme-config.toml"
cp tiny.toml "$corpus/train_config/tiny.toml"
cp tiny-run/config.toml "$corpus/train_config/run-config.toml"
cp tiny-run/policy.toml "$corpus/train_policy/run-policy.toml"
cp tiny-run/model.safetensors "$corpus/train_checkpoint/model.safetensors"
cp tiny-run/checkpoints/iter-00000002.safetensors "$corpus/train_checkpoint/iter-00000002.safetensors"
seed attest_envelope tiny-run-manifest.json trust.toml tiny-run/manifest.intoto.json

# Keys and trust.
mkdir -p "$corpus/key_file" "$corpus/trust_file"
cp keys/* "$corpus/key_file/"
cp trust.toml "$corpus/trust_file/"

du -sh "$corpus"
