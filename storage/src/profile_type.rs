//! Profile types: `name:sample_type:sample_unit:period_type:period_unit`, the Pyroscope ID.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One value column of a profile. A pprof with N sample types yields N profile types.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProfileType {
    pub name: String,
    pub sample_type: String,
    pub sample_unit: String,
    pub period_type: String,
    pub period_unit: String,
}

impl ProfileType {
    /// Parses the five-part ID. Every part must be non-empty and free of `:`.
    pub fn parse(id: &str) -> Result<Self> {
        let parts: Vec<&str> = id.split(':').collect();
        let invalid = |reason: &str| Error::InvalidProfileType {
            id: id.to_owned(),
            reason: reason.to_owned(),
        };
        if parts.len() != 5 {
            return Err(invalid(
                "expected 5 colon-separated parts: name:sample_type:sample_unit:period_type:period_unit",
            ));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid("no part may be empty"));
        }
        Ok(ProfileType {
            name: parts[0].to_owned(),
            sample_type: parts[1].to_owned(),
            sample_unit: parts[2].to_owned(),
            period_type: parts[3].to_owned(),
            period_unit: parts[4].to_owned(),
        })
    }

    pub fn id(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ProfileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}:{}",
            self.name, self.sample_type, self.sample_unit, self.period_type, self.period_unit
        )
    }
}

/// Replaces characters that would break the ID syntax (`:`, braces) and empty parts.
pub(crate) fn clean_part(part: &str, fallback: &str) -> String {
    if part.is_empty() {
        return fallback.to_owned();
    }
    part.chars()
        .map(|c| {
            if matches!(c, ':' | '{' | '}') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_five_part_id() {
        let id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
        let pt = ProfileType::parse(id).expect("valid");
        assert_eq!(pt.sample_unit, "nanoseconds");
        assert_eq!(pt.to_string(), id);
        assert!(ProfileType::parse("a:b:c:d").is_err());
        assert!(ProfileType::parse("a::c:d:e").is_err());
        assert_eq!(clean_part("a:b", "x"), "a_b");
        assert_eq!(clean_part("", "x"), "x");
    }
}
