//! The protocol machinery both roles share: the session [`Core`](session_core::Core) (link, durable
//! flows, events, keep alive, the read loop), the transmit buffer, packet identifiers, the
//! in-flight table, inbound acknowledgement ordering and QoS 2 de-duplication, and topic
//! aliases. The client and server sessions own a core; nothing here knows which role it serves.

pub(crate) mod flows;
pub(crate) mod inbound;
pub(crate) mod inflight;
pub(crate) mod keep_alive;
pub(crate) mod outbox;
pub(crate) mod packet_ids;
pub(crate) mod session_core;
pub(crate) mod topic_alias;
