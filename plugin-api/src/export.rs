//! [`export_plugins!`](crate::export_plugins): the one line that turns a crate into a tolk
//! plugin library.

/// Exports a library's plugins. Write it once, at the end of your `lib.rs`:
///
/// ```ignore
/// tolk_plugin_api::export_plugins! {
///     sources: [Tone],
///     prompts: [Glossary],
///     sinks: [Recorder, Captions],
/// }
/// ```
///
/// Each list is optional, but the order `sources`, `prompts`, `sinks` is fixed. The macro
/// emits tolk's version header, abi_stable's root module and the constructors; you write no
/// `unsafe` and no `extern`, and need no direct `abi_stable` dependency. It also checks at
/// compile time that every id is a lower-case reverse-DNS name and that no two plugins of the
/// same kind share one; its error names the id and the type. (The reserved prefix `tolk.` is
/// refused by tolk when it loads a library from outside its own plugin directory.)
///
/// Two build rules follow from what the macro emits:
/// - the crate must be a `cdylib` (`[lib] crate-type = ["cdylib"]`);
/// - it must be built with `panic = "unwind"` (the default): panics are caught at the
///   boundary and turned into errors, which `panic = "abort"` makes impossible, so the macro
///   refuses to compile under it.
///
/// The macro emits `#[unsafe(no_mangle)]` statics with `#[allow(unsafe_code)]`, which works
/// with `unsafe_code = "deny"` but not with `#![forbid(unsafe_code)]`.
#[macro_export]
macro_rules! export_plugins {
    (@abi($major:expr, $minor:expr); $($rest:tt)*) => {
        $crate::export_plugins!(@emit ($major, $minor) $($rest)*);
    };
    (@emit ($major:expr, $minor:expr)
        $(sources: [$($source:ty),* $(,)?] $(,)?)?
        $(prompts: [$($prompt:ty),* $(,)?] $(,)?)?
        $(sinks: [$($sink:ty),* $(,)?] $(,)?)?
    ) => {
        #[doc(hidden)]
        #[allow(unsafe_code, non_upper_case_globals, unused_imports, unused_variables)]
        pub mod __tolk_plugin_exports {
            use super::*;

            #[cfg(panic = "abort")]
            compile_error!(
                "tolk plugins must be built with panic = \"unwind\": a panic is caught at the \
                 plugin boundary and reported, which panic = \"abort\" makes impossible"
            );

            /// The plugin list of this library.
            pub struct Exports;

            impl $crate::__private::Exports for Exports {
                fn descriptors() -> ::std::vec::Vec<$crate::Descriptor> {
                    ::std::vec![
                        $($($crate::__private::source_descriptor::<$source>(),)*)?
                        $($($crate::__private::prompt_descriptor::<$prompt>(),)*)?
                        $($($crate::__private::sink_descriptor::<$sink>(),)*)?
                    ]
                }
                fn new_source(
                    id: &str,
                    config: &str,
                    host: $crate::__private::HostBox,
                ) -> ::std::option::Option<::std::result::Result<$crate::__private::SourceBox, $crate::PluginError>> {
                    $($(if id == <$source as $crate::AudioSource>::ID {
                        return ::std::option::Option::Some($crate::__private::new_source::<$source>(config, host));
                    })*)?
                    ::std::option::Option::None
                }
                fn new_prompt(
                    id: &str,
                    config: &str,
                    host: $crate::__private::HostBox,
                ) -> ::std::option::Option<::std::result::Result<$crate::__private::PromptBox, $crate::PluginError>> {
                    $($(if id == <$prompt as $crate::PromptProvider>::ID {
                        return ::std::option::Option::Some($crate::__private::new_prompt::<$prompt>(config, host));
                    })*)?
                    ::std::option::Option::None
                }
                fn new_sink(
                    id: &str,
                    config: &str,
                    host: $crate::__private::HostBox,
                ) -> ::std::option::Option<::std::result::Result<$crate::__private::SinkBox, $crate::PluginError>> {
                    $($(if id == <$sink as $crate::OutputSink>::ID {
                        return ::std::option::Option::Some($crate::__private::new_sink::<$sink>(config, host));
                    })*)?
                    ::std::option::Option::None
                }
                fn devices(
                    kind: $crate::PluginKind,
                    id: &str,
                ) -> ::std::option::Option<::std::result::Result<::std::vec::Vec<$crate::device::DeviceInfo>, $crate::PluginError>> {
                    $($(if kind == $crate::PluginKind::Source && id == <$source as $crate::AudioSource>::ID {
                        return ::std::option::Option::Some(<$source as $crate::AudioSource>::devices());
                    })*)?
                    $($(if kind == $crate::PluginKind::Sink && id == <$sink as $crate::OutputSink>::ID {
                        return ::std::option::Option::Some(<$sink as $crate::OutputSink>::devices());
                    })*)?
                    ::std::option::Option::None
                }
            }

            const _: () = $crate::__private::check_ids(&[
                $($((0u8, <$source as $crate::AudioSource>::ID, stringify!($source)),)*)?
                $($((1u8, <$prompt as $crate::PromptProvider>::ID, stringify!($prompt)),)*)?
                $($((2u8, <$sink as $crate::OutputSink>::ID, stringify!($sink)),)*)?
            ]);

            /// tolk's version header, read before anything else (see `ffi::header`).
            #[unsafe(no_mangle)]
            pub static tolk_plugin_header: $crate::__private::PluginHeader =
                $crate::__private::PluginHeader::with_abi($major, $minor, env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));

            /// abi_stable's library header (the symbol name abi_stable 0.11 looks up).
            #[unsafe(no_mangle)]
            pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader =
                $crate::__private::lib_header::<Exports>();
        }
    };
    ($($rest:tt)*) => {
        $crate::export_plugins!(@emit ($crate::ABI_MAJOR, $crate::ABI_MINOR) $($rest)*);
    };
}

