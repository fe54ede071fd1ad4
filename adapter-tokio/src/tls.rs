//! Layer 4c (feature `tls`, or `engine-tls` for the other adapters): TLS configuration with
//! rustls and its `ring` provider, runtime-neutral: [`TlsClientOptions`] builds a
//! [`TlsClient`] (roots, client certificate, SNI, ALPN), [`TlsServerOptions`] a [`TlsServer`]
//! (certificate chain, client certificates for mutual TLS, ALPN). Each adapter runs them with
//! its runtime's rustls stream (tokio-rustls, futures-rustls). Imports nothing from the crate.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

/// Why a TLS configuration could not be built (unreadable PEM, no roots, a key that does not
/// match...).
#[derive(Debug)]
pub struct TlsError {
    message: String,
}

impl TlsError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS configuration: {}", self.message)
    }
}

impl std::error::Error for TlsError {}

impl From<rustls::Error> for TlsError {
    fn from(error: rustls::Error) -> Self {
        Self::new(error.to_string())
    }
}

impl From<TlsError> for io::Error {
    fn from(error: TlsError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, error)
    }
}

/// The lowest TLS version to accept (rustls speaks TLS 1.2 and 1.3 only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 or 1.3 (the default).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl TlsVersion {
    fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS12_UP: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => &TLS12_UP,
            TlsVersion::Tls13 => &TLS13_ONLY,
        }
    }
}

/// mosquitto's spelling (`--tls-version tlsv1.2`, `tlsv1.3`) or `1.2`, `1.3`.
impl FromStr for TlsVersion {
    type Err = TlsError;

    fn from_str(text: &str) -> Result<Self, TlsError> {
        match text.to_ascii_lowercase().as_str() {
            "tlsv1.2" | "tls1.2" | "1.2" => Ok(TlsVersion::Tls12),
            "tlsv1.3" | "tls1.3" | "1.3" => Ok(TlsVersion::Tls13),
            _ => Err(TlsError::new(format!(
                "unsupported TLS version {text:?} (tlsv1.2 or tlsv1.3)"
            ))),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    // rustls 0.23.48 deprecates its ring provider for lacking post-quantum key exchange; ring
    // is still what builds without cmake or a C toolchain beyond cc, so it stays here (bring
    // your own aws-lc-rs configuration through `from_config`).
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(format!("{}: {e}", path.display())))
}

fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new("no certificate in the PEM data"));
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::new(format!("private key PEM: {e}")))
}

fn add_roots(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), TlsError> {
    for cert in certs_from_pem(pem)? {
        roots.add(cert)?;
    }
    Ok(())
}

/// The certificates of every file in `dir` that holds PEM certificates (symbolic links
/// followed, so both the files and the hash links of a `c_rehash`'d directory are read; a
/// certificate read twice is trusted once). Files holding none (CRLs, keys, other data) and
/// subdirectories are skipped; an unreadable directory is an error.
fn certs_from_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| TlsError::new(format!("{}: {e}", dir.display())))?;
    let mut certs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        if let Ok(found) = certs_from_pem(&pem) {
            for cert in found {
                if !certs.contains(&cert) {
                    certs.push(cert);
                }
            }
        }
    }
    Ok(certs)
}

fn crls_from_pem(pem: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(format!("CRL PEM: {e}")))?;
    if crls.is_empty() {
        return Err(TlsError::new(
            "no certificate revocation list (X509 CRL) in the PEM data",
        ));
    }
    Ok(crls)
}

fn alpn_list<P: AsRef<[u8]>>(protocols: impl IntoIterator<Item = P>) -> Vec<Vec<u8>> {
    protocols.into_iter().map(|p| p.as_ref().to_vec()).collect()
}

