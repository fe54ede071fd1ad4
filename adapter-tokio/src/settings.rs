//! Layer 11 (feature `broker-config`): [`BrokerSettings`], a broker program's settings as a
//! typed config, and its reader for mosquitto's configuration format. Imports `broker` (the
//! [`BrokerOptions`] it produces) and `auth` (the hooks it loads). The keys are listed on
//! [`BrokerSettings`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mqtt_streaming_proto::{QoS, ReasonCode};
use mqtt_streaming_session::broker::BrokerConfig;

use crate::auth::{AclFile, FileAuth, FileError, PasswordFile};
use crate::broker::BrokerOptions;

/// A configuration error: the line (from 1; 0 for a setting given in code), the key and what
/// is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The line of the configuration file.
    pub line: usize,
    /// The key on that line.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(line: usize, key: &str, message: impl Into<String>) -> Self {
        Self {
            line,
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.key, self.message)
        } else {
            write!(f, "line {}: {}: {}", self.line, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A listener's protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// MQTT over TCP (or TLS).
    #[default]
    Mqtt,
    /// MQTT over WebSockets.
    WebSockets,
}

/// A listener's TLS settings (mosquitto's names). TLS is on when `certfile` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA certificates that client certificates are checked against (a PEM file).
    pub cafile: Option<PathBuf>,
    /// A directory of CA certificates that client certificates are checked against, with or
    /// besides `cafile`: every file in it that holds PEM certificates is read (symbolic links
    /// followed; mosquitto wants `openssl rehash`'d directories, this needs no rehash).
    pub capath: Option<PathBuf>,
    /// Certificate revocation lists (a PEM file) with `require_certificate true`: a client
    /// certificate they revoke is refused; see `TlsServerOptions::client_crls_pem` (feature
    /// `tls`).
    pub crlfile: Option<PathBuf>,
    /// The server's certificate chain (PEM).
    pub certfile: Option<PathBuf>,
    /// The server's private key (PEM).
    pub keyfile: Option<PathBuf>,
    /// Whether clients must present a certificate signed by `cafile`.
    pub require_certificate: bool,
    /// Whether the client certificate's Common Name is the client's user name (its CONNECT's
    /// user name and password are then not used).
    pub use_identity_as_username: bool,
    /// The lowest TLS version accepted: `tlsv1.2` or `tlsv1.3` (mosquitto's `tls_version`);
    /// `None`: both.
    pub tls_version: Option<String>,
}

impl TlsSettings {
    /// Whether any TLS setting is given.
    pub fn is_configured(&self) -> bool {
        *self != Self::default()
    }
}

/// One listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSettings {
    /// The port (0: any free port, or a Unix socket when [`unix_socket`](Self::unix_socket)
    /// is set).
    pub port: u16,
    /// The address to bind to; `None`: every address (mosquitto's default).
    pub bind_address: Option<String>,
    /// A Unix domain socket at this path instead of a TCP port (mosquitto's
    /// `listener 0 PATH`; feature `unix`, Unix only). Plain MQTT only: no TLS, no WebSocket.
    pub unix_socket: Option<PathBuf>,
    /// MQTT or WebSockets.
    pub protocol: ListenerProtocol,
    /// TLS.
    pub tls: TlsSettings,
    /// Where each of the listener's keys was given: (key, line), for messages that point at
    /// the configuration file. Empty for a listener made in code.
    pub lines: Vec<(String, usize)>,
}

impl ListenerSettings {
    /// A plain MQTT listener on `port` at `bind_address` (`None`: every address).
    pub fn new(port: u16, bind_address: Option<String>) -> Self {
        Self {
            port,
            bind_address,
            unix_socket: None,
            protocol: ListenerProtocol::Mqtt,
            tls: TlsSettings::default(),
            lines: Vec::new(),
        }
    }

