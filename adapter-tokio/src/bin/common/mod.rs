//! What `mqtt-pub` and `mqtt-sub` share: mosquitto's connection flags (`-h`, `-p`, `-L`, `-i`,
//! `-u`, `-P`, `-k`, `-q`, `-V`, `-c`, `-x`, `-D`, `--will-*`, `-d`, `--quiet`) and TLS flags
//! (`--cafile`, `--capath`, `--cert`, `--key`, `--insecure`, `--tls-version`, `--alpn`),
//! connecting over any transport with mosquitto's failure messages and exit codes, and `-d`
//! debug lines.

// The flags' doc comments are clap's --help text, where brackets are literal (URL syntax),
// not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod tls_args;

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use mqtt_streaming_proto::{
    Connect, MqttString, PayloadFormat, ProtocolVersion, QoS, SubscriptionId, TopicName,
    UserProperty, Will, WillProperties,
};
use mqtt_streaming_tokio::{
    connect_endpoint, connect_endpoint_reconnecting, Client, ClientEvents, ClientOptions, Endpoint,
    Error, Event, ReconnectPolicy, Scheme, TransportOptions,
};
use tls_args::TlsArgs;

/// The connection flags of mosquitto_pub and mosquitto_sub (`-h` is the host, as there).
#[derive(Args, Debug)]
pub(crate) struct ConnArgs {
    /// Broker host.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    pub(crate) host: String,
    /// Broker port. Default 1883 for plain MQTT and 8883 for MQTT over TLS (--cafile or
    /// --capath given).
    #[arg(short = 'p', long = "port")]
    pub(crate) port: Option<u16>,
    /// Where to connect, as a URL instead of -h and -p:
    /// mqtt(s)://[username[:password]@]host[:port]/topic (the topic as mosquitto's -L takes
    /// it: mqtt-pub publishes to it unless -t is given, mqtt-sub subscribes to it besides any
    /// -t), ws(s)://[username[:password]@]host[:port][/path] (MQTT over WebSocket; the path is
    /// the HTTP request's, the topic comes from -t), unix:///path/to/socket. The URL's user
    /// name and password are used unless -u / -P are given; -p, if given too, sets the port.
    /// mqtts:// and wss:// trust the system's CA certificates unless --cafile or --capath is
    /// given (which also turn mqtt:// into mqtts:// and ws:// into wss://).
    #[arg(short = 'L', long = "url")]
    pub(crate) url: Option<String>,
    /// Connect to the broker through the Unix domain socket at this path instead of TCP (as
    /// -L unix://PATH).
    #[arg(long = "unix", value_name = "PATH", conflicts_with = "url")]
    pub(crate) unix: Option<PathBuf>,
    /// TLS: --cafile, --capath, --cert, --key, --insecure, --tls-version, --alpn.
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// Client id (default: assigned by the broker; generated for MQTT 3.1).
    #[arg(short = 'i', long = "id")]
    pub(crate) id: Option<String>,
    /// User name.
    #[arg(short = 'u', long = "username")]
    pub(crate) username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw")]
    pub(crate) password: Option<String>,
    /// Keep alive in seconds.
    #[arg(short = 'k', long = "keepalive", default_value_t = 60)]
    pub(crate) keepalive: u16,
    /// Quality of service: 0, 1 or 2.
    #[arg(short = 'q', long = "qos", default_value = "0", value_parser = parse_qos)]
    pub(crate) qos: QoS,
    /// Protocol version: mqttv5, mqttv311, mqttv31 (or 5, 311, 31).
    #[arg(short = 'V', long = "protocol-version", default_value = "311", value_parser = parse_version)]
    pub(crate) version: ProtocolVersion,
    /// Persistent session: no clean start and (MQTT 5) a session that does not expire unless
    /// -x says otherwise; needs -i.
    #[arg(short = 'c', long = "disable-clean-session")]
    pub(crate) persistent: bool,
    /// MQTT 5 Session Expiry Interval in seconds (-1 or 4294967295: never expires). Default
    /// -1 with -c, else 0.
    #[arg(short = 'x', value_parser = parse_expiry, allow_hyphen_values = true)]
    pub(crate) session_expiry: Option<u32>,
    /// An MQTT 5 property: -D COMMAND IDENTIFIER VALUE (user-property takes NAME VALUE).
    /// Commands: connect, publish, subscribe, unsubscribe, disconnect, will. Identifiers:
    /// content-type, correlation-data, message-expiry-interval, payload-format-indicator,
    /// response-topic, user-property, session-expiry-interval, receive-maximum,
    /// maximum-packet-size, topic-alias-maximum, request-problem-information,
    /// request-response-information, will-delay-interval, subscription-identifier,
    /// reason-string.
    #[arg(short = 'D', long = "property", num_args = 3..=4, action = clap::ArgAction::Append,
          value_names = ["COMMAND", "IDENTIFIER", "VALUE"])]
    pub(crate) properties: Vec<String>,
    /// Topic of the client's will.
    #[arg(long = "will-topic")]
    pub(crate) will_topic: Option<String>,
    /// Payload of the will (default: empty).
    #[arg(long = "will-payload", requires = "will_topic")]
    pub(crate) will_payload: Option<String>,
    /// QoS of the will.
    #[arg(long = "will-qos", value_parser = parse_qos, requires = "will_topic")]
    pub(crate) will_qos: Option<QoS>,
    /// Retain the will.
    #[arg(long = "will-retain", requires = "will_topic")]
    pub(crate) will_retain: bool,
    /// Print debug messages.
    #[arg(short = 'd', long = "debug")]
    pub(crate) debug: bool,
    /// Do not print error messages.
    #[arg(long = "quiet")]
    pub(crate) quiet: bool,
    /// Print the version and exit.
    #[arg(long = "version", action = clap::ArgAction::Version)]
    pub(crate) version_flag: Option<bool>,
    /// Print this help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub(crate) help: Option<bool>,
}

