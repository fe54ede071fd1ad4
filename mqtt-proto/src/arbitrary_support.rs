//! Helpers for deriving `arbitrary::Arbitrary` on packets whose fields are `bytes` types or
//! carry invariants. Compiled only with the `arbitrary` feature (fuzzing and property tests).

use alloc::vec::Vec;

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;

use crate::property::SubscriptionId;

/// Arbitrary binary data, at most 64 bytes so that generated packets stay small.
pub(crate) fn bytes(u: &mut Unstructured<'_>) -> Result<Bytes> {
    let len = u.int_in_range(0..=64usize)?;
    Ok(Bytes::copy_from_slice(u.bytes(len.min(u.len()))?))
}

pub(crate) fn opt_bytes(u: &mut Unstructured<'_>) -> Result<Option<Bytes>> {
    if u.arbitrary()? {
        bytes(u).map(Some)
    } else {
        Ok(None)
    }
}

fn subscription_id(u: &mut Unstructured<'_>) -> Result<SubscriptionId> {
    let raw = u.int_in_range(1..=crate::wire::VARINT_MAX)?;
    SubscriptionId::new(raw).ok_or(arbitrary::Error::IncorrectFormat)
}

pub(crate) fn opt_subscription_id(u: &mut Unstructured<'_>) -> Result<Option<SubscriptionId>> {
    if u.arbitrary()? {
        subscription_id(u).map(Some)
    } else {
        Ok(None)
    }
}

pub(crate) fn subscription_ids(u: &mut Unstructured<'_>) -> Result<Vec<SubscriptionId>> {
    let n = u.int_in_range(0..=3usize)?;
    (0..n).map(|_| subscription_id(u)).collect()
}

impl<'a> Arbitrary<'a> for SubscriptionId {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        subscription_id(u)
    }
}
