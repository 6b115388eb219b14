//! TLS for podiumd's listener, from the configured PEM files.

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::{Config, ServerError};

/// The rustls configuration from `--tls-cert`, `--tls-key` and `--tls-client-ca`, or `None`
/// for plaintext.
pub fn server_tls(config: &Config) -> Result<Option<ServerTlsConfig>, ServerError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServerError::TlsFile {
            path: path.display().to_string(),
            source,
        })
    };
    let (Some(cert), Some(key)) = (&config.tls.tls_cert, &config.tls.tls_key) else {
        return Ok(None);
    };
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(cert)?, read(key)?))
        .timeout(config.tls.tls_handshake_timeout);
    if let Some(ca) = &config.tls.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}
