//! [`MqttString`]: a UTF-8 Encoded String as MQTT defines it, shared with the packet it came
//! from instead of copied.

use core::fmt;

use bytes::Bytes;

use crate::error::DecodeError;

/// Why bytes are not a valid MQTT UTF-8 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringError {
    /// Ill-formed UTF-8, including encoded surrogates ([MQTT-1.5.3-1] in 3.1.1, [MQTT-1.5.4-1]
    /// in 5.0).
    InvalidUtf8,
    /// The null character U+0000 ([MQTT-1.5.3-2] in 3.1.1, [MQTT-1.5.4-2] in 5.0).
    NullCharacter,
    /// Longer than the 65,535 bytes a two-byte length prefix can describe.
    TooLong,
}

impl fmt::Display for StringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidUtf8 => "string is not well-formed UTF-8",
            Self::NullCharacter => "string contains U+0000",
            Self::TooLong => "string is longer than 65535 bytes",
        })
    }
}

impl core::error::Error for StringError {}

/// Checks the rules every MQTT string obeys; returns the bytes as `&str` when they pass.
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<&str, StringError> {
    if bytes.len() > crate::wire::FIELD_MAX {
        return Err(StringError::TooLong);
    }
    let s = core::str::from_utf8(bytes).map_err(|_| StringError::InvalidUtf8)?;
    if bytes.contains(&0) {
        return Err(StringError::NullCharacter);
    }
    Ok(s)
}

/// A validated MQTT UTF-8 string: well-formed UTF-8, no U+0000, at most 65,535 bytes.
///
/// Decoded strings share the packet's buffer (no copy). Lengths on the wire count bytes, not
/// characters, so non-ASCII text round-trips intact.
///
/// ```
/// use mqtt_streaming_proto::MqttString;
/// let s = MqttString::new("grüße").unwrap();
/// assert_eq!(s.as_str(), "grüße");
/// assert_eq!(s.len(), 7); // bytes, not characters
/// assert!(MqttString::new("a\0b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MqttString(Bytes);

impl MqttString {
    /// The empty string, as a constant (for a `static` to hand out references to).
    pub const EMPTY: MqttString = MqttString::from_validated(Bytes::new());

    /// Validates `s` and copies it into a new string.
    pub fn new(s: &str) -> Result<Self, StringError> {
        check_utf8(s.as_bytes())?;
        Ok(Self(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// A string from a `'static` literal, without copying.
    pub fn from_static(s: &'static str) -> Result<Self, StringError> {
        check_utf8(s.as_bytes())?;
        Ok(Self(Bytes::from_static(s.as_bytes())))
    }

    /// Validates `bytes` and wraps them without copying.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, StringError> {
        check_utf8(&bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps bytes that [`check_utf8`] has accepted.
    #[inline(always)]
    pub(crate) const fn from_validated(bytes: Bytes) -> Self {
        Self(bytes)
    }

    pub(crate) fn from_bytes(bytes: Bytes) -> Result<Self, DecodeError> {
        Self::try_from_bytes(bytes).map_err(DecodeError::from)
    }

    /// The string. Never fails: the bytes were validated when the value was made.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The encoded bytes (without the length prefix).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared buffer behind the string.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for MqttString {
    type Error = StringError;
    fn try_from(s: &str) -> Result<Self, StringError> {
        Self::new(s)
    }
}

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for MqttString {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let s: &str = u.arbitrary()?;
        let cleaned: alloc::string::String = s.chars().filter(|&c| c != '\0').take(64).collect();
        Self::new(&cleaned).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}