/// Compile-time checks on a library's ids: each is a valid reverse-DNS id, and no two plugins of
/// the same kind share one. Each entry is (kind: 0 source, 1 prompt, 2 sink; id; type name).
/// Panics (a compile error in const context) with a message naming the id and the type.
#[doc(hidden)]
pub const fn check_ids(ids: &[(u8, &str, &str)]) {
    let mut i = 0;
    while i < ids.len() {
        let (kind, id, ty) = ids[i];
        if !crate::is_valid_id(id) {
            fail(&[
                "plugin id \"",
                id,
                "\" of ",
                kind_name(kind),
                " ",
                ty,
                " is not a lower-case reverse-DNS name (like \"com.acme.glossary\": labels of a-z, 0-9 \
                 and '-', separated by dots, at least two labels)",
            ]);
        }
        let mut j = i + 1;
        while j < ids.len() {
            if kind == ids[j].0 && str_eq(id, ids[j].1) {
                fail(&["two ", kind_name(kind), "s share the id \"", id, "\": ", ty, " and ", ids[j].2]);
            }
            j += 1;
        }
        i += 1;
    }
}

const fn kind_name(kind: u8) -> &'static str {
    match kind {
        0 => "source",
        1 => "prompt",
        _ => "sink",
    }
}

/// Panics with `parts` joined (at most 512 bytes: ids and type names are short).
const fn fail(parts: &[&str]) -> ! {
    const CAP: usize = 512;
    let mut buf = [0u8; CAP];
    let mut n = 0;
    let mut p = 0;
    while p < parts.len() {
        let bytes = parts[p].as_bytes();
        let mut k = 0;
        while k < bytes.len() && n < CAP {
            buf[n] = bytes[k];
            n += 1;
            k += 1;
        }
        p += 1;
    }
    match core::str::from_utf8(buf.split_at(n).0) {
        Ok(msg) => panic!("{}", msg),
        // Only when the cap split a character.
        Err(_) => panic!("a plugin id is invalid or shared (message too long to show)"),
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
