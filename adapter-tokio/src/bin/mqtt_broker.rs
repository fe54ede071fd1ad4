//! `mqtt-broker`: an MQTT 3.1, 3.1.1 and 5.0 broker on the embedded broker core, configured
//! like mosquitto (`-c mosquitto.conf`), until SIGINT/SIGTERM.
//!
//! ```text
//! cargo run -p mqtt-streaming-tokio --features cli --bin mqtt-broker -- -p 1883 -v
//! cargo run -p mqtt-streaming-tokio --features cli --bin mqtt-broker -- -c mosquitto.conf
//! ```
//!
//! The configuration file's keys are those of `mqtt_streaming_tokio::BrokerSettings` (its docs
//! list what is supported and what is not); any other key stops the program with its line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use std::sync::Arc;

use bytes::Bytes;
use mqtt_streaming_proto::{Connect, MqttString, ReasonCode, TopicFilter, TopicName};
use mqtt_streaming_session::broker::{AuthDecision, BrokerEvent, BrokerHooks, ClientInfo};
use mqtt_streaming_session::CloseReason;
use mqtt_streaming_tokio::auth::FileAuth;
use mqtt_streaming_tokio::engine::{Listener, Listeners};
use mqtt_streaming_tokio::persistence::PersistenceOptions;
use mqtt_streaming_tokio::{
    listen_endpoint, publish_sys_topics, BrokerNotice, BrokerServer, BrokerSettings,
    ConnectRewrite, ListenerSettings, SysTopics, TokioRuntime,
};
use tracing::{debug, error, info, warn, Level};

#[path = "common/thread_cache.rs"]
mod thread_cache;

/// jemalloc rather than the system's allocator: with glibc's, rounds of 10,000 connections
/// opened and closed left the process holding every page they had touched (RSS 116 -> 319 MiB
/// over six rounds, 2 MiB of it in use); jemalloc returns them (see BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Run an MQTT broker (MQTT 3.1, 3.1.1 and 5.0) until SIGINT or SIGTERM, then shut down
/// gracefully. Without -c or -p it listens on 127.0.0.1:1883 and lets anonymous clients in.
#[derive(Parser, Debug)]
#[command(name = "mqtt-broker", version, disable_help_flag = true)]
struct Args {
    /// Configuration file in mosquitto's format (mosquitto.conf's keys that apply; an
    /// unknown or unsupported key is an error naming its line).
    #[arg(short = 'c', long = "config-file")]
    config: Option<PathBuf>,
    /// Listen on this port too (repeatable), at --bind's address. Without -c: the port of
    /// the only listener (default 1883).
    #[arg(short = 'p', long = "port")]
    ports: Vec<u16>,
    /// Address the -p listeners bind to.
    #[arg(long = "bind", default_value = "127.0.0.1")]
    bind: String,
    /// Verbose: log at debug level (every connection, refusal and denial).
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Keep retained messages and persistent sessions in this directory, across restarts
    /// and crashes (as `persistence true` with `persistence_location DIR`): acknowledgements
    /// wait until what they promise is on disk.
    #[arg(long = "persistence", value_name = "DIR")]
    persistence: Option<PathBuf>,
    /// Save every SECONDS instead of before each acknowledgement, as mosquitto's
    /// autosave_interval (a crash loses what changed since the last save).
    #[arg(long = "autosave-interval", value_name = "SECONDS")]
    autosave_interval: Option<u64>,
    /// Park a connection after this many milliseconds without traffic: its task ends and one
    /// watcher for every parked socket wakes it on input or output (plain TCP on Unix). 0:
    /// never. Default 1000.
    #[arg(long = "park-idle-after", value_name = "MS")]
    park_idle_after: Option<u64>,
    /// Log level: error, warn, info, debug or trace (default: info, or the config file's
    /// log_type).
    #[arg(long = "log-level", value_parser = parse_level)]
    log_level: Option<Level>,
    /// Print this help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn parse_level(s: &str) -> Result<Level, String> {
    s.parse::<Level>()
        .map_err(|_| format!("expected error, warn, info, debug or trace, not {s:?}"))
}

