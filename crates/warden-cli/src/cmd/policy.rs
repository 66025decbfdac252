//! Placeholder being replaced by its owner in this session: the CLI for this command group.

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum Command {}

#[derive(Args)]
pub struct BenchArgs {}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {}
}

pub fn bench(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn demo_stage(_ctx: &mut super::demo::DemoContext) -> anyhow::Result<()> {
    Ok(())
}
