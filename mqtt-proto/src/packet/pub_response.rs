//! PUBACK, PUBREC, PUBREL and PUBCOMP (sections 3.4 to 3.7): the four packets of the QoS 1 and
//! QoS 2 exchanges share one layout (packet identifier, reason code, reason string and user
//! properties), so they share this one type; [`Packet`](crate::Packet) says which of the four
//! a value is.

use bytes::{BufMut, BytesMut};

use super::{check_remaining, put_fixed_header, Sizes};
use crate::error::{DecodeError, EncodeError};
use crate::packet_id::PacketId;
use crate::packet_type::PacketType;
use crate::property::{AckProperties, Context};
use crate::reason_code::ReasonCode;
use crate::version::ProtocolVersion;
use crate::wire::{self, Reader};

/// The body of a PUBACK, PUBREC, PUBREL or PUBCOMP.
///
/// In MQTT 3.1.x only the packet identifier goes on the wire. In MQTT 5 the reason code and the
/// properties are left out when the code is Success and there are no properties
/// ([MQTT-3.4.2-1] and its siblings allow that short form), so the common case stays 4 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PubResponse {
    /// The identifier of the PUBLISH (or PUBREL) being answered.
    pub packet_id: PacketId,
    /// The outcome (MQTT 5). PUBACK and PUBREC take the codes of sections 3.4.2.1 and 3.5.2.1;
    /// PUBREL and PUBCOMP only Success and Packet Identifier not found.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: AckProperties,
}

impl PubResponse {
    /// A successful response with no properties.
    pub fn new(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(
        packet_type: PacketType,
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let mut response = Self::new(packet_id);
        if version.is_v5() && !r.is_empty() {
            let code = r.u8()?;
            response.reason_code = ReasonCode::from_u8(code)
                .filter(|c| c.is_valid_for(packet_type))
                .ok_or(DecodeError::InvalidReasonCode { packet_type, code })?;
            if !r.is_empty() {
                response.properties = AckProperties::decode(&mut r, Context::Packet(packet_type))?;
            }
        }
        r.finish()?;
        Ok(response)
    }

    fn is_short(&self) -> bool {
        self.reason_code == ReasonCode::Success && self.properties.is_empty()
    }

    pub(crate) fn sizes(
        &self,
        packet_type: PacketType,
        version: ProtocolVersion,
    ) -> Result<Sizes, EncodeError> {
        let mut sizes = Sizes {
            remaining: 2,
            ..Sizes::default()
        };
        if version.is_v5() && !self.is_short() {
            if !self.reason_code.is_valid_for(packet_type) {
                return Err(EncodeError::InvalidReasonCode {
                    packet_type,
                    code: self.reason_code,
                });
            }
            sizes.properties = self.properties.body_len()?;
            sizes.remaining =
                check_remaining(3 + wire::varint_len(sizes.properties as u32) + sizes.properties)?;
        }
        Ok(sizes)
    }

    pub(crate) fn write(
        &self,
        packet_type: PacketType,
        version: ProtocolVersion,
        sizes: &Sizes,
        buf: &mut BytesMut,
    ) {
        let flags = packet_type.required_flags().unwrap_or(0);
        put_fixed_header(buf, packet_type, flags, sizes.remaining);
        buf.put_u16(self.packet_id.get());
        if version.is_v5() && !self.is_short() {
            buf.put_u8(self.reason_code.as_u8());
            wire::put_varint(buf, sizes.properties as u32);
            self.properties
                .write(&mut crate::property::PropertyWriter::writer(buf));
        }
    }
}