/// A client's TLS settings, built into a [`TlsClient`] once and used for every connection.
///
/// The server's certificate is verified against the roots added here (custom CA files, the
/// platform's store with feature `native-roots`, Mozilla's with feature `webpki-roots`) and
/// must name the host connected to (or [`server_name`](Self::server_name)), which is also
/// the SNI sent.
///
/// ```
/// use mqtt_streaming_tokio::TlsClientOptions;
/// # fn demo(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<(), mqtt_streaming_tokio::TlsError> {
/// let tls = TlsClientOptions::new()
///     .add_ca_pem(ca_pem)?                     // trust this CA (PEM)
///     .client_cert_pem(cert_pem, key_pem)?     // mutual TLS
///     .alpn(["mqtt"])                          // some cloud brokers want one on port 443
///     .build()?;
/// # let _ = tls; Ok(()) }
/// ```
pub struct TlsClientOptions {
    roots: RootCertStore,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: Vec<Vec<u8>>,
    server_name: Option<String>,
    verify_hostname: bool,
    min_version: TlsVersion,
}

impl fmt::Debug for TlsClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientOptions")
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client_auth.is_some())
            .field("alpn", &self.alpn)
            .field("server_name", &self.server_name)
            .field("verify_hostname", &self.verify_hostname)
            .field("min_version", &self.min_version)
            .finish()
    }
}

impl Default for TlsClientOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl TlsClientOptions {
    /// No roots yet (add some: [`build`](Self::build) refuses an empty store), no client
    /// certificate, no ALPN, host names verified, TLS 1.2 and 1.3.
    pub fn new() -> Self {
        Self {
            roots: RootCertStore::empty(),
            client_auth: None,
            alpn: Vec::new(),
            server_name: None,
            verify_hostname: true,
            min_version: TlsVersion::default(),
        }
    }

    /// Trusts the CA certificates in `pem` (one or more PEM blocks).
    pub fn add_ca_pem(mut self, pem: &[u8]) -> Result<Self, TlsError> {
        add_roots(&mut self.roots, pem)?;
        Ok(self)
    }

    /// Trusts the CA certificates in the PEM file at `path` (mosquitto's `--cafile`).
    pub fn add_ca_file(self, path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let pem = read_file(path.as_ref())?;
        self.add_ca_pem(&pem)
    }

    /// Trusts the CA certificates of every PEM file in the directory `dir` (mosquitto's
    /// `--capath`); files that hold no certificate are skipped.
    ///
    /// mosquitto (OpenSSL) looks certificates up by the hash links `openssl rehash` makes;
    /// this reads every file instead (links followed), so a directory needs no rehash.
    pub fn add_ca_dir(mut self, dir: impl AsRef<Path>) -> Result<Self, TlsError> {
        self.roots
            .add_parsable_certificates(certs_from_dir(dir.as_ref())?);
        Ok(self)
    }

    /// Trusts `cert` (DER).
    pub fn add_ca_der(mut self, cert: CertificateDer<'static>) -> Result<Self, TlsError> {
        self.roots.add(cert)?;
        Ok(self)
    }

