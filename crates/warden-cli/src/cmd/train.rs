//! Placeholder being replaced by its owner in this session: `warden train` and its benchmarks.

use clap::Args;

#[derive(Args)]
pub struct TrainArgs {}

#[derive(Args)]
pub struct BenchArgs {}

#[derive(Args)]
pub struct MemorizationArgs {}

pub fn run(_args: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn bench(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn bench_memorization(_args: MemorizationArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn demo_stage(_ctx: &mut super::demo::DemoContext) -> anyhow::Result<()> {
    Ok(())
}
