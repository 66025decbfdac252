#!/usr/bin/env python3
"""Deterministic-CBOR test vectors for warden-lineage, produced by an OUTSIDE encoder.

Every canonical byte string written here comes from Python `cbor2.dumps(value, canonical=True)`
(RFC 8949 §4.2.1 core deterministic encoding: shortest heads, map keys in bytewise order of
their encodings, floats in the shortest exact width), never from Warden's own encoder. The
Rust test `crates/warden-lineage/tests/cbor_vectors.rs` checks that Warden writes exactly these
bytes, reads them back to the same value, and refuses every other encoding listed.

Re-run (needs `pip install cbor2`; the committed files were made with cbor2 6.3.0):

    python3 crates/warden-lineage/tests/data/gen_cbor_vectors.py

It rewrites, next to itself:
  cbor_vectors.json   values -> canonical hex; other encodings of the same values (each checked
                      here to decode, with cbor2, to that same value) with the byte offset where
                      Warden must refuse them; items outside the JSON model that must be refused.
  demo_records.json   for each real demo lineage record in demo_records_in.json (JSON audit
                      form), its body encoded by cbor2 and the RFC 6962 leaf hash of that body.

To refresh demo_records_in.json from a demo run (`warden demo --dir D`, then
`warden lineage export D/lineage --format json --out D.jsonl`):

    python3 crates/warden-lineage/tests/data/gen_cbor_vectors.py --pick-demo D.jsonl

To check every body of a CBOR export against cbor2 (`warden lineage export DIR --format cbor`):

    python3 crates/warden-lineage/tests/data/gen_cbor_vectors.py --check-export FILE.cbor
"""

import hashlib
import importlib.metadata
import io
import json
import math
import pathlib
import sys

import cbor2

HERE = pathlib.Path(__file__).resolve().parent
ENVELOPE_VERSION = 2


def canonical(value):
    return cbor2.dumps(value, canonical=True)


# ---------------------------------------------------------------------------------------------
# Values of the JSON data model (what a record payload may hold).

INT_BOUNDARIES = [0, 1, 10, 23, 24, 25, 100, 255, 256, 1000, 65535, 65536, 1000000,
                  2**32 - 1, 2**32, 10**12, 2**63 - 1, 2**63, 2**64 - 1]
NEG_BOUNDARIES = [-1, -10, -24, -25, -100, -256, -257, -1000, -65536, -65537,
                  -(2**32), -(2**32) - 1, -(2**63)]
FLOATS = [0.0, -0.0, 1.0, -1.0, 1.5, -4.0, 0.5, 0.25, 65504.0, -65504.0, 65505.0,
          5.960464477539063e-08, 6.103515625e-05, 0.00006097555160522461,  # f16 subnormal max
          100000.0, 3.4028234663852886e38, 1.401298464324817e-45,  # f32 max, f32 subnormal min
          1e-07, 0.1, 1.1, -4.1, 1e300, 5e-324, 1.7976931348623157e308,
          3.140625, 3.14159, 3.141592653589793, 16777216.0, 16777217.0, 0.333251953125,
          1024.5, 2048.5, 4096.5, 1e-5, 123456.789]
TEXTS = ["", "a", "IETF", "\"\\", "ü", "水", "\U00010151", "x" * 23, "y" * 24, "z" * 255,
         "w" * 256, "demo.corpus-authority+6a1d2c3b"]


def value_cases():
    cases = []
    for n in INT_BOUNDARIES:
        cases.append((f"uint {n}", n))
    for n in NEG_BOUNDARIES:
        cases.append((f"nint {n}", n))
    for f in FLOATS:
        cases.append((f"float {f!r}", f))
    for i, t in enumerate(TEXTS):
        cases.append((f"text #{i} (len {len(t.encode())})", t))
    cases += [
        ("null", None),
        ("true", True),
        ("false", False),
        ("empty array", []),
        ("empty map", {}),
        ("array of mixed", [1, -2, 3.5, None, True, False, "s", [], {}]),
        ("array of 24", list(range(24))),
        ("array of 300", [i % 7 for i in range(300)]),
        ("keys a bb aa b", {"a": 1, "bb": 2, "aa": 3, "b": 4}),
        ("keys by length then bytes", {"zzz": 0, "y": 1, "xx": 2, "": 3, "Z": 4, "ab": 5,
                                        "b": 6, "aaa": 7}),
        ("keys past one-byte length", {"k" * 24: 1, "k" * 23: 2, "l": 3, "k" * 256: 4}),
        ("keys non-ascii", {"é": 1, "z": 2, "zz": 3, "水": 4}),
        ("nested maps", {"outer": {"bb": {"b": [1.5, {"aa": None, "a": -0.0}]}, "a": 0.1},
                         "b": [{"y": 1, "xx": 2}], "aa": {}}),
        ("deep array", [[[[[[[[[["bottom"]]]]]]]]]]),
        ("record-like payload", {"step": 12, "loss": 2.8125, "lr": 0.0003, "tokens": 65536,
                                 "gates": {"data": "admitted", "eval": {"holdout": 0.25}},
                                 "flags": []}),
    ]
    return cases