    /// Trusts the platform's root certificates (feature `native-roots`, rustls-native-certs);
    /// fails when none could be loaded.
    #[cfg(feature = "native-roots")]
    pub fn native_roots(mut self) -> Result<Self, TlsError> {
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _) = self.roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            return Err(TlsError::new(format!(
                "no platform root certificate loaded ({} errors)",
                loaded.errors.len()
            )));
        }
        Ok(self)
    }

    /// Trusts Mozilla's root certificates, compiled in (feature `webpki-roots`).
    #[cfg(feature = "webpki-roots")]
    pub fn webpki_roots(mut self) -> Self {
        self.roots
            .extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        self
    }

    /// Presents this certificate chain (leaf first) and key (PKCS#8, PKCS#1 or SEC1 PEM) when
    /// the server asks for one: mutual TLS.
    pub fn client_cert_pem(
        mut self,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, TlsError> {
        self.client_auth = Some((certs_from_pem(cert_chain_pem)?, key_from_pem(key_pem)?));
        Ok(self)
    }

    /// [`client_cert_pem`](Self::client_cert_pem) from files (mosquitto's `--cert`, `--key`).
    pub fn client_cert_files(
        self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let certs = read_file(cert_chain.as_ref())?;
        let key = read_file(key.as_ref())?;
        self.client_cert_pem(&certs, &key)
    }

    /// Offers these ALPN protocol names, most preferred first (mosquitto's `--alpn`; some
    /// cloud brokers on port 443 want `mqtt` or `x-amzn-mqtt-ca`).
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = alpn_list(protocols);
        self
    }

    /// Sends `name` as SNI and verifies the certificate against it, instead of the host
    /// connected to (for connecting by IP address to a server whose certificate names a host).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Accepts a server certificate that chains to a trusted root but names another host
    /// (mosquitto's `--insecure`). The chain, its validity period and the handshake
    /// signatures are still verified. For tests and broken deployments only: anyone holding a
    /// certificate from the same CA can then pose as the server.
    pub fn danger_skip_hostname_verification(mut self) -> Self {
        self.verify_hostname = false;
        self
    }

    /// The lowest TLS version to accept (mosquitto's `--tls-version`).
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }

    /// The client configuration, built once (cheap to clone and share).
    pub fn build(self) -> Result<TlsClient, TlsError> {
        if self.roots.is_empty() {
            return Err(TlsError::new(
                "no trusted root certificate (add a CA, or use native_roots / webpki_roots)",
            ));
        }
        let provider = provider();
        let roots = Arc::new(self.roots);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.min_version.versions())?;
        let builder = if self.verify_hostname {
            builder.with_root_certificates(roots)
        } else {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::new(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyHostName(inner)))
        };
        let mut config = match self.client_auth {
            Some((certs, key)) => builder.with_client_auth_cert(certs, key)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        let server_name = self
            .server_name
            .map(|name| {
                ServerName::try_from(name.clone())
                    .map_err(|_| TlsError::new(format!("invalid server name {name:?}")))
            })
            .transpose()?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The TLS settings of mosquitto's client tools (`mosquitto_pub`/`mosquitto_sub`), with the
    /// same meaning: see [`MosquittoTlsFlags`].
    pub fn from_mosquitto_flags(flags: &MosquittoTlsFlags) -> Result<Self, TlsError> {
        let mut options = Self::new();
        if let Some(cafile) = &flags.cafile {
            options = options.add_ca_file(cafile)?;
        }
        if let Some(capath) = &flags.capath {
            options = options.add_ca_dir(capath)?;
        }
        if flags.cafile.is_none() && flags.capath.is_none() {
            #[cfg(feature = "native-roots")]
            {
                options = options.native_roots()?;
            }
            #[cfg(all(not(feature = "native-roots"), feature = "webpki-roots"))]
            {
                options = options.webpki_roots();
            }
        }
        match (&flags.cert, &flags.key) {
            (Some(cert), Some(key)) => options = options.client_cert_files(cert, key)?,
            (None, None) => {}
            _ => return Err(TlsError::new("--cert and --key go together")),
        }
        if flags.insecure {
            options = options.danger_skip_hostname_verification();
        }
        if let Some(version) = &flags.tls_version {
            options = options.min_version(version.parse()?);
        }
        if let Some(alpn) = &flags.alpn {
            options = options.alpn([alpn.as_bytes()]);
        }
        Ok(options)
    }
}