    /// A plain MQTT listener on the Unix domain socket at `path` (mosquitto's
    /// `listener 0 PATH`).
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self {
            unix_socket: Some(path.into()),
            ..Self::new(0, None)
        }
    }

    /// The line `key` was given on (0 when not from a file).
    pub fn line_of(&self, key: &str) -> usize {
        self.lines
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, l)| *l)
    }

    /// The error for a listener this build cannot serve or whose TLS keys do not go together
    /// (names the key and its line): a WebSocket listener without the feature `websocket`, a
    /// TLS one without `tls`; TLS keys without both `certfile` and `keyfile`;
    /// `require_certificate true` without `cafile`; `use_identity_as_username true` without
    /// `require_certificate true`. `None` when [`listen_options`](Self::listen_options) can
    /// serve it.
    pub fn unsupported_transport(&self) -> Option<ConfigError> {
        if self.unix_socket.is_some() {
            return self.unsupported_unix();
        }
        if self.protocol == ListenerProtocol::WebSockets && !cfg!(feature = "websocket") {
            return Some(ConfigError::new(
                self.line_of("protocol"),
                "protocol",
                "WebSocket listeners need the feature `websocket` in this build",
            ));
        }
        if !self.tls.is_configured() {
            return None;
        }
        let key_line = |key: &'static str| (self.line_of(key), key);
        let first_tls_key = [
            "cafile",
            "capath",
            "crlfile",
            "certfile",
            "keyfile",
            "require_certificate",
            "use_identity_as_username",
            "tls_version",
        ]
        .into_iter()
        .map(key_line)
        .find(|(line, _)| *line > 0)
        .unwrap_or((0, "certfile"));
        if !cfg!(feature = "tls") {
            return Some(ConfigError::new(
                first_tls_key.0,
                first_tls_key.1,
                "TLS listeners need the feature `tls` in this build",
            ));
        }
        if self.tls.certfile.is_none() || self.tls.keyfile.is_none() {
            return Some(ConfigError::new(
                first_tls_key.0,
                first_tls_key.1,
                "a TLS listener needs both certfile and keyfile",
            ));
        }
        if self.tls.require_certificate && self.tls.cafile.is_none() && self.tls.capath.is_none() {
            let (line, key) = key_line("require_certificate");
            return Some(ConfigError::new(
                line,
                key,
                "require_certificate true needs cafile or capath (the CAs client certificates are checked against)",
            ));
        }
        if self.tls.crlfile.is_some() && !self.tls.require_certificate {
            let (line, key) = key_line("crlfile");
            return Some(ConfigError::new(
                line,
                key,
                "crlfile needs require_certificate true (it revokes client certificates)",
            ));
        }
        if self.tls.use_identity_as_username && !self.tls.require_certificate {
            let (line, key) = key_line("use_identity_as_username");
            return Some(ConfigError::new(
                line,
                key,
                "use_identity_as_username true needs require_certificate true",
            ));
        }
        None
    }

    /// Why a Unix socket listener cannot be served: the feature `unix` is off or the platform
    /// is not Unix, or it is also given TLS keys, `protocol websockets` or `bind_address`.
    fn unsupported_unix(&self) -> Option<ConfigError> {
        let at = |key: &'static str, message: &str| {
            Some(ConfigError::new(self.line_of(key), key, message))
        };
        if !cfg!(all(unix, feature = "unix")) {
            return at(
                "listener",
                "Unix socket listeners (`listener 0 PATH`) need a Unix platform and the feature `unix` in this build",
            );
        }
        if self.protocol == ListenerProtocol::WebSockets {
            return at(
                "protocol",
                "a Unix socket listener speaks plain MQTT only, not websockets",
            );
        }
        if self.bind_address.is_some() {
            return at("bind_address", "a Unix socket listener has no address");
        }
        if self.tls.is_configured() {
            let key = [
                "cafile",
                "capath",
                "crlfile",
                "certfile",
                "keyfile",
                "require_certificate",
                "use_identity_as_username",
                "tls_version",
            ]
            .into_iter()
            .find(|key| self.line_of(key) > 0)
            .unwrap_or("certfile");
            return at(key, "TLS on a Unix socket listener is not supported");
        }
        None
    }

    /// Removes the file at the Unix socket path of this listener if it is a socket (one left
    /// behind by a broker that did not stop cleanly, or this listener's own when it stops):
    /// `Ok(true)` when removed, `Ok(false)` when there is no file or no Unix socket path. A
    /// file there that is not a socket is left alone and is an error (of kind
    /// `AlreadyExists`): binding would fail on it, and it may be someone's data.
    pub fn remove_socket_file(&self) -> std::io::Result<bool> {
        let Some(path) = &self.unix_socket else {
            return Ok(false);
        };
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
                return Ok(true);
            }
        }
        let _ = meta;
        Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket (not removed)",
                path.display()
            ),
        ))
    }

    /// Where this listener listens (`mqtt://`, `mqtts://`, `ws://` or `wss://` at its address,
    /// every address when none is given; `unix://` for a Unix socket) and its [`ListenOptions`](crate::dial::ListenOptions): the
    /// TLS settings loaded from their files (`certfile`, `keyfile`; `cafile` and
    /// `require_certificate` for client certificates; `tls_version`). Errors name the key and
    /// its line. `use_identity_as_username` is the caller's, with
    /// [`ListenOptions::rewrite_connect`](crate::dial::ListenOptions::rewrite_connect).
    #[cfg(feature = "tokio-runtime")]
    pub fn listen_options(
        &self,
    ) -> Result<(crate::endpoint::Endpoint, crate::dial::ListenOptions), ConfigError> {
        if let Some(e) = self.unsupported_transport() {
            return Err(e);
        }
        if let Some(path) = &self.unix_socket {
            return Ok((
                crate::endpoint::Endpoint::unix(path.clone()),
                crate::dial::ListenOptions::new(),
            ));
        }
        let host = self
            .bind_address
            .clone()
            .unwrap_or_else(|| "0.0.0.0".to_owned());
        let tls = self.tls.is_configured();
        let endpoint = match (self.protocol, tls) {
            (ListenerProtocol::Mqtt, false) => crate::endpoint::Endpoint::tcp(host, self.port),
            (ListenerProtocol::Mqtt, true) => crate::endpoint::Endpoint::tls(host, self.port),
            (ListenerProtocol::WebSockets, false) => {
                crate::endpoint::Endpoint::ws(host, self.port, "/")
            }
            (ListenerProtocol::WebSockets, true) => {
                crate::endpoint::Endpoint::wss(host, self.port, "/")
            }
        };
        #[allow(unused_mut)]
        let mut options = crate::dial::ListenOptions::new();
        #[cfg(feature = "tls")]
        if tls {
            options = options.tls(self.tls_server()?);
        }
        Ok((endpoint, options))
    }

    #[cfg(feature = "tls")]
    fn tls_server(&self) -> Result<crate::tls::TlsServer, ConfigError> {
        let at = |key: &str| self.line_of(key);
        let fail = |key: &str, e: &dyn fmt::Display| ConfigError::new(at(key), key, e.to_string());
        let (Some(cert), Some(key)) = (&self.tls.certfile, &self.tls.keyfile) else {
            return Err(ConfigError::new(
                at("certfile"),
                "certfile",
                "needs keyfile too",
            ));
        };
        let mut options = crate::tls::TlsServerOptions::from_files(cert, key)
            .map_err(|e| fail("certfile", &e))?;
        if self.tls.require_certificate {
            if self.tls.cafile.is_none() && self.tls.capath.is_none() {
                return Err(ConfigError::new(
                    at("require_certificate"),
                    "require_certificate",
                    "needs cafile or capath",
                ));
            }
            if let Some(ca) = &self.tls.cafile {
                let pem = std::fs::read(ca)
                    .map_err(|e| fail("cafile", &format!("cannot read {}: {e}", ca.display())))?;
                options = options
                    .require_client_cert(&pem)
                    .map_err(|e| fail("cafile", &e))?;
            }
            if let Some(dir) = &self.tls.capath {
                options = options
                    .require_client_cert_dir(dir)
                    .map_err(|e| fail("capath", &e))?;
            }
            if let Some(crl) = &self.tls.crlfile {
                options = options
                    .client_crl_file(crl)
                    .map_err(|e| fail("crlfile", &e))?;
            }
        }
        if let Some(version) = &self.tls.tls_version {
            let version = version
                .parse::<crate::tls::TlsVersion>()
                .map_err(|e| fail("tls_version", &e))?;
            options = options.min_version(version);
        }
        options.build().map_err(|e| fail("certfile", &e))
    }
}

/// What the broker is to keep on disk: mosquitto's `persistence` keys. The `mqtt-broker`
/// program makes them `BrokerOptions::persistence` (feature `persistence`): `location` is the
/// store's directory (default: the working directory, as mosquitto), `autosave_interval` (above
/// 0) saves every interval instead of before each acknowledgement; `file` is not used (the
/// store names its own file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistenceSettings {
    /// `persistence true`: sessions and retained messages are to survive a restart.
    pub enabled: bool,
    /// `persistence_location`: the directory of the store.
    pub location: Option<PathBuf>,
    /// `persistence_file`: the store's file name within `location`.
    pub file: Option<String>,
    /// `autosave_interval` (seconds): how often the store is written when writes are
    /// batched rather than made before each acknowledgement; `None`: not given.
    pub autosave_interval: Option<Duration>,
    /// The line `persistence` was given on (0 when not from a file).
    pub line: usize,
}

