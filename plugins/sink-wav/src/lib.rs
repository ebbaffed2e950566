//! tolk.wav sink: records WAV files (being written).
tolk_plugin_api::export_plugins! {}
