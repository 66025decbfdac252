//! Ed25519 keys for Warden's authorities, their signed-note key ids, and the trust file.
//!
//! Key text follows the C2SP signed-note encoding (as in `golang.org/x/mod/sumdb/note`) so that
//! checkpoints signed here verify with off-the-shelf transparency-log tooling:
//!
//! * verifier key: `<name>+<hash>+<base64(0x01 ‖ public key)>`
//! * signer key:   `PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>`
//! * `hash` is the first four bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`, as 8 hex digits.
//!
//! Which key may act in which [`Role`] is not a property of the key: it is what the [`TrustStore`]
//! (the trust file) says. Verification always goes through the trust store, so a valid signature by
//! a key nobody trusted for the role is refused, naming the key and the role.
//!
//! This crate does no file IO; reading and writing key files is the store layer's job.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The signature algorithm byte used by signed notes for Ed25519.
const ALG_ED25519: u8 = 0x01;

/// Errors from parsing keys and trust files, and from signature checks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("unknown role `{0}` (expected corpus-authority, training-authority, policy-authority or deployment-authority)")]
    UnknownRole(String),
    #[error(
        "invalid key name `{0}`: names must be non-empty and contain no '+', spaces or newlines"
    )]
    InvalidName(String),
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("key {key} has id {claimed} in its text but its public key hashes to {actual}")]
    IdMismatch {
        key: String,
        claimed: KeyId,
        actual: KeyId,
    },
    #[error("key {key} is not trusted for role {role}")]
    Untrusted { key: String, role: Role },
    #[error("bad signature by key {key}")]
    BadSignature { key: String },
    #[error("{origin}: {reason}")]
    TrustFile { origin: String, reason: String },
}

/// The authorities whose keys sign Warden's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Declares and signs admitted corpora.
    CorpusAuthority,
    /// Runs governed training and signs iteration records and governance manifests.
    TrainingAuthority,
    /// Admits and signs policy bundles.
    PolicyAuthority,
    /// Signs deployment and inference-service records.
    DeploymentAuthority,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::CorpusAuthority,
        Role::TrainingAuthority,
        Role::PolicyAuthority,
        Role::DeploymentAuthority,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::CorpusAuthority => "corpus-authority",
            Role::TrainingAuthority => "training-authority",
            Role::PolicyAuthority => "policy-authority",
            Role::DeploymentAuthority => "deployment-authority",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so width and alignment flags work in tables.
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| KeyError::UnknownRole(s.to_string()))
    }
}

/// The signed-note key hash: first four bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl KeyId {
    pub fn derive(name: &str, public_key: &[u8; 32]) -> KeyId {
        let mut hasher = Sha256::new();
        hasher.update(name.as_bytes());
        hasher.update(b"\n");
        hasher.update([ALG_ED25519]);
        hasher.update(public_key);
        let digest = hasher.finalize();
        KeyId(u32::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]))
    }

    pub fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl FromStr for KeyId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 8 {
            return Err(KeyError::Malformed {
                what: "key id",
                reason: format!("`{s}` is not 8 hex digits"),
            });
        }
        u32::from_str_radix(s, 16)
            .map(KeyId)
            .map_err(|_| KeyError::Malformed {
                what: "key id",
                reason: format!("`{s}` is not 8 hex digits"),
            })
    }
}

/// A key reference as it appears in records and in messages: `name+hash`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyRef {
    pub name: String,
    pub id: String,
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.name, self.id)
    }
}

fn validate_name(name: &str) -> Result<(), KeyError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(KeyError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(&self.0[..8]))
    }
}

impl Signature {
    pub fn from_slice(bytes: &[u8]) -> Option<Signature> {
        <[u8; 64]>::try_from(bytes).ok().map(Signature)
    }
}

/// A public (verifier) key with its signed-note name and id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    id: KeyId,
    key: ed25519_dalek::VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}+{})", self.name, self.id)
    }
}

impl PublicKey {
    pub fn from_bytes(name: &str, bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        validate_name(name)?;
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|e| KeyError::Malformed {
                what: "public key",
                reason: e.to_string(),
            })?;
        Ok(PublicKey {
            name: name.to_string(),
            id: KeyId::derive(name, bytes),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            name: self.name.clone(),
            id: self.id.to_string(),
        }
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The signed-note verifier key text: `name+hash+base64(0x01 ‖ key)`.
    pub fn verifier_string(&self) -> String {
        let mut data = Vec::with_capacity(33);
        data.push(ALG_ED25519);
        data.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, self.id, BASE64.encode(data))
    }