# ---------------------------------------------------------------------------------------------
# Other encodings of the same values: each must decode (here, with cbor2) to the value of its
# canonical twin, and Warden must refuse it at byte `at` (the head of the offending item).

def h(text):
    return bytes.fromhex(text.replace(" ", ""))


NON_CANONICAL = [
    # (name, value, bytes, at)
    ("0 with 1-byte head", 0, h("18 00"), 0),
    ("23 with 1-byte head", 23, h("18 17"), 0),
    ("24 with 2-byte head", 24, h("19 0018"), 0),
    ("255 with 2-byte head", 255, h("19 00ff"), 0),
    ("65535 with 4-byte head", 65535, h("1a 0000ffff"), 0),
    ("2^32-1 with 8-byte head", 2**32 - 1, h("1b 00000000ffffffff"), 0),
    ("-1 with 1-byte head", -1, h("38 00"), 0),
    ("-1000 with 4-byte head", -1000, h("3a 000003e7"), 0),
    ("text length with 1-byte head", "a", h("78 01 61"), 0),
    ("array length with 1-byte head", [1], h("98 01 01"), 0),
    ("map length with 2-byte head", {"a": 1}, h("b9 0001 61 61 01"), 0),
    ("long head nested in a map value", {"a": [5]}, h("a1 61 61 81 18 05"), 4),
    ("keys b before a", {"a": 1, "b": 2}, h("a2 61 62 02 61 61 01"), 4),
    ("keys in text order: aa before b", {"aa": 1, "b": 2}, h("a2 62 61 61 01 61 62 02"), 5),
    ("keys in text order, nested", {"x": {"b": 1, "aa": 2}},
     h("a1 61 78 a2 62 61 61 02 61 62 01"), 8),
    ("1.0 as binary32", 1.0, h("fa 3f800000"), 0),
    ("1.0 as binary64", 1.0, h("fb 3ff0000000000000"), 0),
    ("0.0 as binary64", 0.0, h("fb 0000000000000000"), 0),
    ("-0.0 as binary32", -0.0, h("fa 80000000"), 0),
    ("1.5 as binary64", 1.5, h("fb 3ff8000000000000"), 0),
    ("65504.0 as binary32", 65504.0, h("fa 477fe000"), 0),
    ("100000.0 as binary64", 100000.0, h("fb 40f86a0000000000"), 0),
    ("f16 subnormal as binary32", 5.960464477539063e-08, h("fa 33800000"), 0),
    ("f32 max as binary64", 3.4028234663852886e38, h("fb 47efffffe0000000"), 0),
    ("float as binary64 inside an array", [2.0], h("81 fb 4000000000000000"), 1),
    ("indefinite array", [1, 2], h("9f 01 02 ff"), 0),
    ("indefinite map", {"a": 1}, h("bf 61 61 01 ff"), 0),
    ("indefinite text", "ab", h("7f 61 61 61 62 ff"), 0),
    ("indefinite array nested", {"a": []}, h("a1 61 61 9f ff"), 3),
]

# Items outside the JSON model, or not a value at all: refused (any error).
REFUSED = [
    ("NaN binary16", h("f9 7e00")),
    ("NaN binary64", h("fb 7ff8000000000000")),
    ("+infinity binary16", h("f9 7c00")),
    ("-infinity binary16", h("f9 fc00")),
    ("+infinity binary64", h("fb 7ff0000000000000")),
    ("byte string", h("43 010203")),
    ("tag 1 (epoch time)", h("c1 01")),
    ("tag 2 (bignum)", h("c2 49 010000000000000000")),
    ("undefined", h("f7")),
    ("simple value 16", h("f0")),
    ("simple value 255", h("f8 ff")),
    ("break outside indefinite item", h("ff")),
    ("negative integer below -2^63", h("3b 8000000000000000")),
    ("duplicate key", h("a2 61 61 01 61 61 02")),
    ("integer map key", h("a1 01 02")),
    ("invalid UTF-8 text", h("62 c3 28")),
    ("truncated text", h("65 61 62")),
    ("truncated float", h("fa 3f80")),
    ("trailing byte", h("01 00")),
    ("reserved additional info 28", h("1c")),
]