/// mosquitto's client TLS flags, for command-line programs that take them with the same
/// meaning ([`TlsClientOptions::from_mosquitto_flags`]):
///
/// | flag | field | meaning |
/// |---|---|---|
/// | `--cafile FILE` | `cafile` | trust the CAs in this PEM file |
/// | `--capath DIR` | `capath` | trust the CAs of every PEM file in this directory |
/// | `--cert FILE`, `--key FILE` | `cert`, `key` | client certificate and key (mutual TLS) |
/// | `--insecure` | `insecure` | do not check that the certificate names the host |
/// | `--tls-version V` | `tls_version` | `tlsv1.2` or `tlsv1.3`: the lowest version accepted |
/// | `--alpn P` | `alpn` | the ALPN protocol to offer |
///
/// Without `cafile` or `capath`, the platform's roots are trusted (feature `native-roots`;
/// else Mozilla's with feature `webpki-roots`; else building fails: no roots).
#[derive(Clone, Debug, Default)]
pub struct MosquittoTlsFlags {
    /// `--cafile`.
    pub cafile: Option<std::path::PathBuf>,
    /// `--capath`.
    pub capath: Option<std::path::PathBuf>,
    /// `--cert`.
    pub cert: Option<std::path::PathBuf>,
    /// `--key`.
    pub key: Option<std::path::PathBuf>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--tls-version`.
    pub tls_version: Option<String>,
    /// `--alpn`.
    pub alpn: Option<String>,
}

/// The server verifier with the host-name check turned off (mosquitto's `--insecure`): every
/// other verdict is the WebPKI verifier's.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // The chain was verified before the name was checked.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A client's TLS configuration, ready for connections ([`TlsClientOptions::build`], or any
/// rustls [`ClientConfig`] with [`from_config`](Self::from_config)). Cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("alpn", &self.config.alpn_protocols)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Your own rustls configuration (its crypto provider is yours to choose).
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        Self {
            config,
            server_name: None,
        }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The name to send as SNI and verify the certificate against when connecting to `host`:
    /// the configured server name, else `host` (a DNS name or an IP address).
    pub fn server_name_for(&self, host: &str) -> io::Result<ServerName<'static>> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => ServerName::try_from(host.to_owned()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{host:?} is not a valid TLS server name"),
                )
            }),
        }
    }
}

/// A server's TLS settings (a broker's or a server flow's listener), built into a
/// [`TlsServer`].
///
/// ```
/// use mqtt_streaming_tokio::TlsServerOptions;
/// # fn demo(chain_pem: &[u8], key_pem: &[u8], client_ca_pem: &[u8]) -> Result<(), mqtt_streaming_tokio::TlsError> {
/// let tls = TlsServerOptions::new(chain_pem, key_pem)?
///     .require_client_cert(client_ca_pem)?     // mutual TLS: no certificate, no connection
///     .build()?;
/// # let _ = tls; Ok(()) }
/// ```
pub struct TlsServerOptions {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<RootCertStore>,
    client_crls: Vec<CertificateRevocationListDer<'static>>,
    client_cert_optional: bool,
    alpn: Vec<Vec<u8>>,
    min_version: TlsVersion,
}

impl fmt::Debug for TlsServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerOptions")
            .field("chain", &self.chain.len())
            .field("client_roots", &self.client_roots.as_ref().map(|r| r.len()))
            .field("client_crls", &self.client_crls.len())
            .field("client_cert_optional", &self.client_cert_optional)
            .field("alpn", &self.alpn)
            .field("min_version", &self.min_version)
            .finish_non_exhaustive()
    }
}

impl TlsServerOptions {
    /// Presents this certificate chain (leaf first) and key (PEM); no client certificates
    /// asked for.
    pub fn new(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Ok(Self {
            chain: certs_from_pem(cert_chain_pem)?,
            key: key_from_pem(key_pem)?,
            client_roots: None,
            client_crls: Vec::new(),
            client_cert_optional: false,
            alpn: Vec::new(),
            min_version: TlsVersion::default(),
        })
    }