/// Logging settings (mosquitto's `log_type` and `connection_messages`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// `log_type` values given (`error`, `warning`, `notice`, `information`, `debug`,
    /// `subscribe`, `unsubscribe`, `websockets`, `all`, `none`); empty: not given.
    pub types: Vec<String>,
    /// Whether connections opened and closed are logged.
    pub connection_messages: bool,
    /// `log_dest stdout` rather than stderr.
    pub stdout: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            types: Vec::new(),
            connection_messages: true,
            stdout: false,
        }
    }
}

/// A broker program's settings: listeners, the core's limits, authentication, `$SYS`,
/// persistence and logging. What a mosquitto.conf says ([`from_mosquitto_conf`](
/// Self::from_mosquitto_conf)), as a typed config for code.
///
/// ```
/// use std::time::Duration;
/// use mqtt_streaming_tokio::{BrokerSettings, ListenerSettings};
/// use mqtt_streaming_tokio::mqtt_streaming_proto::QoS;
///
/// // In code...
/// let mut settings = BrokerSettings::default();
/// settings.listeners.push(ListenerSettings::new(1883, Some("127.0.0.1".into())));
/// settings.broker.server_keep_alive = Some(60);
/// settings.broker.server.auto_topic_alias = true;
/// settings.broker.server.maximum_qos = QoS::AtLeastOnce;
/// settings.sys_interval = Some(Duration::from_secs(10));
///
/// // ... or from mosquitto's format.
/// let from_file = BrokerSettings::from_mosquitto_conf(
///     "listener 1883 127.0.0.1\nmax_keepalive 60\nmax_topic_alias_broker 10\nmax_qos 1\n",
/// )
/// .unwrap();
/// assert_eq!(from_file.broker, settings.broker);
/// assert_eq!(from_file.listeners[0].port, 1883);
/// ```
///
/// # mosquitto.conf
///
/// One `key value` a line; blank lines and lines starting with `#` are skipped. A key this
/// broker does not know, or knows and does not support, is an error that names its line, as is
/// a bad value: nothing is silently ignored.
///
/// | key | what it sets |
/// | --- | --- |
/// | `listener PORT [ADDRESS]` | a listener (the keys below it, up to the next `listener`, are its own) |
/// | `listener 0 PATH` | a listener on the Unix domain socket at PATH (feature `unix`, Unix only; plain MQTT: no TLS keys, no `protocol websockets`). The `mqtt-broker` program removes a socket file left at PATH when it starts (a socket a live process answers on, or any other kind of file there, is an error, and is left alone), makes the socket the owner's and group's only (mode 0770, as mosquitto) and removes it when it stops gracefully |
/// | `port PORT`, `bind_address ADDRESS` | the default listener (mosquitto's deprecated form) |
/// | `protocol mqtt\|websockets` | the listener's protocol |
/// | `cafile`, `capath`, `crlfile`, `certfile`, `keyfile`, `require_certificate`, `use_identity_as_username`, `tls_version` | the listener's TLS ([`TlsSettings`]): `certfile` and `keyfile` make it a TLS listener; `require_certificate true` asks every client for a certificate issued by a CA of `cafile` or `capath` (mutual TLS); `capath` is a directory of which every file holding PEM certificates is read (links followed: an `openssl rehash`'d directory works, and so does one never rehashed); `crlfile` (with `require_certificate true`) is a PEM file of certificate revocation lists: a client certificate they revoke is refused, and, as mosquitto's OpenSSL check, so is every client certificate when the CRL of its issuer is missing or past its next update; `use_identity_as_username true` (with `require_certificate`) makes the certificate's Common Name the client's user name, for authentication (the password file is not asked) and the ACL; `tls_version tlsv1.2\|tlsv1.3` is the lowest version accepted |
/// | `allow_anonymous true\|false` | [`BrokerSettings::allow_anonymous`] |
/// | `password_file PATH`, `acl_file PATH` | [`FileAuth`]'s files |
/// | `max_connections N` | `BrokerConfig::max_connections` (`-1`: no limit) |
/// | `max_packet_size N` | `ServerConfig::max_packet_size` (announced to MQTT 5 clients) |
/// | `message_size_limit N` | the maximum packet size, as N bytes of payload plus room for the largest topic and properties, when `max_packet_size` is not given (`0`: the protocol's limit) |
/// | `max_inflight_messages N` | `ServerConfig::max_inflight` (`0`: 65,535) |
/// | `max_queued_messages N` | `ServerConfig::max_queued` (`0`: no limit) |
/// | `max_keepalive N` | `BrokerConfig::server_keep_alive` |
/// | `max_qos 0\|1\|2` | `ServerConfig::maximum_qos` |
/// | `max_topic_alias N` | `ServerConfig::topic_alias_maximum` (aliases clients may use) |
/// | `max_topic_alias_broker N` | `ServerConfig::auto_topic_alias` (N > 0: the broker assigns aliases, up to each client's maximum) |
/// | `retain_available true\|false` | `ServerConfig::retain_available` |
/// | `persistence`, `persistence_location`, `persistence_file`, `autosave_interval` | [`PersistenceSettings`] |
/// | `sys_interval N` | [`BrokerSettings::sys_interval`] (`0`: no `$SYS` topics) |
/// | `set_tcp_nodelay true\|false` | accepted; TCP_NODELAY is always on |
/// | `per_listener_settings false`, `allow_zero_length_clientid true` | accepted (the only behaviour) |
/// | `log_dest stderr`, `log_type TYPE`, `connection_messages true\|false` | [`LogSettings`] |
///
/// Keys of this broker's own (mosquitto has no equivalent):
///
/// | key | what it sets |
/// | --- | --- |
/// | `receive_maximum N` | `ServerConfig::receive_maximum` (1 to 65,535) |
/// | `shared_subscriptions_available`, `wildcard_subscriptions_available`, `subscription_identifiers_available` `true\|false` | the `BrokerConfig` fields of those names |
/// | `acl_subscription_denied_code 135\|128` | the SUBACK code MQTT 5 clients get for a filter the ACL refuses: 135 (0x87 Not authorized, the default) or 128 (0x80 Unspecified error) |
///
/// Not supported (an error naming the line): bridges (`connection` and every `bridge_*`,
/// `address`, `topic`, ...), plugins and `auth_plugin`, `include_dir`, `pid_file`, `user`,
/// `psk_hint` and `psk_file` (TLS-PSK: rustls, the TLS library here, implements no
/// pre-shared-key cipher suites), `ciphers*`, `dhparamfile`, `http_dir`,
/// `websockets_*`, `mount_point`, `log_dest` other than `stderr`/`stdout`, `log_facility`,
/// `log_timestamp*`, `max_inflight_bytes`, `max_queued_bytes`, `memory_limit`,
/// `persistent_client_expiration`, `queue_qos0_messages`, `retain_expiry_interval`,
/// `upgrade_outgoing_qos`, `check_retain_source`, `auto_id_prefix`, `clientid_prefixes`,
/// `per_listener_settings true`, `socket_domain`, `bind_interface`, `accept_protocol_versions`
/// and the other keys mosquitto.conf(5) lists that the tables above do not.
///
/// Each listener becomes an endpoint and [`ListenOptions`](crate::dial::ListenOptions) with
/// [`ListenerSettings::listen_options`]; the `mqtt-broker` program serves them all (TCP, TLS,
/// WebSocket, WebSocket over TLS, Unix socket) with [`Listeners`](crate::engine::Listeners). A WebSocket
/// listener answers on any request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerSettings {
    /// The listeners; none: the program's default (port 1883 on 127.0.0.1).
    pub listeners: Vec<ListenerSettings>,
    /// The broker core's limits, including the per-connection `server` ones.
    pub broker: BrokerConfig,
    /// Whether clients without a user name may connect; `None`: as mosquitto 2, not when a
    /// password file is given or listeners are configured, yes otherwise (the program's
    /// default listener is on 127.0.0.1 only). See [`anonymous_allowed`](Self::anonymous_allowed).
    pub allow_anonymous: Option<bool>,
    /// A password file in mosquitto_passwd's format.
    pub password_file: Option<PathBuf>,
    /// An ACL file in mosquitto's format.
    pub acl_file: Option<PathBuf>,
    /// How often the `$SYS` topics are published; `None`: never. Default 10 seconds.
    pub sys_interval: Option<Duration>,
    /// What is to be kept on disk, for the persistent store.
    pub persistence: PersistenceSettings,
    /// Logging.
    pub log: LogSettings,
    /// The SUBACK code an MQTT 5 client gets for a filter the ACL refuses: 0x87 Not
    /// authorized (the default) or 0x80 Unspecified error.
    pub acl_subscription_denied: ReasonCode,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            listeners: Vec::new(),
            broker: BrokerConfig::default(),
            allow_anonymous: None,
            password_file: None,
            acl_file: None,
            sys_interval: Some(Duration::from_secs(10)),
            persistence: PersistenceSettings::default(),
            log: LogSettings::default(),
            acl_subscription_denied: ReasonCode::NotAuthorized,
        }
    }
}

