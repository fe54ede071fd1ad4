//! DISCONNECT: the end of a connection, sent by the client (3.1.1) or by either side (5.0),
//! section 3.14.

use alloc::vec::Vec;

use bytes::{BufMut, BytesMut};

use super::{check_remaining, put_fixed_header, Sizes};
use crate::error::{DecodeError, EncodeError};
use crate::packet_type::PacketType;
use crate::property::{
    not_allowed, Context, Property, PropertyId, PropertySet, PropertyWriter, UserProperty,
};
use crate::reason_code::ReasonCode;
use crate::string::MqttString;
use crate::version::ProtocolVersion;
use crate::wire::{self, Reader};

/// A DISCONNECT packet. In MQTT 3.1.x it has no body; in MQTT 5 a Normal disconnection without
/// properties is still sent as the two-byte short form.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Disconnect {
    /// Why the connection ends (MQTT 5); Normal disconnection (0x00) by default.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: DisconnectProperties,
}

/// The properties of a DISCONNECT (section 3.14.2.2 of 5.0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DisconnectProperties {
    /// Session Expiry Interval (client to server only).
    pub session_expiry_interval: Option<u32>,
    /// Reason String.
    pub reason_string: Option<MqttString>,
    /// User Properties, in order.
    pub user_properties: Vec<UserProperty>,
    /// Server Reference: another server to use (server to client).
    pub server_reference: Option<MqttString>,
}

impl PropertySet for DisconnectProperties {
    const CONTEXT: Context = Context::Packet(PacketType::Disconnect);

    fn write(&self, w: &mut PropertyWriter<'_>) {
        w.opt_u32(
            PropertyId::SessionExpiryInterval,
            self.session_expiry_interval,
        );
        w.opt_string(PropertyId::ReasonString, self.reason_string.as_ref());
        w.user_properties(&self.user_properties);
        w.opt_string(PropertyId::ServerReference, self.server_reference.as_ref());
    }

    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::SessionExpiryInterval(v) => self.session_expiry_interval = Some(v),
            Property::ReasonString(v) => self.reason_string = Some(v),
            Property::UserProperty(v) => self.user_properties.push(v),
            Property::ServerReference(v) => self.server_reference = Some(v),
            other => return Err(not_allowed(Self::CONTEXT, &other)),
        }
        Ok(())
    }
}

impl DisconnectProperties {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut disconnect = Self::default();
        if version.is_v5() && !r.is_empty() {
            let code = r.u8()?;
            disconnect.reason_code = ReasonCode::from_u8(code)
                .filter(|c| c.is_valid_for(PacketType::Disconnect))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet_type: PacketType::Disconnect,
                    code,
                })?;
            if !r.is_empty() {
                disconnect.properties = DisconnectProperties::decode(&mut r)?;
            }
        }
        r.finish()?;
        Ok(disconnect)
    }

    fn is_short(&self) -> bool {
        self.reason_code == ReasonCode::NORMAL_DISCONNECTION && self.properties.is_empty()
    }

    pub(crate) fn sizes(&self, version: ProtocolVersion) -> Result<Sizes, EncodeError> {
        let mut sizes = Sizes::default();
        if version.is_v5() && !self.is_short() {
            if !self.reason_code.is_valid_for(PacketType::Disconnect) {
                return Err(EncodeError::InvalidReasonCode {
                    packet_type: PacketType::Disconnect,
                    code: self.reason_code,
                });
            }
            sizes.properties = self.properties.body_len()?;
            sizes.remaining =
                check_remaining(1 + wire::varint_len(sizes.properties as u32) + sizes.properties)?;
        }
        Ok(sizes)
    }

    pub(crate) fn write(&self, version: ProtocolVersion, sizes: &Sizes, buf: &mut BytesMut) {
        put_fixed_header(buf, PacketType::Disconnect, 0, sizes.remaining);
        if version.is_v5() && !self.is_short() {
            buf.put_u8(self.reason_code.as_u8());
            self.properties.encode(sizes.properties, buf);
        }
    }
}