    /// Parses a signed-note verifier key and checks that its hash matches its key.
    pub fn parse_verifier(text: &str) -> Result<PublicKey, KeyError> {
        let text = text.trim();
        let malformed = |reason: &str| KeyError::Malformed {
            what: "verifier key",
            reason: reason.to_string(),
        };
        // Split from the left: names cannot contain '+', base64 key data can.
        let mut parts = text.splitn(3, '+');
        let name = parts.next().ok_or_else(|| malformed("missing key name"))?;
        let hash = parts.next().ok_or_else(|| malformed("missing key hash"))?;
        let data = parts.next().ok_or_else(|| malformed("missing key data"))?;
        let claimed: KeyId = hash.parse()?;
        let raw = BASE64
            .decode(data)
            .map_err(|_| malformed("key data is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(malformed(
                "key data is not an Ed25519 key (0x01 followed by 32 bytes)",
            ));
        }
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&raw[1..]);
        let key = PublicKey::from_bytes(name, &bytes)?;
        if key.id != claimed {
            return Err(KeyError::IdMismatch {
                key: name.to_string(),
                claimed,
                actual: key.id,
            });
        }
        Ok(key)
    }

    /// Verifies a signature over `message`. Crate-private on purpose (Architecture Invariant:
    /// no API verifies a signature without naming the role): callers use [`TrustStore::verify`].
    pub(crate) fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.key
            .verify_strict(message, &sig)
            .map_err(|_| KeyError::BadSignature {
                key: format!("{}+{}", self.name, self.id),
            })
    }
}

/// A private signing key bound to a role and a signed-note name.
pub struct SigningKey {
    role: Role,
    public: PublicKey,
    secret: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({} {}+{})",
            self.role, self.public.name, self.public.id
        )
    }
}

impl SigningKey {
    /// Generates a fresh key from the operating system's randomness.
    pub fn generate(role: Role, name: &str) -> Result<SigningKey, KeyError> {
        let secret = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        SigningKey::from_seed(role, name, &secret.to_bytes())
    }

    /// Builds a key from a 32-byte seed (deterministic; used by tests and known-answer vectors).
    pub fn from_seed(role: Role, name: &str, seed: &[u8; 32]) -> Result<SigningKey, KeyError> {
        validate_name(name)?;
        let secret = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = PublicKey::from_bytes(name, secret.verifying_key().as_bytes())?;
        Ok(SigningKey {
            role,
            public,
            secret,
        })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn name(&self) -> &str {
        &self.public.name
    }

    pub fn id(&self) -> KeyId {
        self.public.id
    }

    pub fn key_ref(&self) -> KeyRef {
        self.public.key_ref()
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.secret.sign(message).to_bytes())
    }

    /// The signed-note signer key text: `PRIVATE+KEY+name+hash+base64(0x01 ‖ seed)`.
    pub fn signer_string(&self) -> String {
        let mut data = Vec::with_capacity(33);
        data.push(ALG_ED25519);
        data.extend_from_slice(&self.secret.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.public.name,
            self.public.id,
            BASE64.encode(data)
        )
    }

    /// The private key file: TOML with the role and the signed-note signer key.
    pub fn to_file_text(&self) -> String {
        format!(
            "# Warden private key. Keep this file secret (mode 0600).\nrole = \"{}\"\nsigner = \"{}\"\nverifier = \"{}\"\n",
            self.role,
            self.signer_string(),
            self.public.verifier_string()
        )
    }

    /// Parses a private key file written by [`SigningKey::to_file_text`].
    pub fn from_file_text(text: &str) -> Result<SigningKey, KeyError> {
        #[derive(Deserialize)]
        struct KeyFile {
            role: String,
            signer: String,
        }
        let file: KeyFile = toml::from_str(text).map_err(|e| KeyError::Malformed {
            what: "private key file",
            reason: e.message().to_string(),
        })?;
        let role: Role = file.role.parse()?;
        let malformed = |reason: &str| KeyError::Malformed {
            what: "signer key",
            reason: reason.to_string(),
        };
        let rest = file
            .signer
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| malformed("does not start with PRIVATE+KEY+"))?;
        // Split from the left: names cannot contain '+', base64 key data can.
        let mut parts = rest.splitn(3, '+');
        let name = parts.next().ok_or_else(|| malformed("missing key name"))?;
        let hash = parts.next().ok_or_else(|| malformed("missing key hash"))?;
        let data = parts.next().ok_or_else(|| malformed("missing key data"))?;
        let claimed: KeyId = hash.parse()?;
        let raw = BASE64
            .decode(data)
            .map_err(|_| malformed("key data is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(malformed(
                "key data is not an Ed25519 seed (0x01 followed by 32 bytes)",
            ));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&raw[1..]);
        let key = SigningKey::from_seed(role, name, &seed)?;
        if key.id() != claimed {
            return Err(KeyError::IdMismatch {
                key: name.to_string(),
                claimed,
                actual: key.id(),
            });
        }
        Ok(key)
    }
}

