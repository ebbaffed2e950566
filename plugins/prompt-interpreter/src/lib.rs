//! tolk.interpreter prompt provider: interpretation instructions with style, glossary and context (being written).
tolk_plugin_api::export_plugins! {}
