//! Realtime sessions: the protocol client (GA, Realtime Translation, legacy preview codecs).
