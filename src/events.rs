//! Membership change events, as published to watchers.

use crate::registry::WorkerRecord;

/// Kind of membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Joined,
    Reregistered,
    Left,
    Evicted,
}

/// One membership change, in version order.
#[derive(Clone, Debug, PartialEq)]
pub struct MembershipEvent {
    pub kind: ChangeKind,
    /// The record after a join or re-registration; the removed record otherwise.
    pub record: WorkerRecord,
    /// Membership version after this change.
    pub membership_version: u64,
}
