//! Selectors: a profile type ID followed by Prometheus label matchers,
//! `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api", pod=~"web-.*"}`.
//! The profile type may be omitted (`{...}`), may carry a sixth `:delta` part (Parca), and
//! label names may be quoted UTF-8 (`{"service.name"="x"}`). Errors give the byte position.

use firn_storage::ProfileType;
use firn_storage::filter::{LabelMatcher, MatchOp};

use crate::error::{Error, Result};

/// A parsed selector.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub profile_type: Option<ProfileType>,
    /// `Some(true)` for a `:delta` suffix.
    pub delta: Option<bool>,
    pub matchers: Vec<LabelMatcher>,
}

impl Selector {
    pub fn parse(input: &str) -> Result<Self> {
        Parser { input, pos: 0 }.selector()
    }
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> Error {
        Error::Selector {
            selector: self.input.to_owned(),
            position: self.pos,
            message: message.into(),
        }
    }

    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.input.len() - trimmed.len();
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn selector(mut self) -> Result<Selector> {
        self.skip_ws();
        let mut selector = Selector::default();
        let head_end = self
            .rest()
            .find('{')
            .map_or(self.input.len(), |i| self.pos + i);
        let head = self.input[self.pos..head_end].trim();
        if !head.is_empty() {
            let parts: Vec<&str> = head.split(':').collect();
            let (id, delta) = match parts.len() {
                5 => (head.to_owned(), None),
                6 if parts[5] == "delta" => (parts[..5].join(":"), Some(true)),
                6 => {
                    return Err(self.error(format!(
                        "the sixth part of the profile type must be \"delta\", found {:?}",
                        parts[5]
                    )));
                }
                n => {
                    return Err(self.error(format!(
                        "profile type {head:?} has {n} parts; expected name:sample_type:sample_unit:period_type:period_unit"
                    )));
                }
            };
            if parts
                .iter()
                .any(|p| p.is_empty() || p.chars().any(|c| c.is_whitespace() || c == '"'))
            {
                return Err(self.error(format!(
                    "profile type {head:?} has an empty or malformed part"
                )));
            }
            selector.profile_type =
                Some(ProfileType::parse(&id).map_err(|e| self.error(e.to_string()))?);
            selector.delta = delta;
            self.pos = head_end;
        }
        if self.pos == self.input.len() {
            return Ok(selector);
        }
        if !self.eat("{") {
            return Err(self.error("expected '{'"));
        }
        loop {
            self.skip_ws();
            if self.eat("}") {
                break;
            }
            selector.matchers.push(self.matcher()?);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                break;
            }
            return Err(self.error("expected ',' or '}' after a matcher"));
        }
        self.skip_ws();
        if self.pos != self.input.len() {
            return Err(self.error("unexpected text after '}'"));
        }
        Ok(selector)
    }

    fn matcher(&mut self) -> Result<LabelMatcher> {
        let name_pos = self.pos;
        let name = if self.rest().starts_with('"') {
            self.string()?
        } else {
            let len = self
                .rest()
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(self.rest().len());
            let name = self.rest()[..len].to_owned();
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(self.error("expected a label name"));
            }
            self.pos += len;
            name
        };
        if name.is_empty() {
            self.pos = name_pos;
            return Err(self.error("label name is empty"));
        }
        self.skip_ws();
        let op = if self.eat("=~") {
            MatchOp::Re
        } else if self.eat("!~") {
            MatchOp::NotRe
        } else if self.eat("!=") {
            MatchOp::NotEq
        } else if self.eat("=") {
            MatchOp::Eq
        } else {
            return Err(self.error("expected one of =, !=, =~, !~"));
        };
        self.skip_ws();
        let value_pos = self.pos;
        let value = self.string()?;
        LabelMatcher::new(name, op, value).map_err(|e| {
            self.pos = value_pos;
            self.error(format!("invalid regular expression: {e}"))
        })
    }

    /// A double-, single- or back-quoted string with Go-style escapes.
    fn string(&mut self) -> Result<String> {
        let quote = match self.rest().chars().next() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err(self.error("expected a quoted string")),
        };
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(out);
            }
            if c == '\\' && quote != '`' {
                match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, e @ ('\\' | '"' | '\''))) => out.push(e),
                    Some((j, e)) => {
                        self.pos += j;
                        return Err(self.error(format!("unknown escape \\{e}")));
                    }
                    None => break,
                }
            } else {
                out.push(c);
            }
        }
        self.pos = self.input.len();
        Err(self.error("unterminated string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profile_type_and_matchers() {
        let s = Selector::parse(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api", pod=~"web-.*", "service.version"!="2"}"#)
            .expect("valid");
        assert_eq!(
            s.profile_type.expect("type").id(),
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
        );
        assert_eq!(s.matchers.len(), 3);
        assert!(s.matchers[1].matches(Some("web-1")));
        assert!(
            !s.matchers[1].matches(Some("xweb-1")),
            "regexes are anchored"
        );
        assert_eq!(s.matchers[2].name, "service.version");
        assert!(s.matchers[2].matches(None));
        let s = Selector::parse("a:b:c:d:e:delta").expect("valid");
        assert_eq!(s.delta, Some(true));
        assert!(Selector::parse("{}").expect("valid").profile_type.is_none());
        assert!(
            Selector::parse(r#"{a="\"q\""}"#).expect("valid").matchers[0].matches(Some("\"q\""))
        );
    }

    #[test]
    fn errors_point_at_the_position() {
        for (input, pos, needle) in [
            (r#"{a="x" b="y"}"#, 7, "expected ',' or '}'"),
            (r#"{a=x}"#, 3, "expected a quoted string"),
            (r#"{a=~"("}"#, 4, "invalid regular expression"),
            (r#"{a<"x"}"#, 2, "expected one of"),
            (r#"a:b:c{}"#, 0, "has 3 parts"),
            (r#"{a="x"#, 5, "unterminated"),
            (r#"{a="x"} junk"#, 8, "unexpected text"),
        ] {
            match Selector::parse(input) {
                Err(Error::Selector {
                    position, message, ..
                }) => {
                    assert_eq!(position, pos, "{input}: {message}");
                    assert!(message.contains(needle), "{input}: {message}");
                }
                other => panic!("{input}: expected a selector error, got {other:?}"),
            }
        }
    }
}