fn parse_qos(s: &str) -> Result<QoS, String> {
    match s {
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        "2" => Ok(QoS::ExactlyOnce),
        _ => Err(format!("Invalid QoS given: {s}")),
    }
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "mqttv5" | "5" => Ok(ProtocolVersion::V5),
        "mqttv311" | "311" => Ok(ProtocolVersion::V3_1_1),
        "mqttv31" | "31" => Ok(ProtocolVersion::V3_1),
        _ => Err(format!("Invalid protocol version argument given: {s}")),
    }
}

fn parse_expiry(s: &str) -> Result<u32, String> {
    match s {
        "-1" | "∞" => Ok(u32::MAX),
        _ => s
            .parse::<u32>()
            .map_err(|_| format!("Invalid session expiry interval: {s}")),
    }
}

/// A failure: its message (printed to stderr unless `--quiet`) and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    pub(crate) fn exit(self, quiet: bool) -> ExitCode {
        if !quiet {
            eprintln!("{}", self.message);
        }
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The MQTT 5 properties given with `-D`, by command.
#[derive(Debug, Default)]
pub(crate) struct Properties {
    pub(crate) connect: Vec<(String, Vec<String>)>,
    pub(crate) publish: Vec<(String, Vec<String>)>,
    pub(crate) subscribe: Vec<(String, Vec<String>)>,
    pub(crate) unsubscribe: Vec<(String, Vec<String>)>,
    pub(crate) disconnect: Vec<(String, Vec<String>)>,
    pub(crate) will: Vec<(String, Vec<String>)>,
}

fn bad_property(command: &str, identifier: &str) -> Failure {
    Failure::new(format!(
        "Error: Invalid property \"{identifier}\" for command \"{command}\"."
    ))
}

fn number<T: std::str::FromStr>(identifier: &str, value: &str) -> Result<T, Failure> {
    value
        .parse()
        .map_err(|_| Failure::new(format!("Error: Invalid value {value:?} for {identifier}.")))
}

fn string(identifier: &str, value: &str) -> Result<MqttString, Failure> {
    MqttString::new(value).map_err(|e| Failure::new(format!("Error: {identifier}: {e}")))
}