/// Which public keys are accepted for which role: the trust file.
///
/// ```toml
/// [[trusted]]
/// role = "corpus-authority"
/// key = "corpus+1a2b3c4d+AQ..."
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    /// Keyed by (name, id): signed-note ids are 4 bytes, so the name disambiguates collisions.
    keys: BTreeMap<(String, KeyId), (PublicKey, Vec<Role>)>,
}

#[derive(Serialize, Deserialize)]
struct TrustFile {
    #[serde(default)]
    trusted: Vec<TrustEntry>,
}

#[derive(Serialize, Deserialize)]
struct TrustEntry {
    role: String,
    key: String,
}

impl TrustStore {
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Trusts `key` for `role` (a key may hold several roles).
    pub fn add(&mut self, role: Role, key: PublicKey) {
        let entry = self
            .keys
            .entry((key.name.clone(), key.id))
            .or_insert_with(|| (key, Vec::new()));
        if !entry.1.contains(&role) {
            entry.1.push(role);
            entry.1.sort();
        }
    }

    /// Parses a trust file; `origin` (usually the path) is named in errors.
    pub fn parse(text: &str, origin: &str) -> Result<TrustStore, KeyError> {
        let file: TrustFile = toml::from_str(text).map_err(|e| KeyError::TrustFile {
            origin: origin.to_string(),
            reason: e.to_string().trim().replace('\n', " "),
        })?;
        let mut store = TrustStore::new();
        for (idx, entry) in file.trusted.iter().enumerate() {
            let at = |e: KeyError| KeyError::TrustFile {
                origin: origin.to_string(),
                reason: format!("entry {}: {e}", idx + 1),
            };
            let role: Role = entry.role.parse().map_err(at)?;
            let key = PublicKey::parse_verifier(&entry.key).map_err(at)?;
            store.add(role, key);
        }
        Ok(store)
    }

    pub fn to_toml(&self) -> String {
        let mut out =
            String::from("# Warden trust file: which public keys are accepted for which role.\n");
        for (key, roles) in self.keys.values() {
            for role in roles {
                out.push_str(&format!(
                    "\n[[trusted]]\nrole = \"{}\"\nkey = \"{}\"\n",
                    role,
                    key.verifier_string()
                ));
            }
        }
        out
    }

    /// Looks a key up by name and id, whatever its roles.
    pub fn key(&self, name: &str, id: KeyId) -> Option<&PublicKey> {
        self.keys.get(&(name.to_string(), id)).map(|(k, _)| k)
    }

    /// Looks a key up by its record reference (`name`, `id` hex).
    pub fn key_by_ref(&self, key: &KeyRef) -> Option<&PublicKey> {
        let id: KeyId = key.id.parse().ok()?;
        self.key(&key.name, id)
    }

    /// The key, if it is trusted for `role`; otherwise an error naming the key and the role.
    pub fn trusted_for(&self, key: &KeyRef, role: Role) -> Result<&PublicKey, KeyError> {
        let untrusted = || KeyError::Untrusted {
            key: key.to_string(),
            role,
        };
        let id: KeyId = key.id.parse().map_err(|_| untrusted())?;
        match self.keys.get(&(key.name.clone(), id)) {
            Some((public, roles)) if roles.contains(&role) => Ok(public),
            _ => Err(untrusted()),
        }
    }

    /// The roles `key` is trusted for (empty if the trust file does not list it).
    pub fn roles_of(&self, key: &KeyRef) -> &[Role] {
        key.id
            .parse::<KeyId>()
            .ok()
            .and_then(|id| self.keys.get(&(key.name.clone(), id)))
            .map_or(&[], |(_, roles)| roles.as_slice())
    }

