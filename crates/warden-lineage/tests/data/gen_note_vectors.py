#!/usr/bin/env python3
"""Signed-note and checkpoint known-answer vectors from the Go sumdb/note and C2SP suites.

The keys, texts and signature lines below are reproduced, as data, from:
  * golang.org/x/mod at fe2ec04f7c3c: sumdb/note/note_test.go (TestNewVerifier, TestNewSigner,
    TestSign, TestOpen), sumdb/client_test.go (the test log's key and two signed tree notes);
  * C2SP at 5ba5ee830903: signed-note.md (example key and note), tlog-cosignature.md (a witness
    cosignature line).
Every signature is checked here with an independent Ed25519 implementation (Python
`cryptography`). Derived cases (edited, co-signed, malformed notes) are built from them; their
extra signatures are made here with the Go suites' own private keys, never by Warden.

Each checkpoint case says what a verifier following C2SP signed-note / tlog-checkpoint (and Go's
note.Open) concludes, and, where Warden deliberately or knowingly concludes otherwise, a
`warden` entry with the reason. `crates/warden-lineage/tests/note_vectors.rs` checks Warden
against every case.

Re-run (needs `pip install cryptography`):

    python3 crates/warden-lineage/tests/data/gen_note_vectors.py

It rewrites signed_note_vectors.json next to itself.
"""

import base64
import hashlib
import json
import pathlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HERE = pathlib.Path(__file__).resolve().parent
GO_NOTE = "golang.org/x/mod@fe2ec04f7c3c sumdb/note/note_test.go"
GO_SUMDB = "golang.org/x/mod@fe2ec04f7c3c sumdb/client_test.go"
C2SP_NOTE = "C2SP@5ba5ee830903 signed-note.md"
C2SP_COSIG = "C2SP@5ba5ee830903 tlog-cosignature.md"
DERIVED = "derived here (gen_note_vectors.py)"

PETER_V = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_S = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_V = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
SUMDB_V = "localhost.localdev/sumdb+00000c67+AcTrnkbUA+TU4heY3hkjiSES/DSQniBqIeQ/YppAUtK6"
SUMDB_S = "PRIVATE+KEY+localhost.localdev/sumdb+00000c67+AXu6+oaVaOYuQOFrf1V59JK1owcFlJcHwwXHDfDGxSPk"
FOO_V = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"

GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
             "KvqfqdngotpRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01"
             "oOTGwnWLox33WWd1RvMc+QQ=\n")
FOO_TEXT = "This is an example message.\n"
FOO_SIG = ("\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYj"
           "OBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
TREE6 = "go.sum database tree\n6\nwc4SkQt52o5W2nQ8To2ARs+mWuUJjss+sdleoiqxMmM=\n"
TREE6_SIG = ("\u2014 localhost.localdev/sumdb AAAMZ6oRNswlEZ6ZZhxrCvgl1MBy+nusq4JU+TG6Fe2NihWLqOzb+y2c"
             "2kzRLoCr4tvw9o36ucQEnhc20e4nA4Qc/wc=\n")
# The test comment prints this origin as "go.sum database tree!"; the signed text has no "!".
TREE5 = "go.sum database tree\n5\nnWzN20+pwMt62p7jbv1/NlN95ePTlHijabv5zO/s36w=\n"
TREE5_SIG = ("\u2014 localhost.localdev/sumdb AAAMZ5/2FVAdMH58kmnz/0h299pwyskEbzDzoa2/YaPdhvLya4YWDF"
             "QQxu2TQb5GpwAH4NdWnTwuhILafisyf3CNbgg=\n")
WITNESS_SIG = ("\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZ"
               "CB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")


def key_id(name, public):
    return hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]


def parse_vkey(vkey):
    name, hex_id, data = vkey.split("+", 2)
    raw = base64.b64decode(data, validate=True)
    assert raw[0] == 1 and len(raw) == 33, vkey
    assert key_id(name, raw[1:]).hex() == hex_id, vkey
    return name, bytes.fromhex(hex_id), Ed25519PublicKey.from_public_bytes(raw[1:])


