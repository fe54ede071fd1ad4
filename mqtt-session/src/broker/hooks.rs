//! Hooks through which the application decides who may connect, publish, subscribe and receive.

use mqtt_streaming_proto::{Auth, AuthProperties, Connect, ReasonCode, TopicFilter, TopicName};

/// The answer to a connection attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// Let the client in.
    Accept,
    /// Refuse with this CONNACK reason code (for example 0x86 Bad User Name or Password,
    /// 0x87 Not authorized, 0x8A Banned, 0x8C Bad authentication method). A code that is no
    /// CONNACK error becomes 0x87. A refused re-authentication (after CONNACK) ends with a
    /// DISCONNECT and the close ([MQTT-4.12.1-2] in 5.0); codes a DISCONNECT cannot carry
    /// become the nearest it can (0x86 and 0x8A: 0x87 Not authorized).
    Reject(ReasonCode),
    /// MQTT 5 enhanced authentication: send an AUTH with Continue authentication and these
    /// properties, and wait for the client's next AUTH.
    Continue(AuthProperties),
}

/// The client a PUBLISH, will or SUBSCRIBE comes from, or a message goes to, as the
/// authorisation hooks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo<'a> {
    /// The client identifier (the one the broker assigned, for a client that sent none).
    pub client_id: &'a str,
    /// The User Name of the client's latest accepted CONNECT, if it gave one.
    pub username: Option<&'a str>,
}

impl<'a> ClientInfo<'a> {
    /// A client with this identifier and user name.
    pub fn new(client_id: &'a str, username: Option<&'a str>) -> Self {
        Self {
            client_id,
            username,
        }
    }
}

/// The application's policy. Every method has a permissive default, so `AllowAll` is an
/// empty implementation: anonymous local use, as a development broker would allow. The one
/// refusal by default is an MQTT 5 Authentication Method, which no default can carry out.
pub trait BrokerHooks {
    /// A CONNECT arrived: decide from the client id, user name, password, and MQTT 5
    /// authentication method and data.
    ///
    /// The default accepts every CONNECT without an Authentication Method and refuses one
    /// with a method (MQTT 5 enhanced authentication) with 0x8C Bad authentication method:
    /// nothing handles the method, and a client that asked for it must not be let in as if
    /// it had been carried out ([MQTT-4.12.0-1] in 5.0: CONNACK 0x8C or 0x87, then close). An
    /// implementation that supports a method overrides this (and
    /// [`continue_authentication`](Self::continue_authentication)) and answers for the
    /// methods it knows, refusing the others the same way.
    fn authenticate(&mut self, connect: &Connect) -> AuthDecision {
        if connect.properties.authentication_method.is_some() {
            AuthDecision::Reject(ReasonCode::BadAuthenticationMethod)
        } else {
            AuthDecision::Accept
        }
    }

    /// The client answered a `Continue` with an AUTH packet.
    fn continue_authentication(&mut self, client_id: &str, auth: &Auth) -> AuthDecision {
        let _ = (client_id, auth);
        AuthDecision::Reject(ReasonCode::BadAuthenticationMethod)
    }

    /// May `client_id` publish to `topic`? A refusal is answered with 0x87 Not authorized in
    /// the PUBACK/PUBREC (MQTT 5) and the message is dropped. Topics under `$SYS` are the
    /// broker's own: a client's PUBLISH there is refused before this is asked.
    fn authorize_publish(&mut self, client_id: &str, topic: &TopicName) -> bool {
        let _ = (client_id, topic);
        true
    }

    /// May `client_id` subscribe to `filter`? A refusal gives 0x87 (MQTT 5) or 0x80 (3.1.1)
    /// in the SUBACK.
    fn authorize_subscribe(&mut self, client_id: &str, filter: &TopicFilter) -> bool {
        let _ = (client_id, filter);
        true
    }

    /// May `client` publish to `topic`? What the broker asks, for a client's PUBLISH and for
    /// its will; the default asks [`authorize_publish`](Self::authorize_publish) with the
    /// client id. Override this one to decide from the user name too.
    fn authorize_publish_from(&mut self, client: &ClientInfo<'_>, topic: &TopicName) -> bool {
        self.authorize_publish(client.client_id, topic)
    }

    /// May `client` subscribe to `filter`? What the broker asks; `Err(code)` refuses with
    /// that SUBACK reason code: MQTT 5 clients get it when it is a SUBACK error code (0x80
    /// Unspecified error, 0x87 Not authorized, 0x8F Topic Filter invalid, ...; any other
    /// becomes 0x87), MQTT 3.1.1 clients get 0x80 Failure whatever the code. The default asks
    /// [`authorize_subscribe`](Self::authorize_subscribe) and refuses with 0x87.
    fn authorize_subscription(
        &mut self,
        client: &ClientInfo<'_>,
        filter: &TopicFilter,
    ) -> Result<(), ReasonCode> {
        if self.authorize_subscribe(client.client_id, filter) {
            Ok(())
        } else {
            Err(ReasonCode::NotAuthorized)
        }
    }

    /// Whether the broker asks [`authorize_delivery`](Self::authorize_delivery) at all. `false`
    /// by default: the broker then does no work per delivery for it (the test is on this
    /// constant, so a monomorphised broker drops it). Set it to `true` with
    /// `authorize_delivery`; a hook that wraps another forwards both (`const CHECKS_DELIVERY:
    /// bool = Inner::CHECKS_DELIVERY;`), or the inner one's delivery check is never asked.
    const CHECKS_DELIVERY: bool = false;

    /// May `subscriber` receive a message published to `topic`? Asked (when
    /// [`CHECKS_DELIVERY`](Self::CHECKS_DELIVERY) is `true`) for each message and each
    /// subscriber it is about to go to (once per matching session; for a shared subscription,
    /// each member it is offered to), before the copy is queued or sent, as mosquitto checks `read` access on every message it delivers: a subscription
    /// that [`authorize_subscription`](Self::authorize_subscription) let through (`a/#`) then
    /// still does not carry messages of a topic inside it the subscriber may not read
    /// (`a/secret`). The subscriber's user name is that of its latest accepted CONNECT (kept
    /// in the persistence records, so a restored session whose client has not connected
    /// again yet is asked about with it too).
    ///
    /// - A refused copy is not delivered and counted in
    ///   [`BrokerStats::deliveries_unauthorized`](super::BrokerStats::deliveries_unauthorized);
    ///   the publisher's acknowledgement is as if it had been delivered (it says nothing about
    ///   who may read what).
    /// - Shared subscriptions: a member that may not read the message is passed over, as a
    ///   member that cannot take it is, and another member gets it; when no member may, the
    ///   group does not get it (counted once). (mosquitto instead drops the group's copy when
    ///   the member whose turn it is may not read it.)
    /// - Retained messages sent after a SUBSCRIBE are asked about too, each as it is sent.
    /// - A copy held back because its subscriber was full is asked about again when it is
    ///   retried.
    ///
    /// The default allows everything.
    #[inline]
    fn authorize_delivery(&mut self, subscriber: &ClientInfo<'_>, topic: &TopicName) -> bool {
        let _ = (subscriber, topic);
        true
    }
}

/// Allows everything: anonymous clients, every topic (but no MQTT 5 enhanced authentication:
/// a CONNECT with an Authentication Method gets 0x8C Bad authentication method).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl BrokerHooks for AllowAll {}
