//! tolk's own version header: a small `#[repr(C)]` static under a fixed symbol name, read with
//! a plain symbol lookup before abi_stable's layout check, so that a plugin built for another
//! ABI (or a library that is no plugin at all) gets one clear line instead of a layout dump.
//!
//! Its layout is frozen forever: fields may only be added at the end, announced by
//! `header_size`.

/// The symbol under which every plugin library exports its [`PluginHeader`].
pub const HEADER_SYMBOL: &str = "tolk_plugin_header";

/// The first eight bytes of every header.
pub const MAGIC: [u8; 8] = *b"TOLKPLG\0";

/// The header (see the module docs). Strings are NUL-padded UTF-8.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginHeader {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// `size_of::<PluginHeader>()` in the plugin-api that built the library.
    pub header_size: u32,
    /// ABI major version the library was built for.
    pub abi_major: u16,
    /// ABI minor version the library was built for.
    pub abi_minor: u16,
    /// Version of `tolk-plugin-api` the library was built against.
    pub api_version: [u8; 32],
    /// The plugin crate's name (`CARGO_PKG_NAME`).
    pub crate_name: [u8; 64],
    /// The plugin crate's version (`CARGO_PKG_VERSION`).
    pub crate_version: [u8; 32],
}

impl PluginHeader {
    /// The header for a crate built against this plugin-api.
    pub const fn new(crate_name: &str, crate_version: &str) -> Self {
        Self::with_abi(crate::ABI_MAJOR, crate::ABI_MINOR, crate_name, crate_version)
    }

    /// A header claiming another ABI version: only for test fixtures that check the
    /// host's refusal.
    pub const fn with_abi(abi_major: u16, abi_minor: u16, crate_name: &str, crate_version: &str) -> Self {
        PluginHeader {
            magic: MAGIC,
            header_size: std::mem::size_of::<PluginHeader>() as u32,
            abi_major,
            abi_minor,
            api_version: fixed(crate::API_VERSION),
            crate_name: fixed(crate_name),
            crate_version: fixed(crate_version),
        }
    }

    /// A header of zeros: what a host fills in from a plugin's (possibly shorter) header, so
    /// that fields an older plugin does not have read as zero and empty.
    pub const fn zeroed() -> Self {
        PluginHeader {
            magic: [0; 8],
            header_size: 0,
            abi_major: 0,
            abi_minor: 0,
            api_version: [0; 32],
            crate_name: [0; 64],
            crate_version: [0; 32],
        }
    }

    /// The API version as text.
    pub fn api_version(&self) -> String {
        unfixed(&self.api_version)
    }

    /// The crate name as text.
    pub fn crate_name(&self) -> String {
        unfixed(&self.crate_name)
    }

    /// The crate version as text.
    pub fn crate_version(&self) -> String {
        unfixed(&self.crate_version)
    }
}

/// Copies `s` into a NUL-padded array, cutting it at `N - 1` bytes (on a char boundary).
const fn fixed<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut len = if bytes.len() < N { bytes.len() } else { N - 1 };
    // Back off to a char boundary so the stored text stays valid UTF-8.
    while len > 0 && len < bytes.len() && (bytes[len] & 0xC0) == 0x80 {
        len -= 1;
    }
    let mut i = 0;
    while i < len {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

fn unfixed(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_strings_round_trip_and_truncate_on_char_boundary() {
        let h = PluginHeader::new("acme-glossary", "1.2.3");
        assert_eq!(h.crate_name(), "acme-glossary");
        assert_eq!(h.crate_version(), "1.2.3");
        assert_eq!(h.api_version(), crate::API_VERSION);
        let long = "é".repeat(40); // 80 bytes
        let a: [u8; 32] = fixed(&long);
        let s = unfixed(&a);
        assert_eq!(s, "é".repeat(15));
    }
}
