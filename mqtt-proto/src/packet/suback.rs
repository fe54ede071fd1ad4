//! SUBACK: the server's answer to SUBSCRIBE, one reason code per filter (section 3.9).

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

/// A SUBACK packet. In MQTT 3.1.1 the codes travel as return codes (granted QoS or 0x80, see
/// [`ReasonCode::to_v3_suback`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubAck {
    /// The identifier of the SUBSCRIBE being answered.
    pub packet_id: PacketId,
    /// One code per filter, in the SUBSCRIBE's order ([MQTT-3.9.3-1]).
    pub reason_codes: Vec<ReasonCode>,
    /// MQTT 5 properties.
    pub properties: AckProperties,
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            AckProperties::decode(&mut r, Context::Packet(PacketType::SubAck))?
        } else {
            AckProperties::default()
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            let reason = if version.is_v5() {
                ReasonCode::from_u8(code).filter(|c| c.is_valid_for(PacketType::SubAck))
            } else {
                ReasonCode::from_v3_suback(code)
            };
            reason_codes.push(reason.ok_or(DecodeError::InvalidReasonCode {
                packet_type: PacketType::SubAck,
                code,
            })?);
        }
        Ok(Self {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn sizes(&self, version: ProtocolVersion) -> Result<Sizes, EncodeError> {
        let mut sizes = Sizes::default();
        let mut remaining = 2 + self.reason_codes.len();
        if version.is_v5() {
            if let Some(&code) = self
                .reason_codes
                .iter()
                .find(|c| !c.is_valid_for(PacketType::SubAck))
            {
                return Err(EncodeError::InvalidReasonCode {
                    packet_type: PacketType::SubAck,
                    code,
                });
            }
            sizes.properties = self.properties.body_len()?;
            remaining += wire::varint_len(sizes.properties as u32) + sizes.properties;
        }
        sizes.remaining = check_remaining(remaining)?;
        Ok(sizes)
    }

    pub(crate) fn write(&self, version: ProtocolVersion, sizes: &Sizes, buf: &mut BytesMut) {
        put_fixed_header(buf, PacketType::SubAck, 0, sizes.remaining);
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            wire::put_varint(buf, sizes.properties as u32);
            self.properties.write(&mut PropertyWriter::writer(buf));
            buf.extend(self.reason_codes.iter().map(|c| c.as_u8()));
        } else {
            buf.extend(self.reason_codes.iter().map(|c| c.to_v3_suback()));
        }
    }
}