/// Largest MQTT packet ("Remaining Length" up to 268,435,455 plus its 5-byte header).
const PROTOCOL_MAX_PACKET: u64 = 268_435_460;

impl BrokerSettings {
    /// Reads a mosquitto configuration file (see [`BrokerSettings`] for the keys).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(0, "-c", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_mosquitto_conf(&text)
    }

    /// Parses mosquitto configuration text; the first bad line is the error.
    pub fn from_mosquitto_conf(text: &str) -> Result<Self, ConfigError> {
        let mut s = Self::default();
        let mut default_listener: Option<ListenerSettings> = None;
        let mut current: Option<usize> = None;
        let mut message_size_limit: Option<(usize, u64)> = None;
        let mut max_packet_size_given = false;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (key, value) = trimmed
                .split_once([' ', '\t'])
                .map_or((trimmed, ""), |(k, v)| (k, v.trim()));
            let err = |m: String| ConfigError::new(line, key, m);
            let need = || {
                if value.is_empty() {
                    Err(ConfigError::new(line, key, "needs a value"))
                } else {
                    Ok(value)
                }
            };
            let boolean = || match need()? {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(err(format!("expected true or false, not {other:?}"))),
            };
            let number = |min: i64, max: i64| -> Result<i64, ConfigError> {
                let v = need()?;
                v.parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| err(format!("expected a number from {min} to {max}, not {v:?}")))
            };
            // Listener-scoped keys apply to the current `listener`, else to the default one.
            macro_rules! on_listener {
                ($f:expr) => {{
                    let l: &mut ListenerSettings = match current {
                        Some(i) => &mut s.listeners[i],
                        None => default_listener
                            .get_or_insert_with(|| ListenerSettings::new(1883, None)),
                    };
                    l.lines.push((key.to_owned(), line));
                    #[allow(clippy::redundant_closure_call)]
                    ($f)(l)
                }};
            }
            match key {
                "listener" => {
                    let mut parts = need()?.split_whitespace();
                    let port = parts
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .ok_or_else(|| err(format!("expected a port, not {value:?}")))?;
                    let bind = parts.next().map(str::to_owned);
                    if parts.next().is_some() {
                        return Err(err("expected `listener PORT [ADDRESS]`".into()));
                    }
                    // mosquitto: port 0 and a second argument is a Unix socket's path.
                    let mut l = match bind {
                        Some(path) if port == 0 => ListenerSettings::unix(path),
                        bind => ListenerSettings::new(port, bind),
                    };
                    l.lines.push((key.to_owned(), line));
                    s.listeners.push(l);
                    current = Some(s.listeners.len() - 1);
                }
                "port" => {
                    let port = number(0, 65535)? as u16;
                    on_listener!(|l: &mut ListenerSettings| l.port = port);
                }
                "bind_address" => {
                    let address = need()?.to_owned();
                    on_listener!(|l: &mut ListenerSettings| l.bind_address = Some(address));
                }
                "protocol" => {
                    let protocol = match need()? {
                        "mqtt" => ListenerProtocol::Mqtt,
                        "websockets" => ListenerProtocol::WebSockets,
                        other => {
                            return Err(err(format!("expected mqtt or websockets, not {other:?}")))
                        }
                    };
                    on_listener!(|l: &mut ListenerSettings| l.protocol = protocol);
                }
                "cafile" | "capath" | "crlfile" | "certfile" | "keyfile" => {
                    let path = PathBuf::from(need()?);
                    on_listener!(|l: &mut ListenerSettings| match key {
                        "cafile" => l.tls.cafile = Some(path),
                        "capath" => l.tls.capath = Some(path),
                        "crlfile" => l.tls.crlfile = Some(path),
                        "certfile" => l.tls.certfile = Some(path),
                        _ => l.tls.keyfile = Some(path),
                    });
                }
                "require_certificate" => {
                    let v = boolean()?;
                    on_listener!(|l: &mut ListenerSettings| l.tls.require_certificate = v);
                }
                "use_identity_as_username" => {
                    let v = boolean()?;
                    on_listener!(|l: &mut ListenerSettings| l.tls.use_identity_as_username = v);
                }
                "tls_version" => {
                    let v = match need()? {
                        v @ ("tlsv1.2" | "tlsv1.3") => v.to_owned(),
                        other => {
                            return Err(err(format!(
                                "expected tlsv1.2 or tlsv1.3 (the lowest version accepted), not {other:?}"
                            )))
                        }
                    };
                    on_listener!(|l: &mut ListenerSettings| l.tls.tls_version = Some(v));
                }
                "allow_anonymous" => s.allow_anonymous = Some(boolean()?),
                "password_file" => s.password_file = Some(PathBuf::from(need()?)),
                "acl_file" => s.acl_file = Some(PathBuf::from(need()?)),
                "max_connections" => {
                    let n = number(-1, i64::from(u32::MAX))?;
                    s.broker.max_connections = if n < 0 { usize::MAX } else { n as usize };
                }
                "max_packet_size" => {
                    s.broker.server.max_packet_size =
                        number(20, PROTOCOL_MAX_PACKET as i64)? as u32;
                    max_packet_size_given = true;
                }
                "message_size_limit" => {
                    message_size_limit = Some((line, number(0, 268_435_455)? as u64));
                }
                "max_inflight_messages" => {
                    let n = number(0, 65535)?;
                    s.broker.server.max_inflight = if n == 0 { u16::MAX } else { n as u16 };
                }
                "max_queued_messages" => {
                    let n = number(0, i64::from(u32::MAX))?;
                    s.broker.server.max_queued = if n == 0 { usize::MAX } else { n as usize };
                }
                "max_keepalive" => {
                    let n = number(0, 65535)? as u16;
                    s.broker.server_keep_alive = (n > 0).then_some(n);
                }
                "max_qos" => {
                    s.broker.server.maximum_qos = match number(0, 2)? {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        _ => QoS::ExactlyOnce,
                    }
                }
                "max_topic_alias" => s.broker.server.topic_alias_maximum = number(0, 65535)? as u16,
                "max_topic_alias_broker" => {
                    s.broker.server.auto_topic_alias = number(0, 65535)? > 0
                }
                "retain_available" => s.broker.server.retain_available = boolean()?,
                "receive_maximum" => s.broker.server.receive_maximum = number(1, 65535)? as u16,
                "shared_subscriptions_available" => {
                    s.broker.shared_subscriptions_available = boolean()?
                }
                "wildcard_subscriptions_available" => {
                    s.broker.wildcard_subscriptions_available = boolean()?
                }
                "subscription_identifiers_available" => {
                    s.broker.subscription_identifiers_available = boolean()?
                }
                "acl_subscription_denied_code" => {
                    s.acl_subscription_denied = match need()? {
                        "135" | "0x87" => ReasonCode::NotAuthorized,
                        "128" | "0x80" => ReasonCode::UnspecifiedError,
                        other => return Err(err(format!("expected 135 or 128, not {other:?}"))),
                    }
                }
                "persistence" => {
                    s.persistence.enabled = boolean()?;
                    s.persistence.line = line;
                }
                "persistence_location" => s.persistence.location = Some(PathBuf::from(need()?)),
                "persistence_file" => s.persistence.file = Some(need()?.to_owned()),
                "autosave_interval" => {
                    s.persistence.autosave_interval =
                        Some(Duration::from_secs(number(0, i64::from(u32::MAX))? as u64))
                }
                "sys_interval" => {
                    let n = number(0, i64::from(u32::MAX))? as u64;
                    s.sys_interval = (n > 0).then(|| Duration::from_secs(n));
                }
                "set_tcp_nodelay" => {
                    boolean()?;
                }
                "per_listener_settings" => {
                    if boolean()? {
                        return Err(err("per-listener settings are not supported".into()));
                    }
                }
                "allow_zero_length_clientid" => {
                    if !boolean()? {
                        return Err(err(
                            "refusing zero-length client ids is not supported".into()
                        ));
                    }
                }
                "log_dest" => match need()? {
                    "stderr" => s.log.stdout = false,
                    "stdout" => s.log.stdout = true,
                    other => {
                        return Err(err(format!(
                            "only stderr and stdout are supported, not {other:?}"
                        )))
                    }
                },
                "log_type" => {
                    let t = need()?;
                    const TYPES: [&str; 10] = [
                        "error",
                        "warning",
                        "notice",
                        "information",
                        "debug",
                        "subscribe",
                        "unsubscribe",
                        "websockets",
                        "all",
                        "none",
                    ];
                    if !TYPES.contains(&t) {
                        return Err(err(format!("unknown log type {t:?}")));
                    }
                    s.log.types.push(t.to_owned());
                }
                "connection_messages" => s.log.connection_messages = boolean()?,
                "psk_hint" | "psk_file" => {
                    return Err(err(
                        "TLS-PSK is not supported: rustls, this broker's TLS, has no pre-shared-key cipher suites (use certificates: certfile, keyfile, require_certificate)".into(),
                    ))
                }
                other if MOSQUITTO_KEYS.contains(&other) || other.starts_with("bridge_") => {
                    return Err(err(
                        "not supported by this broker (see the list of supported keys)".into(),
                    ))
                }
                _ => return Err(err("unknown key".into())),
            }
        }
        if let Some(l) = default_listener {
            // The deprecated default listener comes first, as mosquitto starts it first.
            s.listeners.insert(0, l);
        }
        if let Some((_, limit)) = message_size_limit {
            if !max_packet_size_given {
                // Payload plus the largest fixed header, topic and properties that fit a
                // 64 KiB budget; 0 is no limit.
                let size = if limit == 0 {
                    PROTOCOL_MAX_PACKET
                } else {
                    (limit + 65_536 + 5).min(PROTOCOL_MAX_PACKET)
                };
                s.broker.server.max_packet_size = size as u32;
            }
        }
        Ok(s)
    }

    /// Whether clients without a user name may connect: `allow_anonymous` when given, else
    /// as mosquitto 2: not when a password file is given or listeners are configured.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous
            .unwrap_or(self.password_file.is_none() && self.listeners.is_empty())
    }

    /// The driver's options for the broker core's limits.
    pub fn broker_options(&self) -> BrokerOptions {
        BrokerOptions::from(self.broker.clone())
    }

    /// The broker hooks: the password and ACL files loaded, and [`anonymous_allowed`](
    /// Self::anonymous_allowed).
    pub fn file_auth(&self) -> Result<FileAuth, ConfigError> {
        let load_err = |key: &str, path: &Path, e: FileError| {
            ConfigError::new(0, key, format!("{}: {e}", path.display()))
        };
        let passwords = match &self.password_file {
            Some(path) => {
                Some(PasswordFile::load(path).map_err(|e| load_err("password_file", path, e))?)
            }
            None => None,
        };
        let acl = match &self.acl_file {
            Some(path) => Some(AclFile::load(path).map_err(|e| load_err("acl_file", path, e))?),
            None => None,
        };
        Ok(FileAuth::new(passwords, acl, self.anonymous_allowed())
            .with_subscription_denied(self.acl_subscription_denied))
    }
}

