//! Asterisk generations the simulator can speak (fixtures/LEGACY.md).
//!
//! Where a generation is only approximated, see "Where the sim is not exact" in the crate
//! docs: in short, 22 is byte-exact where captured; 1.4, 1.8 and 13 follow LEGACY.md for
//! the forms it lists and the old sources for the rest, and join the two halves of a Local
//! call (Link / Bridge / BridgeEnter) although real Asterisk never bridges them together.

use std::fmt;
use std::str::FromStr;

/// Which Asterisk generation the simulator imitates on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// Asterisk 1.4 (AMI 1.0).
    V1_4,
    /// Asterisk 1.8 (AMI 1.1).
    V1_8,
    /// Asterisk 13 (AMI 2.10.x).
    V13,
    /// Asterisk 22 (AMI 11.0.0), as captured in fixtures/transcripts.
    #[default]
    V22,
}

impl Dialect {
    /// The AMI version of the banner (`Asterisk Call Manager/<this>`).
    pub fn ami_version(self) -> &'static str {
        match self {
            Dialect::V1_4 => "1.0",
            Dialect::V1_8 => "1.1",
            Dialect::V13 => "2.10.6",
            Dialect::V22 => "11.0.0",
        }
    }

    /// The Asterisk release shown by `core show version` and CoreSettings.
    pub fn asterisk_version(self) -> &'static str {
        match self {
            Dialect::V1_4 => "1.4.44",
            Dialect::V1_8 => "1.8.32.3",
            Dialect::V13 => "13.38.3",
            Dialect::V22 => "22.10.1",
        }
    }

    /// 1.4 or 1.8: channel events without the Stasis channel snapshot block.
    pub(crate) fn pre_stasis(self) -> bool {
        matches!(self, Dialect::V1_4 | Dialect::V1_8)
    }

    /// Command answers in the `Response: Follows` … `--END COMMAND--` form.
    pub(crate) fn legacy_command(self) -> bool {
        self != Dialect::V22
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::V1_4 => "1.4",
            Dialect::V1_8 => "1.8",
            Dialect::V13 => "13",
            Dialect::V22 => "22",
        })
    }
}

/// An unknown dialect name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDialectError(pub String);

impl fmt::Display for ParseDialectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown Asterisk dialect {:?} (expected 1.4, 1.8, 13 or 22)", self.0)
    }
}

impl std::error::Error for ParseDialectError {}

impl FromStr for Dialect {
    type Err = ParseDialectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "1.4" => Ok(Dialect::V1_4),
            "1.8" => Ok(Dialect::V1_8),
            "13" => Ok(Dialect::V13),
            "22" => Ok(Dialect::V22),
            other => Err(ParseDialectError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_versions() {
        for (s, d, v) in [
            ("1.4", Dialect::V1_4, "1.0"),
            ("1.8", Dialect::V1_8, "1.1"),
            ("13", Dialect::V13, "2.10.6"),
            ("22", Dialect::V22, "11.0.0"),
        ] {
            assert_eq!(s.parse::<Dialect>().unwrap(), d);
            assert_eq!(d.ami_version(), v);
            assert_eq!(d.to_string(), s);
        }
        assert!("11".parse::<Dialect>().is_err());
        assert_eq!(Dialect::default(), Dialect::V22);
    }
}
