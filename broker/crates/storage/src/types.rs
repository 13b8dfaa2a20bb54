//! Newtypes for log offsets and leader epochs.

use std::fmt;

/// A Kafka log offset (position of a record in a partition).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<i64> for Offset {
    fn from(value: i64) -> Self {
        Offset(value)
    }
}

/// A partition leader epoch, stamped into every batch the leader appends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderEpoch(pub i32);

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<i32> for LeaderEpoch {
    fn from(value: i32) -> Self {
        LeaderEpoch(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_display_prints_plain_number() {
        assert_eq!(Offset(42).to_string(), "42");
        assert_eq!(LeaderEpoch(-1).to_string(), "-1");
        assert!(Offset(1) < Offset(2));
    }
}