def same_value(a, b):
    """Equality that tells -0.0 from 0.0 and 1 from 1.0 (both differ in CBOR and in JSON)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def vectors():
    out = {"generator": f"cbor2 {importlib.metadata.version('cbor2')}, canonical=True",
           "vectors": [], "non_canonical": [], "refused": []}
    for name, value in value_cases():
        encoded = canonical(value)
        assert same_value(cbor2.loads(encoded), value), name
        out["vectors"].append({"name": name, "value": value, "hex": encoded.hex()})
    for name, value, encoded, at in NON_CANONICAL:
        assert encoded != canonical(value), name
        assert same_value(cbor2.loads(encoded), value), name
        out["non_canonical"].append({"name": name, "value": value, "hex": encoded.hex(),
                                     "canonical_hex": canonical(value).hex(), "at": at})
    for name, encoded in REFUSED:
        out["refused"].append({"name": name, "hex": encoded.hex()})
    return out


# ---------------------------------------------------------------------------------------------
# Record bodies: [version, seq, kind, time_ms, role, signer name, signer id, policy version,
# prev (bytes 32), payload], the envelope of crates/warden-lineage/src/record.rs.

def record_body(record):
    name, key_id = record["signer"].rsplit("+", 1)
    return canonical([ENVELOPE_VERSION, record["seq"], record["kind"], record["time_ms"],
                      record["role"], name, key_id, record["policy_version"],
                      bytes.fromhex(record["prev"]), record["payload"]])


def demo_records():
    source = json.loads((HERE / "demo_records_in.json").read_text())
    bodies = []
    for record in source["records"]:
        body = record_body(record)
        bodies.append({"seq": record["seq"], "kind": record["kind"], "body_hex": body.hex(),
                       "leaf_hash": hashlib.sha256(b"\x00" + body).hexdigest()})
    return {"generator": f"cbor2 {importlib.metadata.version('cbor2')}, canonical=True",
            "input": "demo_records_in.json", "records": bodies}


def pick_demo(export_path):
    """Chooses a few records of every kind from a demo's JSON-lines export."""
    rows = [json.loads(line) for line in open(export_path) if line.strip()]
    per_kind = {}
    for row in rows:
        per_kind.setdefault(row["kind"], []).append(row)
    chosen = []
    for kind, rows_of_kind in sorted(per_kind.items()):
        step = max(1, len(rows_of_kind) // 5)
        chosen += rows_of_kind[::step][:5]
    chosen.sort(key=lambda r: r["seq"])
    keep = ["seq", "kind", "time_ms", "role", "signer", "policy_version", "prev", "payload"]
    records = [{k: r[k] for k in keep} for r in chosen]
    doc = {"source": f"warden demo, {len(rows)} records; {len(records)} chosen, every kind",
           "records": records}
    (HERE / "demo_records_in.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False)
                                               + "\n")


def check_export(path):
    """Counts the bodies of a CBOR-sequence export that cbor2 re-encodes to the same bytes."""
    stream = io.BytesIO(pathlib.Path(path).read_bytes())
    total = same = 0
    first_bad = None
    while stream.tell() < len(stream.getbuffer()):
        body, _signature = cbor2.load(stream)
        total += 1
        if canonical(cbor2.loads(body)) == body:
            same += 1
        elif first_bad is None:
            first_bad = total - 1
    print(f"cbor2 canonical re-encodes {same} of {total} record bodies byte for byte"
          + ("" if first_bad is None else f" (first difference at entry {first_bad})"))
    return same == total


def write_json(name, doc):
    (HERE / name).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def main(argv):
    if len(argv) == 3 and argv[1] == "--pick-demo":
        pick_demo(argv[2])
    elif len(argv) == 3 and argv[1] == "--check-export":
        return 0 if check_export(argv[2]) else 1
    elif len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    write_json("cbor_vectors.json", vectors())
    write_json("demo_records.json", demo_records())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
