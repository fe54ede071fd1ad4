//! What `mqtt-pub` and `mqtt-sub` share: the mosquitto-compatible connection flags, connecting
//! with clear failure messages, and `-d` debug lines.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS};
use mqtt_streaming_tokio::{connect_tcp, Client, ClientEvents, ClientOptions, Error, Event};

/// The connection flags of mosquitto_pub and mosquitto_sub (`-h` is the host, as there).
#[derive(Args, Debug)]
pub(crate) struct ConnArgs {
    /// Broker host.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    pub(crate) host: String,
    /// Broker port.
    #[arg(short = 'p', long = "port", default_value_t = 1883)]
    pub(crate) port: u16,
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
    /// Print debug messages.
    #[arg(short = 'd', long = "debug")]
    pub(crate) debug: bool,
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

/// A failure: its message (printed to stderr) and the exit code.
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

    pub(crate) fn exit(self) -> ExitCode {
        eprintln!("{}", self.message);
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ConnArgs {
    /// The CONNECT these flags describe. `persistent`: no clean start (and, in MQTT 5, a
    /// session that never expires, as mosquitto's `-c`).
    pub(crate) fn options(
        &self,
        program: &str,
        persistent: bool,
    ) -> Result<ClientOptions, Failure> {
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
        let id =
            MqttString::new(&id).map_err(|e| Failure::new(format!("Error: client id: {e}")))?;
        let mut connect = Connect::new(self.version, id);
        connect.keep_alive = self.keepalive;
        connect.clean_start = !persistent;
        if persistent && self.version.is_v5() {
            connect.properties.session_expiry_interval = Some(u32::MAX);
        }
        if let Some(username) = &self.username {
            connect.username = Some(
                MqttString::new(username)
                    .map_err(|e| Failure::new(format!("Error: user name: {e}")))?,
            );
        }
        if let Some(password) = &self.password {
            if self.username.is_none() && !self.version.is_v5() {
                return Err(Failure::new(
                    "Error: a password needs a user name (-u) before MQTT 5.",
                ));
            }
            connect.password = Some(Bytes::from(password.clone().into_bytes()));
        }
        Ok(ClientOptions::new(connect))
    }

    /// Connects, with a clear message for every way it can fail.
    pub(crate) async fn connect(
        &self,
        options: ClientOptions,
    ) -> Result<(Client, ClientEvents, String), Failure> {
        let mut label = options.connect.client_id.as_str().to_owned();
        self.debug(&label, "sending CONNECT");
        let addr = (self.host.as_str(), self.port);
        let connecting = connect_tcp(addr, options);
        let (client, mut events) =
            match tokio::time::timeout(Duration::from_secs(30), connecting).await {
                Err(_) => return Err(Failure::new("Error: timed out connecting to the broker")),
                Ok(Err(Error::ConnectionRefused(code))) => {
                    return Err(Failure::new(format!(
                        "Connection error: Connection Refused: {}",
                        code.description()
                    )))
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
