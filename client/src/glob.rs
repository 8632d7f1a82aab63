//! Glob patterns over key bytes: `*`, `?`, `[set]`, `[!set]`/`[^set]`, `\` escapes.
//!
//! Matching is byte-wise (a key is any bytes, not necessarily UTF-8) and anchored at both
//! ends, like a shell glob or Redis' `KEYS`.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    /// `?`
    One,
    /// `*`
    Star,
    /// `[...]`: inclusive byte ranges; `negated` for `[!...]` / `[^...]`.
    Set {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

/// A pattern that does not compile (the only way is an unclosed `[`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern: {reason}")]
pub struct GlobError {
    pub reason: String,
}

/// A compiled pattern, for [`crate::Cache::keys`] filters (`cachectl keys`, the bindings).
///
/// ```
/// let g = larder::Glob::new(b"user:[0-9]*").unwrap();
/// assert!(g.matches(b"user:42"));
/// assert!(!g.matches(b"user:x"));
/// ```
#[derive(Debug, Clone)]
pub struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    /// Compiles `pat`. The only error is an unclosed `[`.
    pub fn new(pat: &[u8]) -> Result<Glob, GlobError> {
        let mut toks = Vec::new();
        let mut i = 0;
        while i < pat.len() {
            match pat[i] {
                b'*' => {
                    // Consecutive stars are one star.
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                    i += 1;
                }
                b'?' => {
                    toks.push(Tok::One);
                    i += 1;
                }
                b'\\' if i + 1 < pat.len() => {
                    toks.push(Tok::Byte(pat[i + 1]));
                    i += 2;
                }
                b'[' => {
                    let (tok, next) = parse_set(pat, i).map_err(|reason| GlobError { reason })?;
                    toks.push(tok);
                    i = next;
                }
                b => {
                    toks.push(Tok::Byte(b));
                    i += 1;
                }
            }
        }
        Ok(Glob { toks })
    }

    /// `true` if `s` matches the whole pattern.
    pub fn matches(&self, s: &[u8]) -> bool {
        // The classic linear backtracking matcher: remember the last star and how much of
        // `s` it has swallowed; on a mismatch, let it swallow one byte more.
        let (mut p, mut i) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while i < s.len() {
            match self.toks.get(p) {
                Some(Tok::Star) => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                Some(t) if tok_matches(t, s[i]) => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            }
        }
        self.toks[p..].iter().all(|t| *t == Tok::Star)
    }
}

fn tok_matches(t: &Tok, b: u8) -> bool {
    match t {
        Tok::Byte(x) => *x == b,
        Tok::One => true,
        Tok::Star => unreachable!("stars are handled by the matcher"),
        Tok::Set { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated
        }
    }
}

/// Parses the set starting at `pat[start] == b'['`; returns it and the index after `]`.
fn parse_set(pat: &[u8], start: usize) -> Result<(Tok, usize), String> {
    let mut i = start + 1;
    let negated = matches!(pat.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = pat.get(i) else {
            return Err(format!(
                "unclosed '[' at byte {} of the pattern (write \\[ for a literal '[')",
                start + 1
            ));
        };
        if c == b']' && !first {
            return Ok((Tok::Set { negated, ranges }, i + 1));
        }
        first = false;
        let (lo, next) = set_byte(pat, i);
        i = next;
        // `a-z`, but a `-` before the closing `]` is literal.
        if pat.get(i) == Some(&b'-') && pat.get(i + 1).is_some_and(|&c| c != b']') {
            let (hi, next) = set_byte(pat, i + 1);
            i = next;
            ranges.push((lo.min(hi), lo.max(hi)));
        } else {
            ranges.push((lo, lo));
        }
    }
}

/// One (possibly `\`-escaped) byte inside a set.
fn set_byte(pat: &[u8], i: usize) -> (u8, usize) {
    match (pat[i], pat.get(i + 1)) {
        (b'\\', Some(&e)) => (e, i + 2),
        (b, _) => (b, i + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p.as_bytes()).unwrap().matches(s.as_bytes())
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abcd"));
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("user:*", "user:42"));
        assert!(!m("user:*", "users:42"));
        assert!(m("*:42", "user:42"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abcbc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("a**c", "ac"));
        assert!(m("?", "x"));
        assert!(!m("?", ""));
        assert!(!m("?", "xy"));
        assert!(m("k?y", "key"));
    }

    #[test]
    fn sets_and_escapes() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("[!a-c]", "d"));
        assert!(!m("[^a-c]", "a"));
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("user:[0-9]*", "user:7abc"));
        assert!(!m("user:[0-9]*", "user:x"));
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
        assert!(m(r"\[x]", "[x]"));
        assert!(m(r"[\]]", "]"));
        assert!(m("tail\\", "tail\\"));
        assert!(Glob::new(b"[abc").is_err());
        assert!(Glob::new(b"x[").is_err());
    }

    #[test]
    fn bytes_not_utf8() {
        let g = Glob::new(b"bin:?\xff*").unwrap();
        assert!(g.matches(b"bin:\x00\xff\x01"));
        assert!(!g.matches(b"bin:\x00\xfe"));
    }
}
