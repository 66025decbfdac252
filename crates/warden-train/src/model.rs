//! The network training runs: Warden's byte-level GPT, defined once in `warden_model::gpt` and
//! shared with decoding. Re-exported here so `warden_train::model::{Gpt, ModelConfig, ...}` keeps
//! naming it.

pub use warden_model::gpt::*;