fn user_property(values: &[String]) -> Result<UserProperty, Failure> {
    match values {
        [name, value] => Ok(UserProperty {
            name: string("user-property", name)?,
            value: string("user-property", value)?,
        }),
        _ => Err(Failure::new(
            "Error: user-property needs a name and a value.",
        )),
    }
}

fn one<'a>(identifier: &str, values: &'a [String]) -> Result<&'a str, Failure> {
    match values {
        [v] => Ok(v),
        _ => Err(Failure::new(format!(
            "Error: {identifier} takes one value."
        ))),
    }
}

/// The message-level properties shared by `publish` and `will`; `false` when `identifier` is
/// not one of them.
#[allow(clippy::too_many_arguments)]
fn message_property(
    identifier: &str,
    values: &[String],
    payload_format: &mut Option<PayloadFormat>,
    message_expiry: &mut Option<u32>,
    content_type: &mut Option<MqttString>,
    response_topic: &mut Option<TopicName>,
    correlation_data: &mut Option<Bytes>,
    user_properties: &mut Vec<UserProperty>,
) -> Result<bool, Failure> {
    match identifier {
        "user-property" => user_properties.push(user_property(values)?),
        "payload-format-indicator" => {
            *payload_format = Some(match one(identifier, values)? {
                "0" => PayloadFormat::Unspecified,
                "1" => PayloadFormat::Utf8,
                v => {
                    return Err(Failure::new(format!(
                        "Error: Invalid value {v:?} for payload-format-indicator."
                    )))
                }
            })
        }
        "message-expiry-interval" => {
            *message_expiry = Some(number(identifier, one(identifier, values)?)?)
        }
        "content-type" => *content_type = Some(string(identifier, one(identifier, values)?)?),
        "response-topic" => {
            let v = one(identifier, values)?;
            *response_topic = Some(
                TopicName::new(v)
                    .map_err(|e| Failure::new(format!("Error: response-topic: {e}")))?,
            )
        }
        "correlation-data" => {
            *correlation_data = Some(Bytes::from(one(identifier, values)?.as_bytes().to_vec()))
        }
        _ => return Ok(false),
    }
    Ok(true)
}

// Each program uses the commands it sends: mqtt-pub publish, mqtt-sub subscribe and unsubscribe.
#[allow(dead_code)]
impl Properties {
    /// Applies the `publish` properties to a message's.
    pub(crate) fn apply_publish(
        &self,
        p: &mut mqtt_streaming_proto::PublishProperties,
    ) -> Result<(), Failure> {
        for (identifier, values) in &self.publish {
            let known = message_property(
                identifier,
                values,
                &mut p.payload_format,
                &mut p.message_expiry_interval,
                &mut p.content_type,
                &mut p.response_topic,
                &mut p.correlation_data,
                &mut p.user_properties,
            )?;
            if !known {
                return Err(bad_property("publish", identifier));
            }
        }
        Ok(())
    }

    /// Applies the `subscribe` properties.
    pub(crate) fn apply_subscribe(
        &self,
        p: &mut mqtt_streaming_proto::SubscribeProperties,
    ) -> Result<(), Failure> {
        for (identifier, values) in &self.subscribe {
            match identifier.as_str() {
                "user-property" => p.user_properties.push(user_property(values)?),
                "subscription-identifier" => {
                    let v = one(identifier, values)?;
                    p.subscription_identifier =
                        Some(SubscriptionId::new(number(identifier, v)?).ok_or_else(|| {
                            Failure::new(format!(
                                "Error: Invalid value {v:?} for subscription-identifier."
                            ))
                        })?);
                }
                _ => return Err(bad_property("subscribe", identifier)),
            }
        }
        Ok(())
    }

    /// Applies the `unsubscribe` properties.
    pub(crate) fn apply_unsubscribe(
        &self,
        p: &mut mqtt_streaming_proto::UnsubscribeProperties,
    ) -> Result<(), Failure> {
        for (identifier, values) in &self.unsubscribe {
            match identifier.as_str() {
                "user-property" => p.user_properties.push(user_property(values)?),
                _ => return Err(bad_property("unsubscribe", identifier)),
            }
        }
        Ok(())
    }

