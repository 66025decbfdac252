//! `warden bench …`: dispatches to each command group's benchmark.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// Lineage append, verify and proof throughput.
    Lineage(super::lineage::BenchArgs),
    /// Corpus admission throughput and peak memory.
    Corpus(super::corpus::BenchArgs),
    /// Governed vs ungoverned training step time.
    Train(super::train::BenchArgs),
    /// Canary memorization, ungoverned vs governed.
    Memorization(super::train::MemorizationArgs),
    /// Policy admission time and per-transition evaluation time.
    Policy(super::policy::BenchArgs),
    /// Verbatim reproduction of memorized restricted-depth documents, ungoverned vs governed.
    Regurgitation(super::regurgitation::RegurgitationArgs),
    /// Governed vs ungoverned decoding: time per token and per-token governance time.
    Decode(super::bench_decode::DecodeArgs),
}

pub fn run(what: Bench) -> anyhow::Result<()> {
    match what {
        Bench::Lineage(args) => super::lineage::bench(args),
        Bench::Corpus(args) => super::corpus::bench(args),
        Bench::Train(args) => super::train::bench(args),
        Bench::Memorization(args) => super::train::bench_memorization(args),
        Bench::Policy(args) => super::policy::bench(args),
        Bench::Regurgitation(args) => super::regurgitation::bench_regurgitation(args),
        Bench::Decode(args) => super::bench_decode::bench(args),
    }
}
