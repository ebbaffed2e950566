//! The optional *device listing* capability ([`CAPABILITY`], `tolk.devices/1`): a source or
//! sink that opens hardware (a sound card, a capture interface, an NDI receiver) can tell the
//! host which devices exist, so `tolk devices` can list them without the host knowing the
//! backend (tolk's core never links an audio library).
//!
//! An author opts in with two items on the plugin type:
//!
//! ```ignore
//! impl AudioSource for Mic {
//!     const CAPABILITIES: &'static [&'static str] = &[tolk_plugin_api::device::CAPABILITY];
//!     fn devices() -> Result<Vec<DeviceInfo>, PluginError> { /* ask the backend */ }
//!     // …
//! }
//! ```
//!
//! The direction is the plugin's kind: a source lists input devices, a sink output devices.
//! To *use* a device the host creates an ordinary instance with the device's name in its
//! config (`device = "…"`); `tolk devices --meter NAME` does exactly that with the source.

use std::fmt;

use abi_stable::{
    StableAbi,
    std_types::{RString, RVec},
};

/// The capability id a plugin lists in its descriptor when it implements `devices()`.
pub const CAPABILITY: &str = "tolk.devices/1";

/// One device as a plugin reports it. Built with [`DeviceInfo::new`] and the `with_*` methods.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    name: RString,
    id: RString,
    is_default: bool,
    max_channels: u16,
    default_channels: u16,
    default_rate: u32,
    rates: RVec<u32>,
    sample_formats: RString,
}

impl DeviceInfo {
    /// A device called `name` (what a user writes in `device = "…"`), with nothing else
    /// known yet.
    pub fn new(name: impl Into<String>) -> Self {
        DeviceInfo {
            name: RString::from(name.into()),
            id: RString::new(),
            is_default: false,
            max_channels: 0,
            default_channels: 0,
            default_rate: 0,
            rates: RVec::new(),
            sample_formats: RString::new(),
        }
    }

    /// Sets the backend's stable id of the device, when it differs from the name.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = RString::from(id.into());
        self
    }

    /// Marks it as the system's default device for its direction.
    pub fn with_default(mut self, is_default: bool) -> Self {
        self.is_default = is_default;
        self
    }

    /// Sets the channel counts: the most it supports and the one it opens with by default.
    pub fn with_channels(mut self, max_channels: u16, default_channels: u16) -> Self {
        self.max_channels = max_channels;
        self.default_channels = default_channels;
        self
    }

    /// Sets the supported sample rates (sorted, deduplicated here) and the default one.
    pub fn with_rates(mut self, rates: impl IntoIterator<Item = u32>, default_rate: u32) -> Self {
        let mut r: Vec<u32> = rates.into_iter().collect();
        r.sort_unstable();
        r.dedup();
        self.rates = r.into();
        self.default_rate = default_rate;
        self
    }

    /// Sets the native sample formats, as text (`"f32, i16"`).
    pub fn with_sample_formats(mut self, formats: impl Into<String>) -> Self {
        self.sample_formats = RString::from(formats.into());
        self
    }

    /// The name to put in a config's `device = "…"`.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
    /// The backend's id, `""` when it is the name.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }
    /// True for the system's default device.
    pub fn is_default(&self) -> bool {
        self.is_default
    }
    /// The most channels it supports, 0 when unknown.
    pub fn max_channels(&self) -> u16 {
        self.max_channels
    }
    /// The channel count it opens with by default, 0 when unknown.
    pub fn default_channels(&self) -> u16 {
        self.default_channels
    }
    /// The rate it opens with by default, 0 when unknown.
    pub fn default_rate(&self) -> u32 {
        self.default_rate
    }
    /// Supported sample rates, ascending (common rates within the device's ranges).
    pub fn rates(&self) -> &[u32] {
        self.rates.as_slice()
    }
    /// Native sample formats as text, `""` when unknown.
    pub fn sample_formats(&self) -> &str {
        self.sample_formats.as_str()
    }
}

impl fmt::Display for DeviceInfo {
    /// One line: `name [default] — 1–2 ch (default 2), 8000–192000 Hz (default 48000), f32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if self.is_default {
            write!(f, " [default]")?;
        }
        let mut parts: Vec<String> = Vec::new();
        if self.max_channels > 0 {
            parts.push(format!("1–{} ch (default {})", self.max_channels, self.default_channels));
        }
        match (self.rates.first(), self.rates.last()) {
            (Some(lo), Some(hi)) if lo != hi => parts.push(format!("{lo}–{hi} Hz (default {})", self.default_rate)),
            (Some(r), _) => parts.push(format!("{r} Hz")),
            _ => {}
        }
        if !self.sample_formats.is_empty() {
            parts.push(self.sample_formats.to_string());
        }
        if !parts.is_empty() {
            write!(f, " — {}", parts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_displays() {
        let d = DeviceInfo::new("USB Interface")
            .with_default(true)
            .with_channels(8, 2)
            .with_rates([48_000, 44_100, 48_000, 96_000], 48_000)
            .with_sample_formats("i32, f32");
        assert_eq!(d.rates(), &[44_100, 48_000, 96_000]);
        assert_eq!(
            d.to_string(),
            "USB Interface [default] — 1–8 ch (default 2), 44100–96000 Hz (default 48000), i32, f32"
        );
        assert_eq!(DeviceInfo::new("x").to_string(), "x");
    }
}