    /// The DISCONNECT to send, with the `disconnect` properties.
    pub(crate) fn disconnect(&self) -> Result<mqtt_streaming_proto::Disconnect, Failure> {
        let mut d =
            mqtt_streaming_proto::Disconnect::new(mqtt_streaming_proto::ReasonCode::Success);
        for (identifier, values) in &self.disconnect {
            match identifier.as_str() {
                "user-property" => d.properties.user_properties.push(user_property(values)?),
                "session-expiry-interval" => {
                    d.properties.session_expiry_interval =
                        Some(number(identifier, one(identifier, values)?)?)
                }
                "reason-string" => {
                    d.properties.reason_string = Some(string(identifier, one(identifier, values)?)?)
                }
                _ => return Err(bad_property("disconnect", identifier)),
            }
        }
        Ok(d)
    }
}

impl ConnArgs {
    /// The `-D` properties, checked: MQTT 5 only, known commands.
    pub(crate) fn properties(&self) -> Result<Properties, Failure> {
        let mut p = Properties::default();
        if !self.properties.is_empty() && !self.version.is_v5() {
            return Err(Failure::new(
                "Error: -D is only valid with MQTT v5 (-V mqttv5).",
            ));
        }
        // The values of every -D, one after the other: COMMAND IDENTIFIER VALUE, with two
        // values for user-property.
        let mut rest = self.properties.as_slice();
        while !rest.is_empty() {
            let take = if rest.get(1).is_some_and(|i| i == "user-property") {
                4
            } else {
                3
            };
            if rest.len() < take {
                return Err(Failure::new("Error: Incomplete -D property."));
            }
            let (d, tail) = rest.split_at(take);
            rest = tail;
            let (command, identifier, values) = (&d[0], d[1].clone(), d[2..].to_vec());
            let list = match command.as_str() {
                "connect" => &mut p.connect,
                "publish" => &mut p.publish,
                "subscribe" => &mut p.subscribe,
                "unsubscribe" => &mut p.unsubscribe,
                "disconnect" => &mut p.disconnect,
                "will" => &mut p.will,
                other => {
                    return Err(Failure::new(format!(
                        "Error: Invalid command \"{other}\" given in -D."
                    )))
                }
            };
            list.push((identifier, values));
        }
        Ok(p)
    }

    /// Whether the session is to outlive the connection: -c, or an MQTT 5 -x above 0.
    fn persistent_session(&self) -> bool {
        self.persistent || (self.version.is_v5() && self.session_expiry.is_some_and(|x| x > 0))
    }

