//! One module per command group; each owns its flags, its demo stage and its benchmark.

pub mod audit;
pub mod bench;
pub mod bench_decode;
pub mod corpus;
pub mod demo;
pub mod generate;
pub mod key;
pub mod lineage;
pub mod policy;
pub mod regurgitation;
pub mod train;
