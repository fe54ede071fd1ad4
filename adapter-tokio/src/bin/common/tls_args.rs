//! mosquitto's TLS flags (`--cafile`, `--capath`, `--cert`, `--key`, `--insecure`,
//! `--tls-version`, `--alpn`), shared by `mqtt-pub`, `mqtt-sub` and `mqtt-bench`: what they
//! mean, whether they ask for TLS, and the client configuration they describe.

use std::path::PathBuf;

use clap::Args;
use mqtt_streaming_tokio::{MosquittoTlsFlags, TlsClient, TlsClientOptions, TlsError};

/// The TLS flags of mosquitto_pub and mosquitto_sub.
#[derive(Args, Debug, Default)]
pub(crate) struct TlsArgs {
    /// Trust the CA certificates in this PEM file, and connect over TLS.
    #[arg(long = "cafile")]
    pub(crate) cafile: Option<PathBuf>,
    /// Trust the CA certificates of every file in this directory that holds PEM certificates
    /// (links followed; an `openssl rehash`'d directory works, and so does one never
    /// rehashed), and connect over TLS.
    #[arg(long = "capath")]
    pub(crate) capath: Option<PathBuf>,
    /// Client certificate (PEM) for authentication, if required by the server (with --key).
    #[arg(long = "cert", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Client private key (PEM) for authentication (with --cert).
    #[arg(long = "key", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Do not check that the server certificate's host name matches the remote host name
    /// (the chain is still checked). Insecure: do not use in production.
    #[arg(long = "insecure")]
    pub(crate) insecure: bool,
    /// TLS protocol version: tlsv1.3 or tlsv1.2 (the lowest accepted). Default: either.
    #[arg(long = "tls-version")]
    pub(crate) tls_version: Option<String>,
    /// The TLS ALPN protocol to offer.
    #[arg(long = "alpn")]
    pub(crate) alpn: Option<String>,
}

impl TlsArgs {
    /// Whether a flag that turns TLS on was given (`--cafile` or `--capath`, as in mosquitto).
    pub(crate) fn requested(&self) -> bool {
        self.cafile.is_some() || self.capath.is_some()
    }

    /// Whether a flag that only means something over TLS was given (`--cert`, `--key`,
    /// `--insecure`, `--tls-version`, `--alpn`).
    pub(crate) fn tls_only_given(&self) -> bool {
        self.cert.is_some()
            || self.key.is_some()
            || self.insecure
            || self.tls_version.is_some()
            || self.alpn.is_some()
    }

    /// The client configuration the flags describe (without `--cafile` or `--capath`: the
    /// platform's root certificates).
    pub(crate) fn client(&self) -> Result<TlsClient, TlsError> {
        let flags = MosquittoTlsFlags {
            cafile: self.cafile.clone(),
            capath: self.capath.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            insecure: self.insecure,
            tls_version: self.tls_version.clone(),
            alpn: self.alpn.clone(),
        };
        TlsClientOptions::from_mosquitto_flags(&flags).and_then(TlsClientOptions::build)
    }
}