/// The most verbose level mosquitto's `log_type` values ask for; `None` for `none` alone.
fn level_of_log_types(types: &[String]) -> Option<Option<Level>> {
    if types.is_empty() {
        return None;
    }
    let level = |t: &str| match t {
        "debug" | "all" => Some(Level::DEBUG),
        "information" | "notice" | "subscribe" | "unsubscribe" | "websockets" => Some(Level::INFO),
        "warning" => Some(Level::WARN),
        "error" => Some(Level::ERROR),
        _ => None,
    };
    Some(types.iter().filter_map(|t| level(t)).max())
}

/// [`FileAuth`], with its refusals logged, and the connections of `use_identity_as_username`
/// listeners let in under their certificate's name.
struct Logged {
    inner: FileAuth,
    /// The password those listeners put in every CONNECT (random, made at start and never
    /// shown: no client can send it itself, since the listener replaces what it sent).
    identity_token: Bytes,
}

/// The CONNECT rewrite of a `use_identity_as_username` listener: the certificate's Common
/// Name as the user name (an empty one without a certificate, which is refused) and the
/// listener's token as the password.
fn identity_rewrite(token: Bytes) -> ConnectRewrite {
    Arc::new(move |cn: Option<&str>, connect: &mut Connect| {
        connect.username = Some(
            cn.and_then(|cn| MqttString::new(cn).ok())
                .unwrap_or_else(|| MqttString::new("").expect("empty is valid")),
        );
        connect.password = Some(token.clone());
    })
}

/// Equal, in a time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl BrokerHooks for Logged {
    fn authenticate(&mut self, connect: &Connect) -> AuthDecision {
        let identity = connect
            .password
            .as_ref()
            .is_some_and(|p| same_secret(p, &self.identity_token));
        let decision = if identity {
            // As mosquitto: the certificate authenticates; the password file is not asked.
            match &connect.username {
                Some(name) if !name.as_str().is_empty() => AuthDecision::Accept,
                _ => AuthDecision::Reject(ReasonCode::NotAuthorized),
            }
        } else {
            self.inner.authenticate(connect)
        };
        if let AuthDecision::Reject(code) = &decision {
            warn!(
                client_id = connect.client_id.as_str(),
                username = connect.username.as_ref().map(|u| u.as_str()),
                reason = code.description(),
                "connection refused"
            );
        }
        decision
    }

    fn authorize_publish_from(&mut self, client: &ClientInfo<'_>, topic: &TopicName) -> bool {
        let allowed = self.inner.authorize_publish_from(client, topic);
        if !allowed {
            info!(
                client_id = client.client_id,
                username = client.username,
                topic = topic.as_str(),
                "publish denied"
            );
        }
        allowed
    }

    fn authorize_subscription(
        &mut self,
        client: &ClientInfo<'_>,
        filter: &TopicFilter,
    ) -> Result<(), ReasonCode> {
        let decision = self.inner.authorize_subscription(client, filter);
        if decision.is_err() {
            info!(
                client_id = client.client_id,
                username = client.username,
                filter = filter.as_str(),
                "subscription denied"
            );
        }
        decision
    }

    // Forwarded, or the ACL's check on delivery would never be asked.
    const CHECKS_DELIVERY: bool = FileAuth::CHECKS_DELIVERY;

    fn authorize_delivery(&mut self, subscriber: &ClientInfo<'_>, topic: &TopicName) -> bool {
        self.inner.authorize_delivery(subscriber, topic)
    }
}

