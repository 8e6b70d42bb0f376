//! Substring search tuned for log lines. `str::find("…")`, `split_once("…")` and friends
//! set up a Two-Way searcher per call, which costs more than the search itself on a
//! 100-byte line; the parsers call them many times per line. These scan for one byte of the
//! needle (its first that is not a space: spaces are everywhere in logs) and compare the
//! rest. Results are the same as the standard methods'.

pub(crate) trait ShortStr {
    /// Like `str::find` with a `&str` pattern.
    fn find_short(&self, needle: &str) -> Option<usize>;
    /// Like `str::rfind` with a `&str` pattern.
    fn rfind_short(&self, needle: &str) -> Option<usize>;
    /// Like `str::contains` with a `&str` pattern.
    fn contains_short(&self, needle: &str) -> bool {
        self.find_short(needle).is_some()
    }
    /// Like `str::split_once` with a `&str` pattern.
    fn split_once_short(&self, needle: &str) -> Option<(&str, &str)>;
    /// Like `str::rsplit_once` with a `&str` pattern.
    fn rsplit_once_short(&self, needle: &str) -> Option<(&str, &str)>;
}

impl ShortStr for str {
    fn find_short(&self, needle: &str) -> Option<usize> {
        let haystack = self.as_bytes();
        let needle = needle.as_bytes();
        if needle.is_empty() {
            return Some(0);
        }
        let last_start = haystack.len().checked_sub(needle.len())?;
        let anchor = anchor_of(needle);
        let mut start = 0;
        while start <= last_start {
            let at = start
                + haystack[start + anchor..=last_start + anchor]
                    .iter()
                    .position(|&byte| byte == needle[anchor])?;
            if &haystack[at..at + needle.len()] == needle {
                return Some(at);
            }
            start = at + 1;
        }
        None
    }

    fn rfind_short(&self, needle: &str) -> Option<usize> {
        let haystack = self.as_bytes();
        let needle = needle.as_bytes();
        if needle.is_empty() {
            return Some(haystack.len());
        }
        let anchor = anchor_of(needle);
        // Candidate starts are `0..end`.
        let mut end = haystack.len().checked_sub(needle.len())? + 1;
        while end > 0 {
            let at = haystack[anchor..anchor + end]
                .iter()
                .rposition(|&byte| byte == needle[anchor])?;
            if &haystack[at..at + needle.len()] == needle {
                return Some(at);
            }
            end = at;
        }
        None
    }

    fn split_once_short(&self, needle: &str) -> Option<(&str, &str)> {
        let at = self.find_short(needle)?;
        Some((&self[..at], &self[at + needle.len()..]))
    }

    fn rsplit_once_short(&self, needle: &str) -> Option<(&str, &str)> {
        let at = self.rfind_short(needle)?;
        Some((&self[..at], &self[at + needle.len()..]))
    }
}

/// The offset of the needle byte to scan for: its first that is not a space.
fn anchor_of(needle: &[u8]) -> usize {
    needle.iter().position(|&byte| byte != b' ').unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::ShortStr;

    #[test]
    fn examples() {
        assert_eq!("a = b = c".split_once_short(" = "), Some(("a", "b = c")));
        assert_eq!("a = b = c".rsplit_once_short(" = "), Some(("a = b", "c")));
        assert_eq!("aaab".find_short("aab"), Some(1));
        assert_eq!("abc".find_short("abcd"), None);
        assert_eq!("abc".find_short(""), Some(0));
        assert_eq!("abc".rfind_short(""), Some(3));
        assert_eq!("été à".find_short("à"), Some(6));
        assert_eq!("x   y".find_short("  y"), Some(2));
        assert_eq!("   ".rfind_short("  "), Some(1));
        assert!(!"".contains_short("x"));
    }

    proptest! {
        #[test]
        fn same_answers_as_the_standard_library(
            haystack in "[ab ]{0,40}|\\PC{0,20}",
            needle in "[ab ]{0,4}|\\PC{0,3}",
        ) {
            prop_assert_eq!(haystack.find_short(&needle), haystack.find(needle.as_str()));
            prop_assert_eq!(haystack.rfind_short(&needle), haystack.rfind(needle.as_str()));
            prop_assert_eq!(
                haystack.split_once_short(&needle),
                haystack.split_once(needle.as_str())
            );
            prop_assert_eq!(
                haystack.rsplit_once_short(&needle),
                haystack.rsplit_once(needle.as_str())
            );
        }
    }
}
