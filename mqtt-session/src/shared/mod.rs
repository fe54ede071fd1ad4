//! The protocol machinery both roles share: the transmit buffer, packet identifiers, outbound
//! QoS 1/2 flows with their Receive Maximum window, inbound acknowledgement ordering and QoS 2
//! de-duplication, and topic aliases. The client and server sessions compose these; nothing
//! here knows which role it serves.

pub(crate) mod flows;
pub(crate) mod inbound;
pub(crate) mod inflight;
pub(crate) mod outbox;
pub(crate) mod packet_ids;
pub(crate) mod topic_alias;