    /// Checks that `key` is trusted for `role` and that `signature` over `message` is valid.
    /// This is the only public way to check a signature: the role is always named.
    ///
    /// ```
    /// use warden_keys::{Role, SigningKey, TrustStore};
    /// let key = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[1; 32]).unwrap();
    /// let mut trust = TrustStore::new();
    /// trust.add(Role::CorpusAuthority, key.public().clone());
    /// let sig = key.sign(b"m");
    /// assert!(trust.verify(&key.key_ref(), Role::CorpusAuthority, b"m", &sig).is_ok());
    /// assert!(trust.verify(&key.key_ref(), Role::PolicyAuthority, b"m", &sig).is_err());
    /// ```
    ///
    /// A public key alone cannot verify anything (regression: `PublicKey::verify` was public):
    ///
    /// ```compile_fail
    /// use warden_keys::{Role, SigningKey};
    /// let key = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[1; 32]).unwrap();
    /// let sig = key.sign(b"m");
    /// key.public().verify(b"m", &sig).unwrap();
    /// ```
    pub fn verify(
        &self,
        key: &KeyRef,
        role: Role,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), KeyError> {
        self.trusted_for(key, role)?.verify(message, signature)
    }

    /// Every trusted key with the roles it holds.
    pub fn entries(&self) -> impl Iterator<Item = (&PublicKey, &[Role])> {
        self.keys.values().map(|(k, r)| (k, r.as_slice()))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1 TEST 1: the secret key and its public key.
    #[test]
    fn rfc8032_test1_public_key_and_signature() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = SigningKey::from_seed(Role::PolicyAuthority, "rfc8032", &seed).unwrap();
        assert_eq!(
            hex::encode(key.public().to_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = key.sign(b"");
        assert_eq!(
            hex::encode(sig.0),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        key.public().verify(b"", &sig).unwrap();
        assert!(key.public().verify(b"x", &sig).is_err());
    }

    /// The signed-note example key from golang.org/x/mod/sumdb/note documentation.
    #[test]
    fn signed_note_verifier_key_known_answer() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let key = PublicKey::parse_verifier(vkey).unwrap();
        assert_eq!(key.name(), "PeterNeumann");
        assert_eq!(key.id().to_string(), "c74f20a3");
        assert_eq!(key.verifier_string(), vkey);
    }

    #[test]
    fn key_file_round_trip_and_id_check() {
        let key = SigningKey::generate(Role::CorpusAuthority, "corpus.example").unwrap();
        let text = key.to_file_text();
        let back = SigningKey::from_file_text(&text).unwrap();
        assert_eq!(back.id(), key.id());
        assert_eq!(back.role(), Role::CorpusAuthority);
        let tampered = text.replace(&key.id().to_string(), "00000000");
        assert!(matches!(
            SigningKey::from_file_text(&tampered),
            Err(KeyError::IdMismatch { .. })
        ));
    }

    /// Regression: base64 key data often contains '+'; keys must still parse (split from the left).
    #[test]
    fn key_text_round_trips_for_many_keys() {
        for i in 0..200u8 {
            let key = SigningKey::from_seed(Role::TrainingAuthority, "k", &[i; 32]).unwrap();
            let back = PublicKey::parse_verifier(&key.public().verifier_string()).unwrap();
            assert_eq!(&back, key.public());
            let file = SigningKey::from_file_text(&key.to_file_text()).unwrap();
            assert_eq!(file.id(), key.id());
        }
    }

    #[test]
    fn trust_store_refuses_wrong_role_naming_key_and_role() {
        let key = SigningKey::generate(Role::CorpusAuthority, "corpus").unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::CorpusAuthority, key.public().clone());
        let parsed = TrustStore::parse(&trust.to_toml(), "trust.toml").unwrap();
        let sig = key.sign(b"hello");
        parsed
            .verify(&key.key_ref(), Role::CorpusAuthority, b"hello", &sig)
            .unwrap();
        let err = parsed
            .verify(&key.key_ref(), Role::PolicyAuthority, b"hello", &sig)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "key {} is not trusted for role policy-authority",
                key.key_ref()
            )
        );
    }

    #[test]
    fn trust_file_errors_name_the_file() {
        let err =
            TrustStore::parse("[[trusted]]\nrole = \"root\"\nkey = \"x\"\n", "t.toml").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("t.toml: entry 1: unknown role `root`"));
    }
}
