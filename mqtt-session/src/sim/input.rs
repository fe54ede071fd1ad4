//! The fuzz drivers' input reader: arbitrary bytes taken one decision at a time. Each driver
//! adds the decisions of its own (versions, topics, counts) in its module.

use mqtt_streaming_proto::QoS;

/// Reads fuzz input one decision at a time; zeros once it runs out.
pub(crate) struct Input<'a> {
    pub(crate) data: &'a [u8],
}

impl<'a> Input<'a> {
    /// The next byte (0 once the input has run out).
    pub(crate) fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }

    /// Up to `max` bytes, their count taken from one byte.
    pub(crate) fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = (usize::from(self.byte()) % (max + 1)).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Whether the input has run out.
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// A QoS from one byte.
    pub(crate) fn qos(&mut self) -> QoS {
        QoS::from_u8(self.byte() % 3).unwrap_or_default()
    }
}