    /// The CONNECT these flags describe. `persistent` (-c): no clean start and, in MQTT 5, a
    /// session that never expires unless -x says otherwise.
    pub(crate) fn options(
        &self,
        program: &str,
        properties: &Properties,
    ) -> Result<ClientOptions, Failure> {
        let persistent = self.persistent;
        let id = match &self.id {
            Some(id) => id.clone(),
            None if persistent => {
                return Err(Failure::new(
                    "Error: You must provide a client id if you are using the -c option.",
                ))
            }
            // MQTT 3.1 requires an id; the others let the broker assign one.
            None if self.version == ProtocolVersion::V3_1 => {
                format!("{program}-{}", std::process::id())
            }
            None => String::new(),
        };
        if self.session_expiry.is_some() && !self.version.is_v5() {
            return Err(Failure::new(
                "Error: -x is only valid with MQTT v5 (-V mqttv5).",
            ));
        }
        if id.is_empty() && self.persistent_session() {
            return Err(Failure::new(
                "Error: You must provide a client id if you are using a session expiry interval.",
            ));
        }
        let id =
            MqttString::new(&id).map_err(|e| Failure::new(format!("Error: client id: {e}")))?;
        let mut connect = Connect::new(self.version, id);
        connect.keep_alive = self.keepalive;
        connect.clean_start = !persistent;
        if self.version.is_v5() {
            let expiry = self
                .session_expiry
                .unwrap_or(if persistent { u32::MAX } else { 0 });
            if expiry > 0 {
                connect.properties.session_expiry_interval = Some(expiry);
            }
        }
        let endpoint = self.endpoint()?;
        let username = self.username.as_ref().or(endpoint.username.as_ref());
        let password = self.password.as_ref().or(endpoint.password.as_ref());
        if let Some(username) = username {
            connect.username = Some(
                MqttString::new(username)
                    .map_err(|e| Failure::new(format!("Error: user name: {e}")))?,
            );
        }
        if let Some(password) = password {
            if username.is_none() && !self.version.is_v5() {
                return Err(Failure::new(
                    "Error: a password needs a user name (-u) before MQTT 5.",
                ));
            }
            connect.password = Some(Bytes::from(password.clone().into_bytes()));
        }
        self.apply_connect(&mut connect, properties)?;
        if let Some(topic) = &self.will_topic {
            let topic = TopicName::new(topic)
                .map_err(|e| Failure::new(format!("Error: Invalid will topic '{topic}': {e}")))?;
            let mut will = Will {
                topic,
                payload: Bytes::from(self.will_payload.clone().unwrap_or_default().into_bytes()),
                qos: self.will_qos.unwrap_or(QoS::AtMostOnce),
                retain: self.will_retain,
                properties: WillProperties::default(),
            };
            let p = &mut will.properties;
            for (identifier, values) in &properties.will {
                if identifier == "will-delay-interval" {
                    p.will_delay_interval = Some(number(identifier, one(identifier, values)?)?);
                    continue;
                }
                let known = message_property(
                    identifier,
                    values,
                    &mut p.payload_format,
                    &mut p.message_expiry_interval,
                    &mut p.content_type,
                    &mut p.response_topic,
                    &mut p.correlation_data,
                    &mut p.user_properties,
                )?;
                if !known {
                    return Err(bad_property("will", identifier));
                }
            }
            connect.will = Some(will);
        } else if !properties.will.is_empty() {
            return Err(Failure::new(
                "Error: will properties need a will (--will-topic).",
            ));
        }
        Ok(ClientOptions::new(connect))
    }

    fn apply_connect(&self, connect: &mut Connect, properties: &Properties) -> Result<(), Failure> {
        let p = &mut connect.properties;
        for (identifier, values) in &properties.connect {
            let id = identifier.as_str();
            match id {
                "user-property" => p.user_properties.push(user_property(values)?),
                "session-expiry-interval" => {
                    p.session_expiry_interval = Some(number(id, one(id, values)?)?)
                }
                "receive-maximum" => {
                    p.receive_maximum = Some(number::<NonZeroU16>(id, one(id, values)?)?)
                }
                "maximum-packet-size" => {
                    p.maximum_packet_size = Some(number::<NonZeroU32>(id, one(id, values)?)?)
                }
                "topic-alias-maximum" => {
                    p.topic_alias_maximum = Some(number(id, one(id, values)?)?)
                }
                "request-problem-information" => {
                    p.request_problem_information = Some(number::<u8>(id, one(id, values)?)? != 0)
                }
                "request-response-information" => {
                    p.request_response_information = Some(number::<u8>(id, one(id, values)?)? != 0)
                }
                _ => return Err(bad_property("connect", identifier)),
            }
        }
        Ok(())
    }

    /// Connects, with mosquitto's message and exit code for every way it can fail (a refused
    /// CONNACK exits with its code: 1 to 5 in MQTT 3.1.x, the reason code in MQTT 5).
    #[allow(dead_code)] // mqtt-sub connects with `connect_with`
    pub(crate) async fn connect(
        &self,
        options: ClientOptions,
    ) -> Result<(Client, ClientEvents, String), Failure> {
        self.connect_with(options, None).await
    }