/// mosquitto.conf(5) keys not in the supported tables: known, refused as unsupported.
const MOSQUITTO_KEYS: &[&str] = &[
    "accept_protocol_versions",
    "address",
    "addresses",
    "auth_opt",
    "auth_plugin",
    "auth_plugin_deny_special_chars",
    "auto_id_prefix",
    "autosave_on_changes",
    "bind_interface",
    "check_retain_source",
    "ciphers",
    "ciphers_tls1.3",
    "cleansession",
    "clientid",
    "clientid_prefixes",
    "connection",
    "dhparamfile",
    "enable_proxy_protocol",
    "global_max_clients",
    "global_max_connections",
    "global_plugin",
    "http_dir",
    "idle_timeout",
    "include_dir",
    "keepalive_interval",
    "local_clientid",
    "local_password",
    "local_username",
    "log_facility",
    "log_timestamp",
    "log_timestamp_format",
    "max_inflight_bytes",
    "max_queued_bytes",
    "memory_limit",
    "mount_point",
    "notifications",
    "notifications_local_only",
    "notification_topic",
    "packet_buffer_size",
    "persistent_client_expiration",
    "pid_file",
    "plugin",
    "plugin_opt",
    "queue_qos0_messages",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "restart_timeout",
    "retain_expiry_interval",
    "round_robin",
    "socket_domain",
    "start_type",
    "threshold",
    "tls_engine",
    "tls_engine_kpass_sha1",
    "tls_keyform",
    "topic",
    "try_private",
    "upgrade_outgoing_qos",
    "use_subject_as_username",
    "use_username_as_clientid",
    "user",
    "websockets_headers_size",
    "websockets_log_level",
    "websockets_origin",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_mosquitto_conf() {
        let s = BrokerSettings::from_mosquitto_conf(
            "# comment\n\
             listener 1883 127.0.0.1\n\
             allow_anonymous false\n\
             password_file /etc/mosquitto/passwd\n\
             acl_file /etc/mosquitto/acl\n\
             max_connections -1\n\
             max_inflight_messages 20\n\
             max_queued_messages 0\n\
             max_keepalive 60\n\
             max_packet_size 100000\n\
             retain_available false\n\
             max_topic_alias 5\n\
             max_topic_alias_broker 10\n\
             persistence true\n\
             persistence_location /var/lib/mosquitto/\n\
             autosave_interval 30\n\
             sys_interval 0\n\
             \n\
             listener 8080\n\
             protocol websockets\n",
        )
        .unwrap();
        assert_eq!(s.listeners.len(), 2);
        assert_eq!(s.listeners[0].port, 1883);
        assert_eq!(s.listeners[0].bind_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.listeners[1].protocol, ListenerProtocol::WebSockets);
        assert_eq!(s.listeners[1].line_of("protocol"), 20);
        assert_eq!(s.allow_anonymous, Some(false));
        assert_eq!(
            s.password_file,
            Some(PathBuf::from("/etc/mosquitto/passwd"))
        );
        assert_eq!(s.broker.max_connections, usize::MAX);
        assert_eq!(s.broker.server.max_inflight, 20);
        assert_eq!(s.broker.server.max_queued, usize::MAX);
        assert_eq!(s.broker.server_keep_alive, Some(60));
        assert_eq!(s.broker.server.max_packet_size, 100_000);
        assert!(!s.broker.server.retain_available);
        assert_eq!(s.broker.server.topic_alias_maximum, 5);
        assert!(s.broker.server.auto_topic_alias);
        assert!(s.persistence.enabled);
        assert_eq!(s.persistence.line, 14);
        assert_eq!(
            s.persistence.autosave_interval,
            Some(Duration::from_secs(30))
        );
        assert_eq!(s.sys_interval, None);
        // Served when the feature is on; refused with its line otherwise.
        let refused = s.listeners[1].unsupported_transport();
        assert_eq!(refused.is_none(), cfg!(feature = "websocket"));
        if let Some(e) = refused {
            assert_eq!((e.line, e.key.as_str()), (20, "protocol"));
        }
        assert!(s.listeners[0].unsupported_transport().is_none());
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let e = BrokerSettings::from_mosquitto_conf("listener 1883\n\nfrobnicate 3\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "frobnicate"));
        assert!(e.message.contains("unknown key"), "{e}");
    }

    #[test]
    fn unsupported_key_is_an_error_with_its_line() {
        let e = BrokerSettings::from_mosquitto_conf("pid_file /run/m.pid\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (1, "pid_file"));
        assert!(e.message.contains("not supported"), "{e}");
        let e = BrokerSettings::from_mosquitto_conf("# x\nbridge_cafile a\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = BrokerSettings::from_mosquitto_conf("log_dest file /var/log/m.log\n").unwrap_err();
        assert_eq!(e.key, "log_dest");
    }

    #[test]
    fn bad_values_are_errors_with_their_line() {
        for (text, line, key) in [
            ("max_qos 3\n", 1, "max_qos"),
            ("listener 1883\nallow_anonymous yes\n", 2, "allow_anonymous"),
            ("listener x\n", 1, "listener"),
            ("\n\nmax_keepalive\n", 3, "max_keepalive"),
            ("protocol mqtts\n", 1, "protocol"),
            ("max_packet_size 10\n", 1, "max_packet_size"),
            ("receive_maximum 0\n", 1, "receive_maximum"),
        ] {
            let e = BrokerSettings::from_mosquitto_conf(text).unwrap_err();
            assert_eq!((e.line, e.key.as_str()), (line, key), "{text:?}: {e}");
        }
    }

    #[test]
    fn tls_keys_are_read_and_inconsistent_ones_refused_with_their_line() {
        let s = BrokerSettings::from_mosquitto_conf(
            "listener 8883\ncafile ca.pem\ncertfile server.pem\nkeyfile server.key\nrequire_certificate true\nuse_identity_as_username true\ntls_version tlsv1.3\n",
        )
        .unwrap();
        let tls = &s.listeners[0].tls;
        assert_eq!(tls.certfile, Some(PathBuf::from("server.pem")));
        assert!(tls.require_certificate && tls.use_identity_as_username);
        assert_eq!(tls.tls_version.as_deref(), Some("tlsv1.3"));
        assert_eq!(
            s.listeners[0].unsupported_transport().is_none(),
            cfg!(feature = "tls")
        );
        for (text, line, key) in [
            ("listener 8883\ncertfile s.pem\n", 2, "certfile"),
            ("listener 8883\n\nkeyfile s.key\n", 3, "keyfile"),
            (
                "listener 8883\ncertfile s.pem\nkeyfile s.key\nrequire_certificate true\n",
                4,
                "require_certificate",
            ),
            (
                "listener 8883\ncafile c\ncertfile s.pem\nkeyfile s.key\nuse_identity_as_username true\n",
                5,
                "use_identity_as_username",
            ),
        ] {
            let s = BrokerSettings::from_mosquitto_conf(text).unwrap();
            let e = s.listeners[0].unsupported_transport().unwrap();
            if cfg!(feature = "tls") {
                assert_eq!((e.line, e.key.as_str()), (line, key), "{text:?}: {e}");
            }
        }
        let e =
            BrokerSettings::from_mosquitto_conf("listener 1\ntls_version tlsv1.1\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "tls_version"));
    }

    #[cfg(all(feature = "tls", feature = "websocket"))]
    #[test]
    fn a_tls_listener_with_missing_files_names_its_line() {
        let s = BrokerSettings::from_mosquitto_conf(
            "listener 8883 127.0.0.1\ncertfile /nonexistent/s.pem\nkeyfile /nonexistent/s.key\n",
        )
        .unwrap();
        let e = s.listeners[0].listen_options().unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "certfile"));
        let s =
            BrokerSettings::from_mosquitto_conf("listener 8080 127.0.0.1\nprotocol websockets\n")
                .unwrap();
        let (endpoint, _) = s.listeners[0].listen_options().unwrap();
        assert_eq!(endpoint.to_string(), "ws://127.0.0.1:8080/");
    }

    /// mosquitto.conf(5): `listener 0 PATH` is a Unix socket listener (the port must be 0);
    /// `listener 0` alone is still TCP on any free port.
    #[test]
    fn listener_port_0_with_a_path_is_a_unix_socket() {
        let s = BrokerSettings::from_mosquitto_conf(
            "listener 0 /run/mosquitto/mqtt.sock\nlistener 0\nlistener 1883 127.0.0.1\n",
        )
        .unwrap();
        assert_eq!(
            s.listeners[0].unix_socket,
            Some(PathBuf::from("/run/mosquitto/mqtt.sock"))
        );
        assert_eq!(s.listeners[0].bind_address, None);
        assert_eq!(s.listeners[0].line_of("listener"), 1);
        assert_eq!(
            (s.listeners[1].port, s.listeners[1].unix_socket.as_ref()),
            (0, None)
        );
        assert_eq!(s.listeners[2].unix_socket, None);
        assert_eq!(s.listeners[2].bind_address.as_deref(), Some("127.0.0.1"));
        assert!(s.listeners[0].tls == TlsSettings::default());
        #[cfg(all(unix, feature = "unix"))]
        {
            assert!(s.listeners[0].unsupported_transport().is_none());
            let (endpoint, _) = s.listeners[0].listen_options().unwrap();
            assert_eq!(endpoint.to_string(), "unix:///run/mosquitto/mqtt.sock");
        }
        #[cfg(not(all(unix, feature = "unix")))]
        {
            let e = s.listeners[0].unsupported_transport().unwrap();
            assert_eq!((e.line, e.key.as_str()), (1, "listener"));
        }
    }

    /// A Unix socket listener is plain MQTT: TLS keys, `protocol websockets` and
    /// `bind_address` under it are refused with their line.
    #[cfg(all(unix, feature = "unix"))]
    #[test]
    fn a_unix_socket_listener_refuses_tls_websockets_and_an_address() {
        for (text, line, key) in [
            (
                "listener 0 m.sock\ncertfile s.pem\nkeyfile s.key\n",
                2,
                "certfile",
            ),
            ("listener 0 m.sock\n\nprotocol websockets\n", 3, "protocol"),
            (
                "listener 0 m.sock\nbind_address 127.0.0.1\n",
                2,
                "bind_address",
            ),
            (
                "listener 0 m.sock\nrequire_certificate true\n",
                2,
                "require_certificate",
            ),
        ] {
            let s = BrokerSettings::from_mosquitto_conf(text).unwrap();
            let e = s.listeners[0].unsupported_transport().unwrap();
            assert_eq!((e.line, e.key.as_str()), (line, key), "{text:?}: {e}");
            let e = s.listeners[0].listen_options().unwrap_err();
            assert_eq!((e.line, e.key.as_str()), (line, key), "{text:?}: {e}");
        }
    }

    /// A directory of its own under the system's temporary directory, removed on drop.
    #[cfg(unix)]
    struct TempDir(PathBuf);

    #[cfg(unix)]
    impl TempDir {
        fn new(name: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mqtt-settings-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    #[cfg(unix)]
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Only a socket is removed from a Unix listener's path: a stale socket goes, a regular
    /// file stays (an error), a missing file is nothing to do.
    #[cfg(unix)]
    #[test]
    fn only_a_socket_file_is_removed() {
        let dir = TempDir::new("socket");
        let path = dir.0.join("mqtt.sock");
        let listener = ListenerSettings::unix(&path);
        assert!(!listener.remove_socket_file().unwrap());
        let bound = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(bound); // leaves the socket file behind, as a crash would
        assert!(path.exists());
        assert!(listener.remove_socket_file().unwrap());
        assert!(!path.exists());
        std::fs::write(&path, b"precious").unwrap();
        let e = listener.remove_socket_file().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        assert!(!ListenerSettings::new(1883, None)
            .remove_socket_file()
            .unwrap());
    }

    /// `capath` and `crlfile` are listener keys; `crlfile` without `require_certificate true`
    /// and `require_certificate true` without `cafile` or `capath` are refused with their
    /// line; `capath` alone is enough CAs.
    #[test]
    fn capath_and_crlfile_are_read_and_checked() {
        let s = BrokerSettings::from_mosquitto_conf(
            "listener 8883\ncapath /etc/mqtt/cas\ncrlfile /etc/mqtt/crl.pem\ncertfile s.pem\nkeyfile s.key\nrequire_certificate true\n",
        )
        .unwrap();
        let tls = &s.listeners[0].tls;
        assert_eq!(tls.capath, Some(PathBuf::from("/etc/mqtt/cas")));
        assert_eq!(tls.crlfile, Some(PathBuf::from("/etc/mqtt/crl.pem")));
        assert_eq!(tls.cafile, None);
        assert_eq!(
            s.listeners[0].unsupported_transport().is_none(),
            cfg!(feature = "tls")
        );
        if cfg!(feature = "tls") {
            let s = BrokerSettings::from_mosquitto_conf(
                "listener 8883\ncafile c.pem\ncertfile s.pem\nkeyfile s.key\n\ncrlfile crl.pem\n",
            )
            .unwrap();
            let e = s.listeners[0].unsupported_transport().unwrap();
            assert_eq!((e.line, e.key.as_str()), (6, "crlfile"), "{e}");
            assert!(e.message.contains("require_certificate"), "{e}");
            let s = BrokerSettings::from_mosquitto_conf(
                "listener 8883\ncrlfile crl.pem\ncertfile s.pem\nkeyfile s.key\nrequire_certificate true\n",
            )
            .unwrap();
            let e = s.listeners[0].unsupported_transport().unwrap();
            assert_eq!((e.line, e.key.as_str()), (5, "require_certificate"), "{e}");
            assert!(e.message.contains("cafile or capath"), "{e}");
        }
    }

    /// TLS-PSK keys are refused with their line and the reason.
    #[test]
    fn psk_keys_are_refused_with_the_reason() {
        for key in ["psk_hint", "psk_file"] {
            let e = BrokerSettings::from_mosquitto_conf(&format!("listener 8883\n{key} x\n"))
                .unwrap_err();
            assert_eq!((e.line, e.key.as_str()), (2, key));
            assert!(e.message.contains("rustls"), "{e}");
        }
    }

    /// The files of `capath` and `crlfile` are loaded when the listener is built: a bad
    /// CRL file names the `crlfile` line, an empty CA directory the `capath` line.
    #[cfg(all(unix, feature = "tls"))]
    #[test]
    fn capath_and_crlfile_files_are_loaded() {
        let dir = TempDir::new("tls-files");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2999, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&ca)
        .unwrap();
        let cas = dir.0.join("cas");
        std::fs::create_dir(&cas).unwrap();
        let p = |name: &str| dir.0.join(name).display().to_string();
        std::fs::write(p("server.pem"), server.pem()).unwrap();
        std::fs::write(p("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(p("crl.pem"), crl.pem().unwrap()).unwrap();
        let conf = |crl: &str| {
            format!(
                "listener 8883 127.0.0.1\ncapath {}\ncrlfile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
                cas.display(),
                p(crl),
                p("server.pem"),
                p("server.key"),
            )
        };
        let s = BrokerSettings::from_mosquitto_conf(&conf("crl.pem")).unwrap();
        let e = s.listeners[0].listen_options().unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "capath"), "{e}");
        std::fs::write(cas.join("ca.pem"), ca.pem()).unwrap();
        assert!(s.listeners[0].listen_options().is_ok());
        // A certificate where the CRL should be.
        let s = BrokerSettings::from_mosquitto_conf(&conf("server.pem")).unwrap();
        let e = s.listeners[0].listen_options().unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "crlfile"), "{e}");
    }

    #[test]
    fn own_keys_and_defaults() {
        let s = BrokerSettings::from_mosquitto_conf(
            "receive_maximum 10\nshared_subscriptions_available false\nwildcard_subscriptions_available false\nsubscription_identifiers_available false\nmax_qos 1\n",
        )
        .unwrap();
        assert_eq!(s.broker.server.receive_maximum, 10);
        assert!(!s.broker.shared_subscriptions_available);
        assert!(!s.broker.wildcard_subscriptions_available);
        assert!(!s.broker.subscription_identifiers_available);
        assert_eq!(s.broker.server.maximum_qos, QoS::AtLeastOnce);
        let s = BrokerSettings::from_mosquitto_conf("acl_subscription_denied_code 128\n").unwrap();
        assert_eq!(s.acl_subscription_denied, ReasonCode::UnspecifiedError);
        // `port` alone makes the default listener, on every address.
        let s = BrokerSettings::from_mosquitto_conf("port 1884\n").unwrap();
        assert_eq!(s.listeners, {
            let mut l = ListenerSettings::new(1884, None);
            l.lines.push(("port".into(), 1));
            vec![l]
        });
        assert_eq!(
            BrokerSettings::default().sys_interval,
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn message_size_limit_sets_the_packet_size_unless_given() {
        let s = BrokerSettings::from_mosquitto_conf("message_size_limit 1000\n").unwrap();
        assert_eq!(s.broker.server.max_packet_size, 1000 + 65_536 + 5);
        let s =
            BrokerSettings::from_mosquitto_conf("max_packet_size 5000\nmessage_size_limit 1000\n")
                .unwrap();
        assert_eq!(s.broker.server.max_packet_size, 5000);
    }

    #[test]
    fn anonymous_as_mosquitto_2() {
        assert!(BrokerSettings::default().anonymous_allowed());
        let s = BrokerSettings::from_mosquitto_conf("listener 1883\n").unwrap();
        assert!(!s.anonymous_allowed());
        let s = BrokerSettings::from_mosquitto_conf("password_file p\n").unwrap();
        assert!(!s.anonymous_allowed());
        let s =
            BrokerSettings::from_mosquitto_conf("listener 1883\nallow_anonymous true\n").unwrap();
        assert!(s.anonymous_allowed());
    }
}
