//! TLS for the embedded target (`sockcap serve --transport tls`): the certificate and
//! key it serves ([`ServeTls`]: given with `--tls-cert`/`--tls-key`, or made at start
//! with rcgen), and the one rustls [`ServerConfig`] of a process.
//!
//! A made certificate is a fresh CA's (`sockcap embedded target CA`) leaf for
//! `127.0.0.1`, `::1` and `localhost`. The CA's certificate, the leaf and its key are
//! written to a private directory (mode 0700) under the system's temporary directory;
//! the ready line and message name the CA file, which a run trusts without a `[tls] ca`.
//! A `serve --workers N` passes the files to its workers, so all serve one certificate.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// The certificate files a TLS target serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeTls {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that issued `cert`, for clients to trust, when this process made it;
    /// `None` for files given by the user.
    pub ca: Option<PathBuf>,
    /// The private directory this process made and removes at exit.
    pub made_dir: Option<PathBuf>,
}

impl ServeTls {
    /// Make a CA and a certificate for the loopback names, in a new private directory.
    pub fn generate() -> anyhow::Result<ServeTls> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("drawing a directory name: {e}"))?;
        let name = format!("sockcap-tls-{}-{:016x}", std::process::id(), u64::from_le_bytes(nonce));
        let dir = std::env::temp_dir().join(name);
        fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let made = (|| -> anyhow::Result<ServeTls> {
            let ca_key = rcgen::KeyPair::generate().context("generating the CA's key")?;
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).context("the CA's parameters")?;
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params.distinguished_name.push(rcgen::DnType::CommonName, "sockcap embedded target CA");
            let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).context("signing the CA")?;
            let names = vec!["127.0.0.1".to_string(), "::1".to_string(), "localhost".to_string()];
            let key = rcgen::KeyPair::generate().context("generating the target's key")?;
            let mut params = rcgen::CertificateParams::new(names).context("the target's parameters")?;
            params.distinguished_name.push(rcgen::DnType::CommonName, "sockcap embedded target");
            let cert = params.signed_by(&key, &ca).context("signing the target's certificate")?;
            let tls = ServeTls {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
                ca: Some(dir.join("ca.pem")),
                made_dir: Some(dir.clone()),
            };
            write_private(&tls.cert, &cert.pem())?;
            write_private(&tls.key, &key.serialize_pem())?;
            write_private(tls.ca.as_deref().unwrap_or(&dir), &ca.pem())?;
            Ok(tls)
        })();
        if made.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        made
    }

    /// The server config of this process, from the files.
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .with_context(|| format!("--tls-cert {}: reading PEM certificates", self.cert.display()))?;
        if chain.is_empty() {
            bail!("--tls-cert {}: no certificate in it; give a PEM certificate file", self.cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("--tls-key {}: reading a PEM private key", self.key.display()))?;
        // ring, as on the client side (see transport/tls.rs).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .with_context(|| {
                format!("--tls-key {} does not go with --tls-cert {}", self.key.display(), self.cert.display())
            })?;
        Ok(Arc::new(config))
    }

    /// Remove the directory this process made, if it made one.
    pub fn remove_made(&self) {
        if let Some(dir) = &self.made_dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_certificate_loads_and_its_directory_is_private() {
        let tls = ServeTls::generate().unwrap();
        let dir = tls.made_dir.clone().unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o700);
        tls.server_config().unwrap();
        let ca = fs::read_to_string(tls.ca.as_ref().unwrap()).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        tls.remove_made();
        assert!(!dir.exists());
    }
}