    /// [`connect`](Self::connect), and with a `policy` the client reconnects by itself when
    /// the connection is lost afterwards (as mosquitto_sub does).
    pub(crate) async fn connect_with(
        &self,
        options: ClientOptions,
        policy: Option<ReconnectPolicy>,
    ) -> Result<(Client, ClientEvents, String), Failure> {
        let mut label = options.connect.client_id.as_str().to_owned();
        let endpoint = self.endpoint()?;
        let transport = self.transport(&endpoint)?;
        self.debug(&label, "sending CONNECT");
        let connecting = async {
            match policy {
                None => connect_endpoint(&endpoint, &transport, options).await,
                Some(policy) => {
                    connect_endpoint_reconnecting(&endpoint, &transport, options, policy).await
                }
            }
        };
        let (client, mut events) =
            match tokio::time::timeout(Duration::from_secs(30), connecting).await {
                Err(_) => return Err(Failure::new("Error: timed out connecting to the broker")),
                Ok(Err(Error::ConnectionRefused(code))) => {
                    let exit = if self.version.is_v5() {
                        code.as_u8()
                    } else {
                        code.to_v3_connack()
                    };
                    return Err(Failure {
                        message: format!(
                            "Connection error: Connection Refused: {}",
                            code.description()
                        ),
                        code: exit,
                    });
                }
                Ok(Err(Error::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(Failure::new("Error: Connection refused"))
                }
                Ok(Err(Error::Io(e))) => return Err(Failure::new(format!("Error: {e}"))),
                Ok(Err(e)) => return Err(Failure::new(format!("Error: {e}"))),
                Ok(Ok(pair)) => pair,
            };
        if let Some(Event::Connected(connack)) = events.recv().await {
            if let Some(assigned) = &connack.properties.assigned_client_identifier {
                label = assigned.as_str().to_owned();
            }
            self.debug(
                &label,
                &format!("received CONNACK ({})", connack.reason_code.as_u8()),
            );
        }
        Ok((client, events, label))
    }

    /// Whether a TLS flag that turns TLS on (as mosquitto's do) was given.
    fn tls_requested(&self) -> bool {
        self.tls.requested()
    }

    /// Where to connect: the -L URL, else -h and -p (TLS with --cafile or --capath, port 8883
    /// by default then). With --cafile or --capath, an `mqtt://` URL goes over TLS (and
    /// `ws://` over `wss://`), as mosquitto's -L does.
    pub(crate) fn endpoint(&self) -> Result<Endpoint, Failure> {
        let tls = self.tls_requested();
        if let Some(path) = &self.unix {
            return Ok(Endpoint::unix(path.clone()));
        }
        let Some(url) = &self.url else {
            let endpoint = if tls {
                Endpoint::tls(self.host.clone(), self.port.unwrap_or(8883))
            } else {
                Endpoint::tcp(self.host.clone(), self.port.unwrap_or(1883))
            };
            return Ok(endpoint);
        };
        let mut endpoint = Endpoint::parse(url).map_err(|e| {
            Failure::new(format!(
                "Error: Invalid URL for -L argument specified: {e}."
            ))
        })?;
        if tls {
            endpoint.scheme = match endpoint.scheme {
                Scheme::Mqtt => Scheme::Mqtts,
                Scheme::Ws => Scheme::Wss,
                other => other,
            };
        }
        if let Some(port) = self.port {
            if endpoint.scheme != Scheme::Unix {
                endpoint.port = port;
            }
        }
        Ok(endpoint)
    }

    /// The topic an `mqtt://` or `mqtts://` -L URL names (its path without the first `/`),
    /// as mosquitto takes it.
    pub(crate) fn url_topic(&self) -> Result<Option<String>, Failure> {
        if self.url.is_none() {
            return Ok(None);
        }
        let endpoint = self.endpoint()?;
        if !matches!(endpoint.scheme, Scheme::Mqtt | Scheme::Mqtts) {
            return Ok(None);
        }
        match endpoint.path.strip_prefix('/') {
            Some(topic) if !topic.is_empty() => Ok(Some(topic.to_owned())),
            _ => Ok(None),
        }
    }

    /// The transport's options: the TLS configuration the flags describe.
    fn transport(&self, endpoint: &Endpoint) -> Result<TransportOptions, Failure> {
        let transport = TransportOptions::new().connect_timeout(Duration::from_secs(30));
        let tls_only = self.tls.tls_only_given();
        if !endpoint.scheme.is_tls() {
            if tls_only {
                return Err(Failure::new(
                    "Error: --cert, --key, --insecure, --tls-version and --alpn need TLS \
                     (--cafile, --capath, or an mqtts:// or wss:// URL).",
                ));
            }
            return Ok(transport);
        }
        let tls = self
            .tls
            .client()
            .map_err(|e| Failure::new(format!("Error: Problem setting TLS options: {e}.")))?;
        Ok(transport.tls(tls))
    }

    /// A `-d` line, in mosquitto's words.
    pub(crate) fn debug(&self, client: &str, what: &str) {
        if self.debug {
            let client = if client.is_empty() { "(null)" } else { client };
            println!("Client {client} {what}");
        }
    }
}

/// The QoS as a digit.
pub(crate) fn qos_digit(qos: QoS) -> u8 {
    qos as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(version, disable_help_flag = true, disable_version_flag = true)]
    struct Test {
        #[command(flatten)]
        conn: ConnArgs,
    }