    /// [`new`](Self::new) from PEM files.
    pub fn from_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        Self::new(&read_file(cert_chain.as_ref())?, &read_file(key.as_ref())?)
    }

    /// Mutual TLS: every client must present a certificate issued by a CA in `ca_pem`;
    /// the handshake fails otherwise.
    pub fn require_client_cert(mut self, ca_pem: &[u8]) -> Result<Self, TlsError> {
        let roots = self.client_roots.get_or_insert_with(RootCertStore::empty);
        add_roots(roots, ca_pem)?;
        Ok(self)
    }

    /// Mutual TLS as [`require_client_cert`](Self::require_client_cert), with the CA
    /// certificates of every file of the directory `dir` that holds PEM certificates
    /// (mosquitto's `capath`; links are followed and no `openssl rehash` is needed, see
    /// [`TlsClientOptions::add_ca_dir`]). A directory without any certificate is an error.
    pub fn require_client_cert_dir(mut self, dir: impl AsRef<Path>) -> Result<Self, TlsError> {
        let dir = dir.as_ref();
        let certs = certs_from_dir(dir)?;
        if certs.is_empty() {
            return Err(TlsError::new(format!(
                "no PEM certificate in the directory {}",
                dir.display()
            )));
        }
        let roots = self.client_roots.get_or_insert_with(RootCertStore::empty);
        for cert in certs {
            roots.add(cert)?;
        }
        Ok(self)
    }

    /// With client certificates required: refuses a client certificate that these
    /// certificate revocation lists (PEM `X509 CRL` blocks) revoke (mosquitto's `crlfile`).
    /// As mosquitto (OpenSSL's `X509_V_FLAG_CRL_CHECK`), the client's own certificate is
    /// checked, not the intermediates of its chain; a certificate whose issuer has no CRL
    /// here, or a CRL past its next update, makes the handshake fail.
    pub fn client_crls_pem(mut self, pem: &[u8]) -> Result<Self, TlsError> {
        self.client_crls.extend(crls_from_pem(pem)?);
        Ok(self)
    }

    /// [`client_crls_pem`](Self::client_crls_pem) from a PEM file.
    pub fn client_crl_file(self, path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let pem = read_file(path.as_ref())?;
        self.client_crls_pem(&pem)
    }

    /// With [`require_client_cert`](Self::require_client_cert): clients without a
    /// certificate are let in too (those that present one must present a valid one).
    pub fn client_cert_optional(mut self, optional: bool) -> Self {
        self.client_cert_optional = optional;
        self
    }

    /// The ALPN protocol names this server speaks; a client that offers ALPN must offer one of
    /// them. Empty (the default): ALPN is ignored.
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = alpn_list(protocols);
        self
    }

    /// The lowest TLS version to accept.
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }

    /// The server configuration, built once.
    pub fn build(self) -> Result<TlsServer, TlsError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.min_version.versions())?;
        if self.client_roots.is_none() && !self.client_crls.is_empty() {
            return Err(TlsError::new(
                "certificate revocation lists need client certificates (require_client_cert)",
            ));
        }
        let builder = match self.client_roots {
            Some(roots) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.client_cert_optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = if self.client_crls.is_empty() {
                    verifier
                } else {
                    verifier
                        .with_crls(self.client_crls)
                        .only_check_end_entity_revocation()
                        .enforce_revocation_expiration()
                };
                let verifier = verifier.build().map_err(|e| TlsError::new(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(self.chain, self.key)?;
        config.alpn_protocols = self.alpn;
        Ok(TlsServer {
            config: Arc::new(config),
        })
    }
}

/// A server's TLS configuration, ready for listeners ([`TlsServerOptions::build`], or any
/// rustls [`ServerConfig`] with [`from_config`](Self::from_config)). Cheap to clone.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Your own rustls configuration.
    pub fn from_config(config: Arc<ServerConfig>) -> Self {
        Self { config }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

/// The Common Name (OID 2.5.4.3) of a DER certificate's subject, as mosquitto's
/// `use_identity_as_username` takes it: the last CN of the subject, if it is a UTF-8,
/// printable, IA5 or teletex string. `None` when the certificate has none or is not DER this
/// reader understands. A bounded, non-recursive walk of the first levels of the certificate
/// (its subject only); the chain is checked by rustls before this is asked.
pub fn certificate_common_name(der: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { ... } ... }
    let (tag, cert, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = der_element(cert)?;
    if tag != 0x30 {
        return None;
    }
    // [0] version (optional), serialNumber, signature, issuer, validity, subject.
    let mut index = 0;
    let subject = loop {
        let (tag, value, rest) = der_element(tbs)?;
        tbs = rest;
        if index == 0 && tag == 0xa0 {
            continue;
        }
        if index == 4 {
            if tag != 0x30 {
                return None;
            }
            break value;
        }
        index += 1;
    };
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }
    let mut common_name = None;
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (tag, mut set, rest) = der_element(rdns)?;
        rdns = rest;
        if tag != 0x31 {
            return None;
        }
        while !set.is_empty() {
            let (tag, attribute, rest) = der_element(set)?;
            set = rest;
            if tag != 0x30 {
                return None;
            }
            let (tag, oid, value) = der_element(attribute)?;
            if tag != 0x06 || oid != CN {
                continue;
            }
            let (tag, text, _) = der_element(value)?;
            if matches!(tag, 0x0c | 0x13 | 0x16 | 0x14) {
                common_name = std::str::from_utf8(text).ok().map(str::to_owned);
            }
        }
    }
    common_name
}

