//! AUTH: the extended authentication exchange of MQTT 5 (section 3.15).

use alloc::vec::Vec;

use bytes::{BufMut, Bytes, BytesMut};

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

/// An AUTH packet (MQTT 5 only). Success without properties is sent in the short form with a
/// Remaining Length of 0.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Properties: the method and data of the exchange.
    pub properties: AuthProperties,
}

/// The properties of an AUTH (section 3.15.2.2 of 5.0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct AuthProperties {
    /// Authentication Method; the same as in CONNECT.
    pub authentication_method: Option<MqttString>,
    /// Authentication Data.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::opt_bytes))]
    pub authentication_data: Option<Bytes>,
    /// Reason String.
    pub reason_string: Option<MqttString>,
    /// User Properties, in order.
    pub user_properties: Vec<UserProperty>,
}

impl PropertySet for AuthProperties {
    const CONTEXT: Context = Context::Packet(PacketType::Auth);

    fn write(&self, w: &mut PropertyWriter<'_>) {
        w.opt_string(
            PropertyId::AuthenticationMethod,
            self.authentication_method.as_ref(),
        );
        w.opt_binary(
            PropertyId::AuthenticationData,
            self.authentication_data.as_ref(),
        );
        w.opt_string(PropertyId::ReasonString, self.reason_string.as_ref());
        w.user_properties(&self.user_properties);
    }

    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::AuthenticationMethod(v) => self.authentication_method = Some(v),
            Property::AuthenticationData(v) => self.authentication_data = Some(v),
            Property::ReasonString(v) => self.reason_string = Some(v),
            Property::UserProperty(v) => self.user_properties.push(v),
            other => return Err(not_allowed(Self::CONTEXT, &other)),
        }
        Ok(())
    }
}

impl Auth {
    pub(crate) fn decode(mut r: Reader) -> Result<Self, DecodeError> {
        let mut auth = Self::default();
        if !r.is_empty() {
            let code = r.u8()?;
            auth.reason_code = ReasonCode::from_u8(code)
                .filter(|c| c.is_valid_for(PacketType::Auth))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet_type: PacketType::Auth,
                    code,
                })?;
            if !r.is_empty() {
                auth.properties = AuthProperties::decode(&mut r)?;
            }
        }
        r.finish()?;
        Ok(auth)
    }

    fn is_short(&self) -> bool {
        self.reason_code == ReasonCode::Success && self.properties == AuthProperties::default()
    }

    pub(crate) fn sizes(&self, version: ProtocolVersion) -> Result<Sizes, EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::NotInVersion(PacketType::Auth));
        }
        let mut sizes = Sizes::default();
        if !self.is_short() {
            if !self.reason_code.is_valid_for(PacketType::Auth) {
                return Err(EncodeError::InvalidReasonCode {
                    packet_type: PacketType::Auth,
                    code: self.reason_code,
                });
            }
            sizes.properties = self.properties.body_len()?;
            sizes.remaining =
                check_remaining(1 + wire::varint_len(sizes.properties as u32) + sizes.properties)?;
        }
        Ok(sizes)
    }

    pub(crate) fn write(&self, sizes: &Sizes, buf: &mut BytesMut) {
        put_fixed_header(buf, PacketType::Auth, 0, sizes.remaining);
        if !self.is_short() {
            buf.put_u8(self.reason_code.as_u8());
            self.properties.encode(sizes.properties, buf);
        }
    }
}
