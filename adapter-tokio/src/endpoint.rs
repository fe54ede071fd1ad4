//! Layer 4b: where to connect or listen, said once for every transport: [`Endpoint`], parsed
//! from an `mqtt://`, `mqtts://`, `ws://`, `wss://` or `unix://` URL or built from typed parts.
//! Runtime-neutral and dependency-free (always compiled; only connecting needs a transport's
//! feature). Imports nothing from the crate.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The transport an [`Endpoint`] names (its URL scheme).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `mqtt://` (also `tcp://`): plain TCP, port 1883 by default.
    Mqtt,
    /// `mqtts://` (also `ssl://`, `tls://`): TLS over TCP, port 8883 by default (feature `tls`).
    Mqtts,
    /// `ws://`: MQTT over WebSocket, port 80 by default (feature `websocket`).
    Ws,
    /// `wss://`: MQTT over WebSocket over TLS, port 443 by default (features `websocket` and
    /// `tls`).
    Wss,
    /// `unix://`: a Unix domain socket (feature `unix`).
    Unix,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Unix => "unix",
        }
    }

    /// The port used when the URL gives none (0 for `unix`).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
            Scheme::Unix => 0,
        }
    }

    /// Whether the transport runs over TLS (`mqtts`, `wss`).
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Mqtts | Scheme::Wss)
    }

    /// Whether the transport is WebSocket (`ws`, `wss`).
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
}

/// Where to connect (a client) or listen (a broker): a transport, a host and port (or a Unix
/// socket's path) and, for WebSocket, the request path.
///
/// Parsed from a URL (`"mqtts://broker.example:8883".parse()`, [`Endpoint::parse`]) or built
/// with [`Endpoint::tcp`], [`Endpoint::tls`], [`Endpoint::ws`], [`Endpoint::wss`],
/// [`Endpoint::unix`].
///
/// | URL | transport | default port |
/// |---|---|---|
/// | `mqtt://host[:port]` (`tcp://`) | TCP | 1883 |
/// | `mqtts://host[:port]` (`ssl://`, `tls://`) | TLS | 8883 |
/// | `ws://host[:port][/path]` | WebSocket, path `/` by default | 80 |
/// | `wss://host[:port][/path]` | WebSocket over TLS | 443 |
/// | `unix:///path/to/socket` | Unix domain socket | - |
///
/// A user name and password (`mqtt://user:pass@host`, percent-encoded) are kept in
/// [`username`](Self::username) and [`password`](Self::password) for the caller's CONNECT;
/// for `mqtt` and `mqtts`, what follows the authority is kept in [`path`](Self::path)
/// (mosquitto's `-L` puts the topic there). IPv6 addresses go in brackets: `mqtt://[::1]:1883`.
///
/// ```
/// use mqtt_streaming_tokio::{Endpoint, Scheme};
///
/// let endpoint: Endpoint = "wss://user@broker.example/mqtt".parse().unwrap();
/// assert_eq!(endpoint.scheme, Scheme::Wss);
/// assert_eq!((endpoint.host.as_str(), endpoint.port), ("broker.example", 443));
/// assert_eq!(endpoint.path, "/mqtt");
/// assert_eq!(endpoint.username.as_deref(), Some("user"));
/// assert_eq!(endpoint.to_string(), "wss://broker.example:443/mqtt");
///
/// let unix = Endpoint::parse("unix:///run/mqtt.sock").unwrap();
/// assert_eq!(unix.path, "/run/mqtt.sock");
/// assert!("http://example.com".parse::<Endpoint>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Endpoint {
    /// The transport.
    pub scheme: Scheme,
    /// The host name or IP address (without brackets); empty for `unix`. For TLS, also the
    /// name the server's certificate must match and the SNI sent (unless the TLS options name
    /// another).
    pub host: String,
    /// The port (0 for `unix`).
    pub port: u16,
    /// WebSocket: the request path (and query), `/` by default. Unix: the socket's path.
    /// `mqtt`/`mqtts`: what followed the authority, if anything (`""` otherwise).
    pub path: String,
    /// The user name from the URL's user information, percent-decoded.
    pub username: Option<String>,
    /// The password from the URL's user information, percent-decoded.
    pub password: Option<String>,
}

/// Why a string is not an [`Endpoint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointError {
    message: String,
}

impl EndpointError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid MQTT URL: {}", self.message)
    }
}

impl std::error::Error for EndpointError {}

impl From<EndpointError> for std::io::Error {
    fn from(error: EndpointError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, error)
    }
}

impl Endpoint {
    fn of(scheme: Scheme, host: impl Into<String>, port: u16, path: impl Into<String>) -> Self {
        Self {
            scheme,
            host: host.into(),
            port,
            path: path.into(),
            username: None,
            password: None,
        }
    }