    fn conn(args: &[&str]) -> ConnArgs {
        Test::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .unwrap()
            .conn
    }

    #[test]
    fn cafile_means_tls_and_port_8883_as_in_mosquitto() {
        let e = conn(&[]).endpoint().unwrap();
        assert_eq!((e.scheme, e.port), (Scheme::Mqtt, 1883));
        let e = conn(&["--cafile", "ca.pem"]).endpoint().unwrap();
        assert_eq!((e.scheme, e.port), (Scheme::Mqtts, 8883));
        let e = conn(&["-h", "b", "-p", "9999", "--capath", "/etc/ssl"])
            .endpoint()
            .unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Mqtts, "b", 9999)
        );
    }

    #[test]
    fn url_gives_user_password_and_topic() {
        let c = conn(&["-L", "mqtt://us%40er:pw@b:1999/a/b"]);
        assert_eq!(c.url_topic().unwrap().as_deref(), Some("a/b"));
        let options = c.options("t", &Properties::default()).unwrap();
        assert_eq!(options.connect.username.unwrap().as_str(), "us@er");
        assert_eq!(options.connect.password.as_deref(), Some(&b"pw"[..]));
        // -u wins over the URL's user; --cafile turns mqtt:// into TLS, the URL's port kept.
        let c = conn(&["-L", "mqtt://x@b/t", "-u", "other", "--cafile", "ca.pem"]);
        let options = c.options("t", &Properties::default()).unwrap();
        assert_eq!(options.connect.username.unwrap().as_str(), "other");
        let e = c.endpoint().unwrap();
        assert_eq!((e.scheme, e.port), (Scheme::Mqtts, 1883));
        // WebSocket: the path is the request's, not a topic.
        let c = conn(&["-L", "ws://b:9001/mqtt"]);
        assert_eq!(c.url_topic().unwrap(), None);
        assert_eq!(c.endpoint().unwrap().path, "/mqtt");
        assert!(conn(&["-L", "http://b"]).endpoint().is_err());
    }

    /// mosquitto's `--unix PATH`: the Unix socket at PATH, whatever -h and -p say; not with -L.
    #[test]
    fn unix_flag_is_a_unix_socket() {
        let e = conn(&["--unix", "/run/m.sock", "-h", "b", "-p", "1"])
            .endpoint()
            .unwrap();
        assert_eq!((e.scheme, e.path.as_str()), (Scheme::Unix, "/run/m.sock"));
        assert!(Test::try_parse_from(["test", "--unix", "s", "-L", "mqtt://b"]).is_err());
    }

    #[test]
    fn tls_only_flags_without_tls_are_an_error() {
        for flag in ["--insecure", "--alpn=mqtt", "--tls-version=tlsv1.3"] {
            let c = conn(&[flag]);
            let e = c.endpoint().unwrap();
            assert!(c.transport(&e).is_err(), "{flag}");
        }
        let c = conn(&["-L", "mqtts://b", "--cafile", "/nonexistent/ca.pem"]);
        let e = c.endpoint().unwrap();
        assert!(c.transport(&e).is_err());
    }
}
