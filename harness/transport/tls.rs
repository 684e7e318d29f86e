//! The TLS transport, the client side: one rustls [`ClientConfig`] per worker, shared by
//! every connection ([`TlsClient`]), built from the scenario's `[tls]` ([`TlsSettings`]):
//! a CA file or the system's roots, SNI, a client certificate (mTLS), ALPN, session
//! resumption on or off, or no verification at all (`insecure`). The handshake runs on a
//! connected `TcpStream`; its failures are counted `tls_certificate` or `tls_handshake`
//! ([`classify`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::failure::ErrorKind;

/// The scenario's `[tls]`, paths resolved: what a [`TlsClient`] is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file of the certificates to trust; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// The name sent as SNI and checked in the target's certificate; `None`: the target's host.
    pub server_name: Option<String>,
    /// The client certificate chain (PEM), for mTLS; with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// ALPN protocols offered, in order (e.g. `["mqtt"]`).
    pub alpn: Vec<String>,
    /// Session resumption (TLS 1.3 tickets, TLS 1.2 ids and tickets) across a worker's connections.
    pub resumption: bool,
    /// Skip verifying the target's certificate.
    pub insecure: bool,
}

/// A `[tls]` that cannot be used: the field, the file and what is wrong (the plan makes
/// it a bad-input error, exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfigError {
    /// `tls.ca`, `tls.cert`, `tls.key`, `tls.server_name`.
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// One worker's TLS client: the shared config and the name every connection asks for.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    /// Verification is off (`insecure = true`).
    pub insecure: bool,
}

impl TlsClient {
    /// Build the config once; `host` is the target's host (the SNI when `server_name`
    /// is not given).
    pub fn new(settings: &TlsSettings, host: &str) -> Result<TlsClient, TlsConfigError> {
        // ring rather than aws-lc-rs: no C toolchain or cmake to build it. rustls 0.23.48
        // deprecates ring's provider for its lack of post-quantum key exchange, which no
        // MQTT broker's TLS needs.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError { field: "tls", message: e.to_string() })?;
        let builder = if settings.insecure {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            builder.with_root_certificates(roots(settings.ca.as_deref())?)
        };
        let mut config = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "tls.cert")?;
                let key = private_key(key)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| TlsConfigError {
                    field: "tls.key",
                    message: format!(
                        "{}: does not go with tls.cert ({e}); give the key of that certificate",
                        key_path(settings)
                    ),
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(missing("tls.key", "tls.cert is given without its key: add `key = \"client.key\"`"))
            }
            (None, Some(_)) => {
                return Err(missing("tls.cert", "tls.key is given without a certificate: add `cert = \"client.pem\"`"))
            }
        };
        config.alpn_protocols = settings.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        if !settings.resumption {
            config.resumption = Resumption::disabled();
        }
        let name = settings.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string()).map_err(|e| TlsConfigError {
            field: "tls.server_name",
            message: format!(
                "`{name}` is no DNS name or IP address ({e}); write e.g. `server_name = \"broker.example\"`"
            ),
        })?;
        Ok(TlsClient { config: Arc::new(config), server_name, insecure: settings.insecure })
    }

    /// The TLS handshake on a connected socket; returns the stream and whether the
    /// session was resumed.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<(TlsStream<TcpStream>, bool)> {
        let connector = TlsConnector::from(Arc::clone(&self.config));
        let stream = connector.connect(self.server_name.clone(), tcp).await?;
        let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Ok((stream, resumed))
    }
}

fn key_path(settings: &TlsSettings) -> String {
    settings.key.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
}

fn missing(field: &'static str, message: &str) -> TlsConfigError {
    TlsConfigError { field, message: message.to_string() }
}

/// The roots to trust: the CA file's certificates, or the system's.
fn roots(ca: Option<&Path>) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in certificates(path, "tls.ca")? {
                store.add(cert).map_err(|e| TlsConfigError {
                    field: "tls.ca",
                    message: format!("{}: a certificate rustls cannot use as a root ({e})", path.display()),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(missing(
                    "tls.ca",
                    "no `ca` given and no system root certificates found (install ca-certificates, or set SSL_CERT_FILE); \
                     give `ca = \"ca.pem\"`",
                ));
            }
        }
    }
    Ok(store)
}

