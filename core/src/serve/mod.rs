//! `tolk serve`: tolk's own Realtime-compatible WebSocket server.
