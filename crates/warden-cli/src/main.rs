//! `warden`: the command-line front of Warden. Thin: parses flags, calls the library crates.

#[macro_use]
mod out;
mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Govern a model across its life, and prove it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on the embedded default in a fresh directory.
    Demo(cmd::demo::DemoArgs),
    /// Create and inspect authority keys.
    Key {
        #[command(subcommand)]
        command: cmd::key::Command,
    },
    /// Inspect, verify, prove and export a lineage.
    Lineage {
        #[command(subcommand)]
        command: cmd::lineage::Command,
    },
    /// Declare, admit, verify and prove corpora.
    Corpus {
        #[command(subcommand)]
        command: cmd::corpus::Command,
    },
    /// Check, admit and evaluate policy bundles.
    Policy {
        #[command(subcommand)]
        command: cmd::policy::Command,
    },
    /// Run governed training (`warden train CONFIG --out RUN_DIR`, `warden train resume RUN_DIR`).
    Train(cmd::train::TrainArgs),
    /// One governed completion: `warden generate --model RUN_DIR --bundle DIR --trust FILE
    /// --prompt TEXT` (the continuation alone on stdout, the summary on stderr).
    Generate(Box<cmd::generate::GenerateArgs>),
    /// Prove from the lineage alone that a training run complied with its policy.
    Audit(cmd::audit::AuditArgs),
    /// Benchmarks that print ratios measured side by side in one run.
    Bench {
        #[command(subcommand)]
        what: cmd::bench::Bench,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Key { command } => cmd::key::run(command),
        Command::Lineage { command } => cmd::lineage::run(command),
        Command::Corpus { command } => cmd::corpus::run(command),
        Command::Policy { command } => cmd::policy::run(command),
        Command::Train(args) => cmd::train::run(args),
        Command::Generate(args) => cmd::generate::run(*args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Bench { what } => cmd::bench::run(what),
    };
    // A closed stdout (`| head`) is not an error of the command: its work is done (see `out`).
    let broken_pipe = |err: &anyhow::Error| {
        err.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        })
    };
    match (result, out::failure()) {
        (Err(err), _) if broken_pipe(&err) => std::process::ExitCode::from(141),
        (Ok(()), None) => std::process::ExitCode::SUCCESS,
        (Ok(()), Some(std::io::ErrorKind::BrokenPipe)) => std::process::ExitCode::from(141),
        (Ok(()), Some(kind)) => {
            eprintln!("error: writing to stdout: {}", std::io::Error::from(kind));
            std::process::ExitCode::FAILURE
        }
        (Err(err), _) => {
            eprintln!("error: {}", error_chain(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes whose text the message already holds
/// (library errors often render their source inline).
fn error_chain(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}
