//! The exit statuses of every `tolk` command, in one place so that the subcommands and the
//! command line share them without importing each other.
//!
//! | status | meaning |
//! | --- | --- |
//! | [`OK`] (0) | everything done |
//! | [`RUNTIME`] (1) | something failed while running (a plugin, a route, a sink, the budget, a failed conformance check) |
//! | [`USAGE`] (2) | bad usage, configuration or plugin library: nothing was started |
//!
//! A process killed by a signal has no status of its own; tolk catches Ctrl-C and SIGTERM
//! (see [`crate::shutdown`]) and ends with one of these.

/// Success.
pub const OK: u8 = 0;
/// Something failed at run time.
pub const RUNTIME: u8 = 1;
/// Bad usage, configuration or plugin library.
pub const USAGE: u8 = 2;