fn log_notice(notice: &BrokerNotice, connection_messages: bool) {
    let peer = |p: &Option<SocketAddr>| p.map_or_else(|| "-".to_owned(), |a| a.to_string());
    match notice {
        BrokerNotice::Opened {
            connection,
            peer: p,
        } => {
            debug!(connection = connection.get(), peer = %peer(p), "new connection");
        }
        BrokerNotice::Refused { peer: p } => {
            warn!(peer = %peer(p), "connection refused: too many connections");
        }
        BrokerNotice::SlowConsumer { connection } => {
            warn!(
                connection = connection.get(),
                "disconnected as a slow consumer"
            );
        }
        BrokerNotice::Event { peer: p, event } => match event {
            BrokerEvent::Connected {
                connection,
                client_id,
                version,
                session_present,
            } if connection_messages => {
                info!(
                    connection = connection.get(),
                    peer = %peer(p),
                    client_id = client_id.as_str(),
                    version = ?version,
                    session_present,
                    "client connected"
                );
            }
            BrokerEvent::Close {
                connection,
                client_id,
                reason,
            } => {
                let (violation, refused) = match reason {
                    CloseReason::Malformed(_) | CloseReason::ProtocolViolation(_) => (true, false),
                    CloseReason::ConnectRefused(_) => (false, true),
                    _ => (false, false),
                };
                if violation {
                    warn!(
                        connection = connection.get(),
                        peer = %peer(p),
                        client_id = client_id.as_str(),
                        %reason,
                        "protocol violation: connection closed"
                    );
                } else if refused {
                    info!(
                        connection = connection.get(),
                        peer = %peer(p),
                        client_id = client_id.as_str(),
                        %reason,
                        "connection refused"
                    );
                } else if connection_messages {
                    info!(
                        connection = connection.get(),
                        peer = %peer(p),
                        client_id = client_id.as_str(),
                        %reason,
                        "connection closed"
                    );
                }
            }
            _ => {}
        },
        _ => {}
    }
}