def parse_skey(skey):
    _private, _key, name, hex_id, data = skey.split("+", 4)
    raw = base64.b64decode(data, validate=True)
    assert raw[0] == 1 and len(raw) == 33, skey
    private = Ed25519PrivateKey.from_private_bytes(raw[1:])
    public = private.public_key().public_bytes_raw()
    assert key_id(name, public).hex() == hex_id, skey
    return name, bytes.fromhex(hex_id), private


def vkey_of(skey):
    name, hex_id, private = parse_skey(skey)
    public = private.public_key().public_bytes_raw()
    data = base64.b64encode(b"\x01" + public).decode()
    return f"{name}+{hex_id.hex()}+{data}"


def check_line(text, line, vkey):
    """Asserts that a signature line verifies over text with vkey (raises otherwise)."""
    name, hex_id, public = parse_vkey(vkey)
    prefix = f"\u2014 {name} "
    assert line.startswith(prefix) and line.endswith("\n"), line
    blob = base64.b64decode(line[len(prefix):-1], validate=True)
    assert blob[:4] == hex_id, line
    public.verify(blob[4:], text.encode())


def sign_line(text, skey, name=None, key_id_bytes=None):
    key_name, hex_id, private = parse_skey(skey)
    blob = (key_id_bytes or hex_id) + private.sign(text.encode())
    return f"\u2014 {name or key_name} {base64.b64encode(blob).decode()}\n"


def generated_key(index):
    """A 'witness' key for the many-signatures case, from a fixed seed."""
    seed = hashlib.sha256(f"warden note vectors witness {index}".encode()).digest()
    name = f"witness.example/w{index:02d}"
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    data = base64.b64encode(b"\x01" + seed).decode()
    skey = f"PRIVATE+KEY+{name}+{key_id(name, public).hex()}+{data}"
    return skey, vkey_of(skey)


