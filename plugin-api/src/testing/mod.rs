//! The conformance kit: checks that a plugin behaves as the host expects, run on your own type
//! in your own tests (in-process), or on a built library with `tolk plugins check LIB`
//! (out-of-process, one child process per check, so a crash is reported as `crashed`).
//!
//! ```ignore
//! #[test]
//! fn passes_the_conformance_kit() {
//!     let report = tolk_plugin_api::testing::check_source::<Tone>(Tone::EXAMPLE_CONFIG);
//!     assert!(report.passed(), "{report}");
//! }
//! ```
//!
//! Each check has a kebab-case name and a one-line description ([`CHECKS`]); each outcome is
//! pass, fail, skip, warn or crashed. Warnings (timing budgets on a busy machine) do not fail
//! a report. Checks can be skipped by name ([`Options::skip`]).
//!
//! The module also has small harnesses for plugin tests: [`run_source`] collects what a source
//! writes, [`SinkHarness`] drives a sink.

mod checks;
mod harness;

use std::fmt;

pub use checks::{CHECKS, CheckInfo, Factory, Instance, Options, run_check, run_checks};
pub use harness::{Captured, CollectingWriter, SinkHarness, TestHost, run_source};

use crate::{AudioSource, OutputSink, PluginError, PromptProvider, ffi};

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin behaved as required.
    Pass,
    /// It did not; the text says how.
    Fail(String),
    /// The check does not apply or could not run; the text says why.
    Skip(String),
    /// Suspicious but allowed (e.g. slower than the budget on this machine).
    Warn(String),
    /// The check's process died (out-of-process runs only).
    Crashed(String),
}

impl Outcome {
    /// `pass`, `fail`, `skip`, `warn` or `crashed`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Skip(_) => "skip",
            Outcome::Warn(_) => "warn",
            Outcome::Crashed(_) => "crashed",
        }
    }

    /// The explanation, empty for a pass.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Fail(s) | Outcome::Skip(s) | Outcome::Warn(s) | Outcome::Crashed(s) => s,
        }
    }

    /// True for outcomes that fail a report (`fail`, `crashed`).
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Fail(_) | Outcome::Crashed(_))
    }
}

/// One line of a report.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// `kind id`, e.g. `source tolk.tone`.
    pub plugin: String,
    /// The check's kebab-case name.
    pub check: String,
    /// What happened.
    pub outcome: Outcome,
}

/// All results of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// In the order the checks ran.
    pub results: Vec<CheckResult>,
}

impl Report {
    /// True when no check failed or crashed.
    pub fn passed(&self) -> bool {
        !self.results.iter().any(|r| r.outcome.is_failure())
    }

    /// Counts per outcome label: (pass, fail, skip, warn, crashed).
    pub fn counts(&self) -> (usize, usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0, 0);
        for r in &self.results {
            match r.outcome {
                Outcome::Pass => c.0 += 1,
                Outcome::Fail(_) => c.1 += 1,
                Outcome::Skip(_) => c.2 += 1,
                Outcome::Warn(_) => c.3 += 1,
                Outcome::Crashed(_) => c.4 += 1,
            }
        }
        c
    }
}

impl Report {
    /// The closing line: `N passed, N failed, N skipped, N warned, N crashed`.
    pub fn summary(&self) -> String {
        let (p, fl, s, w, c) = self.counts();
        format!("{p} passed, {fl} failed, {s} skipped, {w} warned, {c} crashed")
    }
}

impl fmt::Display for CheckResult {
    /// One line: outcome, check, plugin, and the detail if any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<8} {:<24} {}", self.outcome.label(), self.check, self.plugin)?;
        if !self.outcome.detail().is_empty() {
            write!(f, ": {}", self.outcome.detail())?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            writeln!(f, "{r}")?;
        }
        write!(f, "{}", self.summary())
    }
}

struct TypeFactory<F>(F);

impl<F> Factory for TypeFactory<F>
where
    F: Fn(&str, ffi::HostBox) -> Result<Instance, PluginError>,
{
    fn create(&self, config: &str, host: ffi::HostBox) -> Result<Instance, PluginError> {
        (self.0)(config, host)
    }
}

/// Runs every check on the source type `T`, with `config` as its config table body.
pub fn check_source<T: AudioSource>(config: &str) -> Report {
    let factory = TypeFactory(|c: &str, h| ffi::adapters::new_source::<T>(c, h).map(Instance::Source));
    run_checks(&ffi::adapters::source_descriptor::<T>(), config, &factory, &Options::default())
}

/// Runs every check on the prompt provider type `T`.
pub fn check_prompt<T: PromptProvider>(config: &str) -> Report {
    let factory = TypeFactory(|c: &str, h| ffi::adapters::new_prompt::<T>(c, h).map(Instance::Prompt));
    run_checks(&ffi::adapters::prompt_descriptor::<T>(), config, &factory, &Options::default())
}

/// Runs every check on the sink type `T`.
pub fn check_sink<T: OutputSink>(config: &str) -> Report {
    let factory = TypeFactory(|c: &str, h| ffi::adapters::new_sink::<T>(c, h).map(Instance::Sink));
    run_checks(&ffi::adapters::sink_descriptor::<T>(), config, &factory, &Options::default())
}

/// Builds a source of type `T` through the ABI adapter, as the host would (config errors and
/// panics included), with a [`TestHost`].
pub fn new_source<T: AudioSource>(config: &str) -> Result<ffi::SourceBox, PluginError> {
    ffi::adapters::new_source::<T>(config, TestHost::new().into_ffi())
}

/// Builds a prompt provider of type `T` through the ABI adapter.
pub fn new_prompt<T: PromptProvider>(config: &str) -> Result<ffi::PromptBox, PluginError> {
    ffi::adapters::new_prompt::<T>(config, TestHost::new().into_ffi())
}

/// Builds a sink of type `T` through the ABI adapter.
pub fn new_sink<T: OutputSink>(config: &str) -> Result<ffi::SinkBox, PluginError> {
    ffi::adapters::new_sink::<T>(config, TestHost::new().into_ffi())
}
