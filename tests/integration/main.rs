//! tolk's integration tests: one binary (links once), a module per area. Everything here runs
//! real plugin libraries loaded from disk and the real `tolk` binary; run `cargo build
//! --workspace` first.

mod cli;
mod config;
mod conformance;
mod devices;
mod inputs;
mod listen;
mod loading;
#[cfg(feature = "offline")]
mod offline;
mod readme_plugin;
mod realtime;
mod relay;
mod room;
mod roundtrip;
mod run;
mod serve;
mod sinks;