    /// Plain TCP to `host:port`.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Self::of(Scheme::Mqtt, host, port, "")
    }

    /// TLS to `host:port` (the certificate must match `host`).
    pub fn tls(host: impl Into<String>, port: u16) -> Self {
        Self::of(Scheme::Mqtts, host, port, "")
    }

    /// WebSocket to `host:port`, request path `path` (`/` when empty).
    pub fn ws(host: impl Into<String>, port: u16, path: impl Into<String>) -> Self {
        Self::of(Scheme::Ws, host, port, ws_path(path.into()))
    }

    /// WebSocket over TLS to `host:port`, request path `path` (`/` when empty).
    pub fn wss(host: impl Into<String>, port: u16, path: impl Into<String>) -> Self {
        Self::of(Scheme::Wss, host, port, ws_path(path.into()))
    }

    /// The Unix domain socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self::of(
            Scheme::Unix,
            "",
            0,
            path.into().to_string_lossy().into_owned(),
        )
    }

    /// Parses a URL (see the table on [`Endpoint`]).
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| EndpointError::new(format!("{url:?} has no scheme (mqtt://...)")))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Scheme::Mqtt,
            "mqtts" | "ssl" | "tls" => Scheme::Mqtts,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "unix" => Scheme::Unix,
            other => {
                return Err(EndpointError::new(format!(
                    "unknown scheme {other:?} (mqtt, mqtts, ws, wss, unix)"
                )))
            }
        };
        if scheme == Scheme::Unix {
            // unix:///abs/path, or unix://relative/path.
            if rest.is_empty() {
                return Err(EndpointError::new("unix:// needs a socket path"));
            }
            return Ok(Self::of(Scheme::Unix, "", 0, rest));
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| EndpointError::new("unclosed '[' in the host"))?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    EndpointError::new(format!("unexpected {after:?} after the host"))
                })?),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(EndpointError::new(format!("{url:?} has no host")));
        }
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(port) => port
                .parse()
                .map_err(|_| EndpointError::new(format!("invalid port {port:?}")))?,
        };
        let path = if scheme.is_websocket() {
            ws_path(path.to_owned())
        } else {
            path.to_owned()
        };
        let mut endpoint = Self::of(scheme, host, port, path);
        if let Some(userinfo) = userinfo {
            let (username, password) = match userinfo.split_once(':') {
                Some((username, password)) => (username, Some(password)),
                None => (userinfo, None),
            };
            endpoint.username = Some(percent_decode(username)?);
            endpoint.password = password.map(percent_decode).transpose()?;
        }
        Ok(endpoint)
    }

    /// `host:port` (IPv6 addresses in brackets), for connecting and for the WebSocket `Host`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn ws_path(path: String) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    }
}

fn percent_decode(text: &str) -> Result<String, EndpointError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| EndpointError::new("invalid percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| EndpointError::new("user information is not UTF-8"))
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(url: &str) -> Result<Self, EndpointError> {
        Self::parse(url)
    }
}

/// The URL, without user information.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::Unix => write!(f, "unix://{}", self.path),
            scheme => write!(f, "{}://{}{}", scheme.as_str(), self.authority(), self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses_with_its_default_port() {
        for (url, scheme, port) in [
            ("mqtt://h", Scheme::Mqtt, 1883),
            ("tcp://h", Scheme::Mqtt, 1883),
            ("mqtts://h", Scheme::Mqtts, 8883),
            ("ssl://h", Scheme::Mqtts, 8883),
            ("ws://h", Scheme::Ws, 80),
            ("wss://h", Scheme::Wss, 443),
        ] {
            let endpoint = Endpoint::parse(url).unwrap();
            assert_eq!((endpoint.scheme, endpoint.port), (scheme, port), "{url}");
            assert_eq!(endpoint.host, "h");
        }
    }

    #[test]
    fn ports_ipv6_paths_and_user_information() {
        let e = Endpoint::parse("mqtt://[::1]:1999").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 1999));
        assert_eq!(e.authority(), "[::1]:1999");
        let e = Endpoint::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(e.path, "/");
        let e = Endpoint::parse("ws://h:1/a/b?x=1").unwrap();
        assert_eq!(e.path, "/a/b?x=1");
        let e = Endpoint::parse("mqtts://us%40er:p%3Ass@h/some/topic").unwrap();
        assert_eq!(e.username.as_deref(), Some("us@er"));
        assert_eq!(e.password.as_deref(), Some("p:ss"));
        assert_eq!(e.path, "/some/topic");
        assert_eq!(e.to_string(), "mqtts://h:8883/some/topic");
        let e = Endpoint::parse("unix:///run/mqtt/x.sock").unwrap();
        assert_eq!(e, Endpoint::unix("/run/mqtt/x.sock"));
        assert_eq!(e.to_string(), "unix:///run/mqtt/x.sock");
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "h:1883",
            "http://h",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://h:99999",
            "mqtt://h:x",
            "mqtt://[::1",
            "mqtt://[::1]x",
            "unix://",
            "mqtt://%zz@h",
        ] {
            assert!(Endpoint::parse(url).is_err(), "{url}");
        }
    }
}
