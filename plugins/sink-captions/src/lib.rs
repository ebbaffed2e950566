//! tolk.captions sink: WebVTT, SRT and JSONL transcripts (being written).
tolk_plugin_api::export_plugins! {}