/// One DER element at the front of `input`: (tag, contents, what follows). Single-byte tags
/// and definite lengths of up to 4 bytes only.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

#[cfg(test)]
mod cn_tests {
    use super::*;

    fn cert_with(names: &[(&str, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            let kind = match *kind {
                "CN" => rcgen::DnType::CommonName,
                "O" => rcgen::DnType::OrganizationName,
                _ => rcgen::DnType::CountryName,
            };
            params.distinguished_name.push(kind, *value);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_common_name_is_read_and_nothing_else() {
        let der = cert_with(&[("O", "Example"), ("CN", "sensor-7"), ("C", "FR")]);
        assert_eq!(certificate_common_name(&der).as_deref(), Some("sensor-7"));
        assert_eq!(certificate_common_name(&cert_with(&[("O", "no cn")])), None);
        // Truncated or garbage input: no name, no panic.
        for cut in [0, 1, 5, der.len() / 2, der.len() - 1] {
            let _ = certificate_common_name(&der[..cut]);
        }
        assert_eq!(certificate_common_name(b"\x30\x84\xff\xff\xff\xff"), None);
    }
}

#[cfg(test)]
mod client_cert_tests {
    use super::*;
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
        CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
        KeyUsagePurpose, RevokedCertParams, SerialNumber,
    };

    fn ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// A certificate and key (PEM) from `ca` for `name`, with serial number `serial`.
    fn leaf(
        ca: &CertifiedIssuer<'static, KeyPair>,
        name: &str,
        serial: u64,
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A CRL of `ca` revoking the serial numbers `revoked`, valid until `next_update_year`.
    fn crl(ca: &CertifiedIssuer<'static, KeyPair>, revoked: &[u64], next_year: i32) -> String {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(next_year, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: date_time_ymd(2020, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(ca)
        .unwrap()
        .pem()
        .unwrap()
    }

    /// Runs a TLS handshake in memory between `server` and a client trusting `ca_pem` and
    /// presenting `client` (certificate, key): whether it completed on both sides.
    fn handshake(server: &TlsServer, ca_pem: &str, client: Option<&(String, String)>) -> bool {
        let mut options = TlsClientOptions::new()
            .add_ca_pem(ca_pem.as_bytes())
            .unwrap();
        if let Some((cert, key)) = client {
            options = options
                .client_cert_pem(cert.as_bytes(), key.as_bytes())
                .unwrap();
        }
        let client = options.build().unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(client.config().clone(), name).unwrap();
        let mut s = rustls::ServerConnection::new(server.config().clone()).unwrap();
        // Bounded: a handshake is a few flights.
        for _ in 0..20 {
            if !flight(&mut *c, &mut *s) || !flight(&mut *s, &mut *c) {
                return false;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                // TLS 1.3: the server checks the client's certificate after the client
                // finished; deliver the client's last flight.
                return flight(&mut *c, &mut *s);
            }
        }
        false
    }

    /// Delivers what `from` has to send to `to`: whether `to` accepted it.
    fn flight<A, B>(
        from: &mut rustls::ConnectionCommon<A>,
        to: &mut rustls::ConnectionCommon<B>,
    ) -> bool {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            to.read_tls(&mut slice).unwrap();
        }
        to.process_new_packets().is_ok()
    }

    /// mosquitto's `crlfile`: with client certificates required, a certificate the CA's
    /// CRL revokes is refused; one it does not revoke is accepted; no certificate is refused.
    #[test]
    fn a_revoked_client_certificate_is_refused() {
        let ca = ca();
        let server = leaf(&ca, "localhost", 1, ExtendedKeyUsagePurpose::ServerAuth);
        let good = leaf(&ca, "good", 2, ExtendedKeyUsagePurpose::ClientAuth);
        let revoked = leaf(&ca, "revoked", 3, ExtendedKeyUsagePurpose::ClientAuth);
        let build = |crl_pem: Option<&str>| {
            let mut options =
                TlsServerOptions::new(server.0.as_bytes(), server.1.as_bytes()).unwrap();
            options = options.require_client_cert(ca.pem().as_bytes()).unwrap();
            if let Some(pem) = crl_pem {
                options = options.client_crls_pem(pem.as_bytes()).unwrap();
            }
            options.build().unwrap()
        };
        // Without the CRL both are let in (the test's handshake does refuse something).
        let open = build(None);
        assert!(handshake(&open, &ca.pem(), Some(&good)));
        assert!(handshake(&open, &ca.pem(), Some(&revoked)));
        let checked = build(Some(&crl(&ca, &[3], 2999)));
        assert!(handshake(&checked, &ca.pem(), Some(&good)));
        assert!(!handshake(&checked, &ca.pem(), Some(&revoked)));
        assert!(!handshake(&checked, &ca.pem(), None));
        // As OpenSSL's CRL check: a CRL past its next update refuses everyone.
        let expired = build(Some(&crl(&ca, &[3], 2021)));
        assert!(!handshake(&expired, &ca.pem(), Some(&good)));
    }

    #[test]
    fn crl_input_is_checked() {
        let ca = ca();
        let server = leaf(&ca, "localhost", 1, ExtendedKeyUsagePurpose::ServerAuth);
        let options = TlsServerOptions::new(server.0.as_bytes(), server.1.as_bytes()).unwrap();
        // A certificate is not a CRL.
        let e = TlsServerOptions::new(server.0.as_bytes(), server.1.as_bytes())
            .unwrap()
            .client_crls_pem(ca.pem().as_bytes())
            .unwrap_err();
        assert!(
            e.to_string().contains("no certificate revocation list"),
            "{e}"
        );
        // CRLs without client certificates asked for.
        let e = options
            .client_crls_pem(crl(&ca, &[], 2999).as_bytes())
            .unwrap()
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("need client certificates"), "{e}");
    }

    /// A temporary directory of its own, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mqtt-tls-capath-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// mosquitto's `capath`: every file of the directory holding PEM certificates is read
    /// (other files skipped), so a client certificate from any of its CAs is accepted and
    /// one from a CA not in it refused; an empty directory is an error.
    #[test]
    fn client_cas_from_a_directory() {
        let (ca1, ca2, stranger) = (ca(), ca(), ca());
        let server = leaf(&ca1, "localhost", 1, ExtendedKeyUsagePurpose::ServerAuth);
        let dir = TempDir::new();
        let e = TlsServerOptions::new(server.0.as_bytes(), server.1.as_bytes())
            .unwrap()
            .require_client_cert_dir(&dir.0)
            .unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        std::fs::write(dir.0.join("one.pem"), ca1.pem()).unwrap();
        std::fs::write(dir.0.join("two.crt"), ca2.pem()).unwrap();
        std::fs::write(dir.0.join("README"), "not a certificate").unwrap();
        std::fs::create_dir(dir.0.join("sub")).unwrap();
        std::fs::write(dir.0.join("sub").join("stranger.pem"), stranger.pem()).unwrap();
        let server = TlsServerOptions::new(server.0.as_bytes(), server.1.as_bytes())
            .unwrap()
            .require_client_cert_dir(&dir.0)
            .unwrap()
            .build()
            .unwrap();
        let from1 = leaf(&ca1, "a", 2, ExtendedKeyUsagePurpose::ClientAuth);
        let from2 = leaf(&ca2, "b", 3, ExtendedKeyUsagePurpose::ClientAuth);
        let from_stranger = leaf(&stranger, "c", 4, ExtendedKeyUsagePurpose::ClientAuth);
        assert!(handshake(&server, &ca1.pem(), Some(&from1)));
        assert!(handshake(&server, &ca1.pem(), Some(&from2)));
        assert!(!handshake(&server, &ca1.pem(), Some(&from_stranger)));
    }
}