/// Every certificate of a PEM file, at least one.
fn certificates(path: &Path, field: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bad = |why: String| TlsConfigError { field, message: format!("{}: {why}", path.display()) };
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path).map_err(|e| bad(pem_error(&e)))?.collect();
    let certs = certs.map_err(|e| bad(pem_error(&e)))?;
    if certs.is_empty() {
        return Err(bad("no `-----BEGIN CERTIFICATE-----` block in it; give a PEM certificate file".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsConfigError { field: "tls.key", message: format!("{}: {}", path.display(), pem_error(&e)) })
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => format!("cannot be read ({io}); check the path"),
        Error::NoItemsFound => {
            "no PEM block of the right kind in it (a PKCS#8, PKCS#1 or SEC1 key, or a certificate)".into()
        }
        other => format!("not valid PEM ({other:?}); give a PEM file"),
    }
}

/// The failure kind of a TLS handshake's error: a certificate refused on either side is
/// `tls_certificate`; any other TLS error, and an EOF during the handshake, `tls_handshake`;
/// a socket error keeps its own kind (a reset is a reset).
pub fn classify(err: &io::Error) -> (ErrorKind, Option<i32>) {
    if let Some(tls) = err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        let kind = match tls {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => ErrorKind::TlsCertificate,
            rustls::Error::AlertReceived(alert) if is_certificate_alert(*alert) => ErrorKind::TlsCertificate,
            _ => ErrorKind::TlsHandshake,
        };
        return (kind, None);
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => (ErrorKind::TlsHandshake, None),
        _ => ErrorKind::classify(err),
    }
}

fn is_certificate_alert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
    )
}

/// `insecure = true`: every certificate is taken; the handshake's signatures are still
/// checked (they prove the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TlsSettings {
        TlsSettings { resumption: true, ..TlsSettings::default() }
    }

    #[test]
    fn bad_files_name_the_field_and_the_file() {
        let dir = std::env::temp_dir().join(format!("sockcap-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let missing_file = dir.join("absent.pem");
        let cases = [
            (TlsSettings { ca: Some(missing_file.clone()), ..settings() }, "tls.ca", "absent.pem"),
            (TlsSettings { ca: Some(garbage.clone()), ..settings() }, "tls.ca", "garbage.pem"),
            (
                TlsSettings { key: Some(garbage.clone()), insecure: true, ..settings() },
                "tls.cert",
                "without a certificate",
            ),
            (TlsSettings { cert: Some(garbage.clone()), insecure: true, ..settings() }, "tls.key", "without its key"),
        ];
        for (s, field, said) in cases {
            let err = TlsClient::new(&s, "127.0.0.1").unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains(said), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_insecure_client_needs_no_roots() {
        let client = TlsClient::new(&TlsSettings { insecure: true, ..settings() }, "127.0.0.1").unwrap();
        assert!(client.insecure);
        let err = TlsClient::new(&TlsSettings { server_name: Some("a b".into()), insecure: true, ..settings() }, "x");
        assert_eq!(err.unwrap_err().field, "tls.server_name");
    }

    #[test]
    fn certificate_failures_are_told_apart() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(classify(&wrap(unknown)).0, ErrorKind::TlsCertificate);
        assert_eq!(
            classify(&wrap(rustls::Error::AlertReceived(AlertDescription::UnknownCA))).0,
            ErrorKind::TlsCertificate
        );
        assert_eq!(
            classify(&wrap(rustls::Error::AlertReceived(AlertDescription::HandshakeFailure))).0,
            ErrorKind::TlsHandshake
        );
        assert_eq!(classify(&io::Error::from(io::ErrorKind::UnexpectedEof)).0, ErrorKind::TlsHandshake);
        assert_eq!(classify(&io::Error::from_raw_os_error(libc::ECONNRESET)).0, ErrorKind::Reset);
    }
}
