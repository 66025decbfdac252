//! The lineage core: record envelope, canonical encoding, signed checkpoints and verification.
//!
//! Transport- and storage-agnostic by design (Architecture Invariant: this crate does no IO).
//! `warden-store` puts these records on disk; anything else (an HTTP service, an auditor's tool)
//! can feed the same [`LineageVerifier`].
//!
//! * A [`Record`] is encoded to exactly one canonical CBOR body ([`cbor`]); its RFC 6962 leaf
//!   hash is both its Merkle leaf and the next record's `prev`, so the log is one hash chain and
//!   one Merkle tree over the same bytes.
//! * A record is authenticated either by its own Ed25519 signature over
//!   `"warden/lineage-record/v1\n" ‖ body`, or (window mode) by the next [`SignedCheckpoint`],
//!   which every signer of the window's records co-signs. An unsigned record after the last
//!   checkpoint is authenticated by nothing, and [`LineageVerifier`] refuses it by default.

pub mod cbor;
pub mod checkpoint;
pub mod record;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointFault, NoteSignature, SignedCheckpoint};
pub use record::{
    check_payload, decode_entry, encode_entry, kinds, required_role, rfc3339, signing_message,
    EnvelopeView, Record, RecordDraft, RecordError, SignedRecord,
};
pub use verify::{
    check_signature, check_signer, LineageVerifier, PinFault, PinnedConsistency, RecordFault,
    TrustedSigner, Unauthenticated, UnsealedTail, VerifiedLineage, VerifyError,
};
pub use warden_merkle::Hash;
