//! tolk.wav source: plays WAV files (being written).
tolk_plugin_api::export_plugins! {}
