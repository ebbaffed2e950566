//! TLS for tolk's servers: a PEM certificate chain and private key loaded into a rustls
//! [`ServerConfig`] (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`), for a
//! [`tokio_rustls::TlsAcceptor`]. `tolk serve --tls-cert --tls-key` uses it; any other listener
//! can too.
//!
//! ```no_run
//! # fn f() -> Result<(), String> {
//! let config = tolk_core::tls::server_config("cert.pem".as_ref(), "key.pem".as_ref())?;
//! let acceptor = tokio_rustls::TlsAcceptor::from(config);
//! # Ok(()) }
//! ```

use std::{path::Path, sync::Arc};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// Loads `cert` (PEM, the leaf first, then any intermediates) and `key` (PEM: PKCS#8, PKCS#1 or
/// SEC1) into a server config. Errors are one line naming the file.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {}", cert.display(), pem_error(e)))?;
    if certs.is_empty() {
        return Err(format!("TLS certificate {}: no CERTIFICATE block in the file", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {}", key.display(), pem_error(e)))?;
    from_der(certs, key_der).map_err(|e| format!("TLS certificate {} with key {}: {e}", cert.display(), key.display()))
}

/// A server config with a fresh self-signed certificate for `names` (host names or IP
/// addresses): for a trial only, as every browser warns about it.
pub fn self_signed(names: Vec<String>) -> Result<Arc<ServerConfig>, String> {
    let ck =
        rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .map_err(|e| format!("cannot use the self-signed certificate's key: {e}"))?;
    from_der(vec![ck.cert.der().clone()], key)
}

fn from_der(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no matching PEM block in the file".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_pem_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("tolk-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let missing = dir.join("missing.pem");
        let e = server_config(&missing, &junk).unwrap_err();
        assert!(e.starts_with(&format!("TLS certificate {}: ", missing.display())), "{e}");
        let e = server_config(&junk, &junk).unwrap_err();
        assert!(e.contains("junk.pem") && e.contains("no CERTIFICATE block"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
