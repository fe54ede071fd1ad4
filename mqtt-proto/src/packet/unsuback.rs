//! UNSUBACK: the server's answer to UNSUBSCRIBE (section 3.11).

use alloc::vec::Vec;

use bytes::{BufMut, BytesMut};

use super::{check_remaining, put_fixed_header, Sizes};
use crate::error::{DecodeError, EncodeError};
use crate::packet_id::PacketId;
use crate::packet_type::PacketType;
use crate::property::{AckProperties, Context, PropertyWriter};
use crate::reason_code::ReasonCode;
use crate::version::ProtocolVersion;
use crate::wire::{self, Reader};

/// An UNSUBACK packet. MQTT 3.1.1 carries only the packet identifier; MQTT 5 adds one reason
/// code per filter ([MQTT-3.11.3-1]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct UnsubAck {
    /// The identifier of the UNSUBSCRIBE being answered.
    pub packet_id: PacketId,
    /// One code per filter (MQTT 5; empty in 3.1.x).
    pub reason_codes: Vec<ReasonCode>,
    /// MQTT 5 properties.
    pub properties: AckProperties,
}

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let mut ack = Self {
            packet_id,
            reason_codes: Vec::new(),
            properties: AckProperties::default(),
        };
        if version.is_v5() {
            ack.properties = AckProperties::decode(&mut r, Context::Packet(PacketType::UnsubAck))?;
            ack.reason_codes.reserve(r.remaining());
            while !r.is_empty() {
                let code = r.u8()?;
                ack.reason_codes.push(
                    ReasonCode::from_u8(code)
                        .filter(|c| c.is_valid_for(PacketType::UnsubAck))
                        .ok_or(DecodeError::InvalidReasonCode {
                            packet_type: PacketType::UnsubAck,
                            code,
                        })?,
                );
            }
        }
        r.finish()?;
        Ok(ack)
    }

    pub(crate) fn sizes(&self, version: ProtocolVersion) -> Result<Sizes, EncodeError> {
        let mut sizes = Sizes {
            remaining: 2,
            ..Sizes::default()
        };
        if version.is_v5() {
            if let Some(&code) = self
                .reason_codes
                .iter()
                .find(|c| !c.is_valid_for(PacketType::UnsubAck))
            {
                return Err(EncodeError::InvalidReasonCode {
                    packet_type: PacketType::UnsubAck,
                    code,
                });
            }
            sizes.properties = self.properties.body_len()?;
            sizes.remaining = check_remaining(
                2 + wire::varint_len(sizes.properties as u32)
                    + sizes.properties
                    + self.reason_codes.len(),
            )?;
        }
        Ok(sizes)
    }

    pub(crate) fn write(&self, version: ProtocolVersion, sizes: &Sizes, buf: &mut BytesMut) {
        put_fixed_header(buf, PacketType::UnsubAck, 0, sizes.remaining);
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            wire::put_varint(buf, sizes.properties as u32);
            self.properties.write(&mut PropertyWriter::writer(buf));
            buf.extend(self.reason_codes.iter().map(|c| c.as_u8()));
        }
    }
}
