//! `tiny-lm` — an **example workload** for gantry, not part of gantry itself.
//!
//! A byte-level transformer small enough to train on two CPU cores in under a
//! minute, with the pieces a real LLM project has: a data generator
//! ([`data`]), a trainer that follows the gantry training contract
//! ([`train`]: checkpoints, exact resume, SIGTERM), an evaluator that writes
//! gantry-native and lm-evaluation-harness-shaped results ([`eval`]), an
//! OpenAI-compatible server with vLLM-style Prometheus metrics ([`serve`]),
//! and converted variants — half precision or a Q8_0 GGUF ([`export`]).
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod chat;
pub mod cli;
pub mod data;
pub mod eval;
pub mod export;
pub mod model;
pub mod serve;
pub mod train;
