//! `warden key …`: create authority keys and manage the trust file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use warden_keys::{PublicKey, Role, SigningKey, TrustStore};
use warden_store::fs;

#[derive(Subcommand)]
pub enum Command {
    /// Create an Ed25519 key for a role: FILE (private, mode 0600) and FILE.pub.
    New {
        /// corpus-authority, training-authority, policy-authority or deployment-authority.
        #[arg(long)]
        role: Role,
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
        /// The signed-note key name (defaults to the role).
        #[arg(long)]
        name: Option<String>,
    },
    /// Add a key to a trust file for a role (creates the trust file if missing).
    Trust {
        /// The trust file to update.
        trust: PathBuf,
        /// A private key file or a .pub file.
        key: PathBuf,
        /// The role to trust it for (defaults to the role in the key file).
        #[arg(long)]
        role: Option<Role>,
    },
    /// Print a key's role, name, id and verifier key.
    Show {
        /// A private key file or a .pub file.
        key: PathBuf,
        /// Print only the C2SP signed-note verifier key (`name+hash+base64`), the form Go's
        /// `sumdb/note` and other note verifiers read.
        #[arg(long)]
        verifier: bool,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::New { role, out, name } => {
            let name = name.unwrap_or_else(|| role.to_string());
            let key = new_key(role, &name, &out)?;
            outln!(
                "created {role} key {} in {} (public key in {})",
                key.key_ref(),
                out.display(),
                pub_path(&out).display()
            );
            Ok(())
        }
        Command::Trust { trust, key, role } => {
            let (public, key_role) = load_public(&key)?;
            let role = role.unwrap_or(key_role);
            let mut store = if trust.exists() {
                fs::load_trust(&trust)?
            } else {
                TrustStore::new()
            };
            store.add(role, public.clone());
            fs::atomic_write(&trust, store.to_toml().as_bytes())?;
            outln!(
                "{} now trusts {}+{} for {role}",
                trust.display(),
                public.name(),
                public.id()
            );
            Ok(())
        }
        Command::Show { key, verifier } => {
            let (public, role) = load_public(&key)?;
            if verifier {
                outln!("{}", public.verifier_string());
                return Ok(());
            }
            outln!("role:     {role}");
            outln!("name:     {}", public.name());
            outln!("id:       {}", public.id());
            outln!("verifier: {}", public.verifier_string());
            Ok(())
        }
    }
}

pub fn pub_path(private: &Path) -> PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Generates a key and writes FILE (0600) and FILE.pub.
pub fn new_key(role: Role, name: &str, out: &Path) -> anyhow::Result<SigningKey> {
    if out.exists() {
        anyhow::bail!(
            "{}: already exists; refusing to overwrite a key",
            out.display()
        );
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    }
    let key = SigningKey::generate(role, name)?;
    fs::atomic_write_private(out, key.to_file_text().as_bytes())?;
    let public = format!(
        "role = \"{role}\"\nverifier = \"{}\"\n",
        key.public().verifier_string()
    );
    fs::atomic_write(&pub_path(out), public.as_bytes())?;
    Ok(key)
}

/// Reads the public half of a private key file or a .pub file.
fn load_public(path: &Path) -> anyhow::Result<(PublicKey, Role)> {
    let text = fs::read_to_string(path)?;
    if let Ok(key) = SigningKey::from_file_text(&text) {
        return Ok((key.public().clone(), key.role()));
    }
    #[derive(serde::Deserialize)]
    struct PubFile {
        role: Role,
        verifier: String,
    }
    let parsed: PubFile = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a key file: {}", path.display(), e.message()))?;
    let public =
        PublicKey::parse_verifier(&parsed.verifier).with_context(|| path.display().to_string())?;
    Ok((public, parsed.role))
}