fn main() -> ExitCode {
    // tokio's multi-threaded runtime as `#[tokio::main]` builds it, with workers that give
    // their allocator's thread cache back before they sleep (`common/thread_cache.rs`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(thread_cache::on_worker_park)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let args = Args::parse();
    let mut settings = match &args.config {
        Some(path) => match BrokerSettings::load(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("Error: {}: {e}", path.display());
                return ExitCode::from(3);
            }
        },
        None => BrokerSettings::default(),
    };
    // Decided by the configuration file (mosquitto 2's rule), before -p adds listeners.
    let anonymous = settings.anonymous_allowed();
    for port in &args.ports {
        settings
            .listeners
            .push(ListenerSettings::new(*port, Some(args.bind.clone())));
    }
    if settings.listeners.is_empty() {
        settings
            .listeners
            .push(ListenerSettings::new(1883, Some(args.bind.clone())));
    }

    let level = args
        .log_level
        .or(args.verbose.then_some(Level::DEBUG))
        .map(Some)
        .or_else(|| level_of_log_types(&settings.log.types))
        .unwrap_or(Some(Level::INFO));
    if let Some(level) = level {
        use std::io::IsTerminal;
        let builder = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_target(false);
        if settings.log.stdout {
            let ansi = std::io::stdout().is_terminal();
            builder.with_ansi(ansi).with_writer(std::io::stdout).init();
        } else {
            let ansi = std::io::stderr().is_terminal();
            builder.with_ansi(ansi).with_writer(std::io::stderr).init();
        }
    }

    let source = |e: &mqtt_streaming_tokio::ConfigError| match &args.config {
        Some(path) if e.line > 0 => format!("{}:{e}", path.display()),
        _ => e.to_string(),
    };
    let mut endpoints = Vec::new();
    for listener in &settings.listeners {
        match listener.listen_options() {
            Ok(pair) => endpoints.push((pair, listener.tls.use_identity_as_username, listener)),
            Err(e) => {
                error!("{}", source(&e));
                return ExitCode::from(3);
            }
        }
    }
    let mut token = [0u8; 32];
    if let Err(e) = getrandom::getrandom(&mut token) {
        error!("no randomness for the identity token: {e}");
        return ExitCode::FAILURE;
    }
    let identity_token = Bytes::copy_from_slice(&token);
    let file_auth = match settings.file_auth() {
        Ok(auth) => FileAuth::new(auth.passwords().cloned(), auth.acl().cloned(), anonymous)
            .with_subscription_denied(settings.acl_subscription_denied),
        Err(e) => {
            error!("{}", source(&e));
            return ExitCode::from(3);
        }
    };
    if let Some(dir) = &args.persistence {
        settings.persistence.enabled = true;
        settings.persistence.location = Some(dir.clone());
    }
    if let Some(secs) = args.autosave_interval {
        settings.persistence.autosave_interval = Some(Duration::from_secs(secs));
    }
    let mut options = settings.broker_options();
    if let Some(ms) = args.park_idle_after {
        options.park_idle_after = (ms > 0).then(|| Duration::from_millis(ms));
    }
    if settings.persistence.enabled {
        // mosquitto's default location is the working directory.
        let dir = settings
            .persistence
            .location
            .clone()
            .unwrap_or_else(|| PathBuf::from("."));
        let mut p = PersistenceOptions::new(&dir);
        match settings.persistence.autosave_interval {
            Some(interval) if !interval.is_zero() => {
                info!(dir = %dir.display(), "persistence: saved every {}s", interval.as_secs());
                p = p.autosave(interval);
            }
            _ => info!(dir = %dir.display(), "persistence: acknowledged once on disk"),
        }
        if settings.persistence.file.is_some() {
            warn!("persistence_file is ignored: the store's file name in the directory is its own");
        }
        options.persistence = Some(p);
    }

    // Every listener (TCP, TLS, WebSocket, WebSocket over TLS, Unix socket) feeds the one
    // broker.
    let mut listeners: Vec<Box<dyn Listener>> = Vec::new();
    // The Unix sockets bound, removed again at a graceful stop.
    let mut sockets: Vec<&ListenerSettings> = Vec::new();
    for ((endpoint, mut listen), identity, settings_of) in endpoints {
        if identity {
            // A CONNECT is at most the packet size the broker accepts.
            let limit = settings.broker.server.max_packet_size as usize;
            listen = listen.rewrite_connect(identity_rewrite(identity_token.clone()), limit);
        }
        // A socket left behind by a broker that did not stop cleanly is replaced, as
        // mosquitto does; any other file at that path is not touched, nor is a socket that
        // a live process still answers on.
        #[cfg(unix)]
        if let Some(path) = &settings_of.unix_socket {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                error!(
                    "cannot listen on {endpoint}: another process is listening on {}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        }
        match settings_of.remove_socket_file() {
            Ok(true) => info!("removed the stale socket {endpoint}"),
            Ok(false) => {}
            Err(e) => {
                error!("cannot listen on {endpoint}: {e}");
                return ExitCode::FAILURE;
            }
        }
        match listen_endpoint(&endpoint, &listen).await {
            Ok(listener) => {
                match listener.local_addr() {
                    Ok(addr) => info!("listening on {}://{addr}", endpoint.scheme.as_str()),
                    Err(_) => info!("listening on {endpoint}"),
                }
                listeners.push(listener);
            }
            Err(e) => {
                error!("cannot listen on {endpoint}: {e}");
                return ExitCode::FAILURE;
            }
        }
        if let Some(path) = &settings_of.unix_socket {
            sockets.push(settings_of);
            // As mosquitto (umask 0007 at bind): the owner and the group may connect, others not.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::Permissions::from_mode(0o770);
                if let Err(e) = std::fs::set_permissions(path, mode) {
                    warn!("cannot set the permissions of {}: {e}", path.display());
                }
            }
            #[cfg(not(unix))]
            let _ = path;
        }
    }
    let mut broker = BrokerServer::new(options)
        .with_listener(Box::new(Listeners::new(listeners)))
        .with_hooks(Logged {
            inner: file_auth,
            identity_token,
        });
    let mut notices = broker.notices();
    let connection_messages = settings.log.connection_messages;
    tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            log_notice(&notice, connection_messages);
        }
    });
    let handle = broker.spawn();
    if let Some(interval) = settings.sys_interval {
        info!(
            version = %SysTopics::version(),
            "publishing $SYS topics every {}s",
            interval.as_secs()
        );
        tokio::spawn(publish_sys_topics(TokioRuntime, handle.clone(), interval));
    }
    if let Err(e) = shutdown_signal().await {
        error!("cannot wait for signals: {e}");
    }
    info!("shutting down");
    handle.shutdown().await;
    for listener in sockets {
        if let Err(e) = listener.remove_socket_file() {
            warn!("cannot remove the socket: {e}");
        }
    }
    info!("stopped");
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn shutdown_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
