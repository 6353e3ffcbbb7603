//! Identities that would otherwise all be `usize`: an upstream link's stable id, and a
//! position in the configuration's list of upstreams. Mixing them up routed to the wrong
//! box once a reload reordered the list; as types they cannot be mixed.

/// An upstream link's identity, stable for its life (positions in the configuration change
/// on reload; ids do not). Ownership is recorded by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(pub usize);

/// A position in the current configuration's upstream list (`State::upstreams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position(pub usize);

impl Position {
    pub fn index(self) -> usize {
        self.0
    }
}