def main():
    # The published vectors themselves, checked with an independent implementation.
    for text, line, vkey in [(GO_TEXT, PETER_SIG, PETER_V), (GO_TEXT, ENOCH_SIG, ENOCH_V),
                             (FOO_TEXT, FOO_SIG, FOO_V), (TREE6, TREE6_SIG, SUMDB_V),
                             (TREE5, TREE5_SIG, SUMDB_V)]:
        check_line(text, line, vkey)
    assert vkey_of(PETER_S) == PETER_V and vkey_of(SUMDB_S) == SUMDB_V
    assert sign_line(GO_TEXT, PETER_S) == PETER_SIG  # Ed25519 is deterministic (Go TestSign)
    assert sign_line(TREE6, SUMDB_S) == TREE6_SIG

    verifier_keys = [
        {"vkey": PETER_V, "name": "PeterNeumann", "id": "c74f20a3", "source": GO_NOTE},
        {"vkey": ENOCH_V, "name": "EnochRoot", "id": "af0cfe78", "source": GO_NOTE},
        {"vkey": SUMDB_V, "name": "localhost.localdev/sumdb", "id": "00000c67",
         "source": GO_SUMDB},
        {"vkey": FOO_V, "name": "example.com/foo", "id": "530d903a", "source": C2SP_NOTE},
    ]
    bad_verifier_keys = [
        {"vkey": "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
         "why": "wrong length key, with adjusted key hash", "source": GO_NOTE},
        {"vkey": "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
         "why": "unknown algorithm, with adjusted key hash", "source": GO_NOTE},
    ]
    signer_keys = [
        {"skey": PETER_S, "vkey": PETER_V, "source": GO_NOTE},
        {"skey": SUMDB_S, "vkey": SUMDB_V, "source": GO_SUMDB},
    ]
    signed_texts = [
        {"text": GO_TEXT, "line": PETER_SIG, "vkey": PETER_V, "skey": PETER_S,
         "source": GO_NOTE + " TestSign"},
        {"text": GO_TEXT, "line": ENOCH_SIG, "vkey": ENOCH_V, "skey": None,
         "source": GO_NOTE + " TestOpen"},
        {"text": FOO_TEXT, "line": FOO_SIG, "vkey": FOO_V, "skey": None,
         "source": C2SP_NOTE + " example"},
        {"text": TREE6, "line": TREE6_SIG, "vkey": SUMDB_V, "skey": SUMDB_S,
         "source": GO_SUMDB},
        {"text": TREE5, "line": TREE5_SIG, "vkey": SUMDB_V, "skey": SUMDB_S,
         "source": GO_SUMDB},
    ]

    tree6 = TREE6 + "\n" + TREE6_SIG
    peter_on_tree6 = sign_line(TREE6, PETER_S)
    witnesses = [generated_key(i) for i in range(1, 17)]
    cases = []

    def case(name, note, trusted, accept, source, signers=(), warden=None):
        entry = {"name": name, "note": note, "trusted": list(trusted),
                 "expect": "accept" if accept else "reject", "source": source}
        if accept or (warden or {}).get("outcome") == "accept":
            text = note[:note.rindex("\n\n") + 1]
            lines = text.split("\n")
            entry["size"] = int(lines[1])
            entry["root"] = lines[2]
            entry["signers"] = sorted(set(signers))
        if warden:
            entry["warden"] = warden
        cases.append(entry)

    unknown_ignored = {
        "outcome": "reject",
        "divergence": "C2SP signed-note: verifiers MUST ignore signatures from unknown keys; "
                      "Warden's checkpoint verifier refuses any signature line it cannot verify",
    }

    def validly_signed(text):
        return text + "\n" + sign_line(text, SUMDB_S)

    case("go sumdb tree 6", tree6, [SUMDB_V], True, GO_SUMDB,
         ["localhost.localdev/sumdb+00000c67"])
    case("go sumdb tree 5", TREE5 + "\n" + TREE5_SIG, [SUMDB_V], True,
         GO_SUMDB, ["localhost.localdev/sumdb+00000c67"])
    case("tree size edited", tree6.replace("\n6\n", "\n7\n", 1), [SUMDB_V], False, DERIVED)
    case("root hash edited", tree6.replace("wc4Sk", "wc4Sl", 1), [SUMDB_V], False, DERIVED)
    case("origin edited", tree6.replace("database", "Database", 1), [SUMDB_V], False, DERIVED)
    case("only an unrelated key trusted", tree6, [PETER_V], False, GO_NOTE + " (Open, no verifier)")
    case("nothing trusted", tree6, [], False, GO_NOTE + " (Open, empty VerifierList)")
    case("co-signed by two keys, both trusted", tree6 + peter_on_tree6, [SUMDB_V, PETER_V], True,
         GO_NOTE + " (Open, both verified)",
         ["localhost.localdev/sumdb+00000c67", "PeterNeumann+c74f20a3"])
    case("co-signed, signature order swapped", TREE6 + "\n" + peter_on_tree6 + TREE6_SIG,
         [SUMDB_V, PETER_V], True, DERIVED,
         ["localhost.localdev/sumdb+00000c67", "PeterNeumann+c74f20a3"])
    case("co-signed, more keys trusted than signed", tree6 + peter_on_tree6,
         [ENOCH_V, SUMDB_V, PETER_V], True, DERIVED,
         ["localhost.localdev/sumdb+00000c67", "PeterNeumann+c74f20a3"])
    case("co-signed by a trusted and an unknown key", tree6 + peter_on_tree6, [SUMDB_V], True,
         GO_NOTE + " (Open, one verified, one not)", ["localhost.localdev/sumdb+00000c67"],
         unknown_ignored)
    case("unknown key's signature first", TREE6 + "\n" + peter_on_tree6 + TREE6_SIG, [SUMDB_V],
         True, DERIVED, ["localhost.localdev/sumdb+00000c67"], unknown_ignored)
    case("witness cosignature (type 0x04, 72 bytes) from an unknown witness",
         tree6 + WITNESS_SIG, [SUMDB_V], True, C2SP_COSIG + " (line) on " + GO_SUMDB,
         ["localhost.localdev/sumdb+00000c67"],
         {"outcome": "reject",
          "divergence": "C2SP: unknown keys' signatures (any length, any type) are ignored; "
                        "Warden's parser refuses a signature that is not key id + 64 bytes"})
    case("unknown key sharing the trusted key's name",
         tree6 + sign_line(TREE6, PETER_S, name="localhost.localdev/sumdb"), [SUMDB_V], True,
         C2SP_NOTE + " (ignore keys sharing a name or an ID, not both)",
         ["localhost.localdev/sumdb+00000c67"], unknown_ignored)
    case("unknown key sharing the trusted key's id",
         tree6 + sign_line(TREE6, PETER_S, key_id_bytes=bytes.fromhex("00000c67")), [SUMDB_V],
         True, C2SP_NOTE + " (ignore keys sharing a name or an ID, not both)",
         ["localhost.localdev/sumdb+00000c67"], unknown_ignored)
    case("signature by a known key over other text (Go EnochRoot line)", tree6 + ENOCH_SIG,
         [SUMDB_V, ENOCH_V], False, GO_NOTE + " (line) on " + GO_SUMDB)
    case("known key's signature corrupted (Go: ABCD inserted)",
         TREE6 + "\n" + TREE6_SIG[:60] + "ABCD" + TREE6_SIG[60:], [SUMDB_V], False, GO_NOTE)
    case("known key's signature with one bit flipped",
         TREE6 + "\n" + TREE6_SIG.replace("AAAMZ6oR", "AAAMZ6oS", 1), [SUMDB_V], False, DERIVED)
    case("signature line renamed (Go: CarmenSandiego)",
         tree6.replace("localhost.localdev/sumdb", "CarmenSandiego"), [SUMDB_V], False, GO_NOTE)
    case("same signature line twice", tree6 + TREE6_SIG, [SUMDB_V], True, GO_NOTE +
         " (Open, duplicated signatures)", ["localhost.localdev/sumdb+00000c67"])
    case("101 signature lines (Go refuses more than 100)", TREE6 + "\n" + TREE6_SIG * 101,
         [SUMDB_V], False, GO_NOTE + " (Open, too many signatures)",
         ["localhost.localdev/sumdb+00000c67"],
         warden={"outcome": "accept",
                 "divergence": "Go note.Open refuses more than 100 signatures; C2SP only says "
                               "verifiers SHOULD limit them (and MUST accept 16); Warden has "
                               "no limit"})
    many = TREE6 + "\n" + TREE6_SIG + "".join(sign_line(TREE6, s) for s, _ in witnesses)
    case("17 signatures by 17 trusted keys (C2SP: MUST accept at least 16)", many,
         [SUMDB_V] + [v for _, v in witnesses], True, C2SP_NOTE,
         ["localhost.localdev/sumdb+00000c67"] + ["+".join(v.split("+")[:2]) for _, v in witnesses])
    # Go TestOpen's malformed messages, on the tree note.
    case("text only", TREE6, [SUMDB_V], False, GO_NOTE + " (badMsgs)")
    case("text and blank line, no signature", TREE6 + "\n", [SUMDB_V], False,
         GO_NOTE + " (badMsgs)")
    case("signature line without final newline", tree6[:-1], [SUMDB_V], False,
         GO_NOTE + " (badMsgs)")
    case("control character before the text", "\x01" + tree6, [SUMDB_V], False,
         GO_NOTE + " (badMsgs)")
    case("key name with a space", TREE6 + "\n" + "\u2014 Bad Name " + TREE6_SIG.split(" ")[2],
         [SUMDB_V], False, GO_NOTE + " (badMsgs)")
    case("unexpected line after the signatures", tree6 + "Unexpected line.\n", [SUMDB_V], False,
         GO_NOTE + " (badMsgs)")
    case("signature line without the em dash", TREE6 + "\n" + TREE6_SIG[2:], [SUMDB_V], False,
         DERIVED)
    case("signature not base64", TREE6 + "\n" + TREE6_SIG.replace("AAAMZ6oR", "AAAM*6oR"),
         [SUMDB_V], False, DERIVED)
    case("signature too short to hold a key id", TREE6 + "\n\u2014 localhost.localdev/sumdb AAA=\n",
         [SUMDB_V], False, DERIVED)
    # Validly signed by the trusted key, but not a valid note or checkpoint text.
    case("control character inside the text, validly signed",
         validly_signed("go.sum database\x01tree\n6\nwc4SkQt52o5W2nQ8To2ARs+mWuUJjss+sdleoiqxMmM=\n"),
         [SUMDB_V], False, C2SP_NOTE + " (no ASCII control characters but newline)",
         ["localhost.localdev/sumdb+00000c67"],
         warden={"outcome": "accept",
                 "divergence": "C2SP: signed notes MUST NOT contain control characters other "
                               "than newline; Warden's parser does not check the text"})
    case("tree size with a leading zero, validly signed",
         validly_signed("go.sum database tree\n06\nwc4SkQt52o5W2nQ8To2ARs+mWuUJjss+sdleoiqxMmM=\n"),
         [SUMDB_V], False, "C2SP tlog-checkpoint (no leading zeroes)")
    case("tree size not decimal, validly signed (Go tlog badTrees)",
         validly_signed("go.sum database tree\n0xabcdef\nwc4SkQt52o5W2nQ8To2ARs+mWuUJjss+sdleoiqxMmM=\n"),
         [SUMDB_V], False, "golang.org/x/mod sumdb/tlog/note_test.go")
    case("root hash not base64 of 32 bytes, validly signed (Go tlog badTrees)",
         validly_signed("go.sum database tree\n6\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n"),
         [SUMDB_V], False, "golang.org/x/mod sumdb/tlog/note_test.go")
    case("empty origin, validly signed",
         validly_signed("\n6\nwc4SkQt52o5W2nQ8To2ARs+mWuUJjss+sdleoiqxMmM=\n"), [SUMDB_V], False,
         "C2SP tlog-checkpoint (origin non-empty)")
    case("two lines only, validly signed", validly_signed("go.sum database tree\n6\n"),
         [SUMDB_V], False, "C2SP tlog-checkpoint (at least three lines)")
    case("extension line, validly signed",
         validly_signed(TREE6 + "extension: opaque\n"), [SUMDB_V], True,
         "C2SP tlog-checkpoint (optional extension lines)",
         ["localhost.localdev/sumdb+00000c67"],
         {"outcome": "reject",
          "divergence": "tlog-checkpoint allows opaque extension lines (NOT RECOMMENDED); "
                        "Warden never writes them and refuses them"})
    case("empty tree, validly signed",
         validly_signed("example.com/empty\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"),
         [SUMDB_V], True, "C2SP tlog-checkpoint (size 0)", ["localhost.localdev/sumdb+00000c67"])

    # Every signature in every accepted case really verifies (independent implementation).
    vkeys = {v.split("+")[0] + "+" + v.split("+")[1]: v for c in cases for v in c["trusted"]}
    for c in cases:
        if c["expect"] == "accept":
            text, sigs = c["note"].split("\n\n")[0] + "\n", c["note"][c["note"].rindex("\n\n") + 2:]
            for signer in c["signers"]:
                name = signer.rsplit("+", 1)[0]
                lines = [ln + "\n" for ln in sigs.split("\n") if ln.startswith(f"\u2014 {name} ")]
                assert any(_verifies(text, ln, vkeys[signer]) for ln in lines), (c["name"], signer)

    doc = {"sources": [GO_NOTE, GO_SUMDB, C2SP_NOTE, C2SP_COSIG],
           "verifier_keys": verifier_keys, "bad_verifier_keys": bad_verifier_keys,
           "signer_keys": signer_keys, "signed_texts": signed_texts, "checkpoints": cases}
    (HERE / "signed_note_vectors.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False)
                                                   + "\n")


def _verifies(text, line, vkey):
    try:
        check_line(text, line, vkey)
        return True
    except Exception:
        return False


if __name__ == "__main__":
    main()
