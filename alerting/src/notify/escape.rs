//! Escaping per medium: what a VPN-derived string may look like in a mail header, a text
//! body, an HTML body and a link. Pure functions, one set of rules for every channel.
//!
//! Every string is bounded first (counted in characters, cut with `…`), then:
//! - [`one_line`] (headers, subjects): control characters, line and paragraph separators
//!   and bidirectional overrides become a space, runs of white space one space. No CR or LF
//!   survives, so nothing can start a header of its own.
//! - [`text`] (plain-text bodies): the same characters are shown as escapes (`\r`, `\n`,
//!   `\u{1b}`), so that a reader sees what was there and no terminal interprets it.
//! - [`html`]: [`text`], then `& < > " '` as character references.
//! - [`link`]: only an absolute `http://` or `https://` URL without white space or control
//!   characters is a link; anything else is not rendered as one.

/// A word such as a status or a severity.
pub(crate) const MAX_WORD_CHARS: usize = 32;
/// A name: a user, a rule, a country, a label value.
pub(crate) const MAX_NAME_CHARS: usize = 256;
/// A summary line.
pub(crate) const MAX_SUMMARY_CHARS: usize = 512;
/// A description.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 4000;
/// A link.
pub(crate) const MAX_URL_CHARS: usize = 2048;
/// Items of a list (addresses, countries, labels) shown before "and N more".
pub(crate) const MAX_LIST_ITEMS: usize = 20;

/// Whether `c` must never reach a reader as it is: C0 and C1 controls and DEL, line and
/// paragraph separators, and the bidirectional controls that reorder what is shown.
fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

/// At most `max_chars` characters of `input`, the last one `…` when cut.
pub(crate) fn bounded(input: &str, max_chars: usize) -> String {
    match input.char_indices().nth(max_chars.saturating_sub(1)) {
        Some((cut, _)) if input[cut..].chars().count() > 1 => {
            let mut out = input[..cut].to_owned();
            out.push('…');
            out
        }
        _ => input.to_owned(),
    }
}

/// One line with no control characters, for a mail header or a subject (see the module).
pub(crate) fn one_line(input: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(input.len().min(max_chars * 4));
    let mut n_chars = 0;
    let mut last_space = true;
    for c in input.chars() {
        let c = if is_hostile(c) || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
        n_chars += 1;
        if n_chars > max_chars {
            break;
        }
    }
    let trimmed = out.trim_end();
    bounded(trimmed, max_chars)
}

/// `input` for a plain-text body: hostile characters shown as escapes (see the module).
pub(crate) fn text(input: &str, max_chars: usize) -> String {
    let bounded = bounded(input, max_chars);
    let mut out = String::with_capacity(bounded.len());
    for c in bounded.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if is_hostile(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// `input` for an HTML body: [`text`], then HTML-escaped.
pub(crate) fn html(input: &str, max_chars: usize) -> String {
    html_attribute(&text(input, max_chars))
}

/// Escapes `& < > " '` (for element content and quoted attribute values alike).
fn html_attribute(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `url` if it may be shown as a link: absolute `http(s)://`, no white space or control
/// characters, at most [`MAX_URL_CHARS`].
pub(crate) fn link(url: &str) -> Option<&str> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
    let clean = !url.chars().any(|c| c.is_whitespace() || is_hostile(c));
    (scheme_ok && clean && url.chars().count() <= MAX_URL_CHARS && url.len() > 8).then_some(url)
}

/// `url` as the value of a quoted HTML attribute (after [`link`]).
pub(crate) fn html_href(url: &str) -> String {
    html_attribute(url)
}

/// The first [`MAX_LIST_ITEMS`] of `items`, each escaped with `escape`, joined with `, `,
/// then "and N more"; `none` when empty.
pub(crate) fn list(items: &[String], none: &str, escape: impl Fn(&str) -> String) -> String {
    if items.is_empty() {
        return none.to_owned();
    }
    let mut out: Vec<String> = items
        .iter()
        .take(MAX_LIST_ITEMS)
        .map(|item| escape(item))
        .collect();
    if items.len() > MAX_LIST_ITEMS {
        out.push(format!("and {} more", items.len() - MAX_LIST_ITEMS));
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "alice\r\nBcc: evil@x\r\n<script>alert(1)</script>\x1b[31m";

    #[track_caller]
    fn check(actual: String, expect: &str) {
        assert_eq!(actual, expect);
    }

    #[test]
    fn one_line_has_no_line_breaks_or_controls() {
        check(
            one_line(HOSTILE, 200),
            "alice Bcc: evil@x <script>alert(1)</script> [31m",
        );
        check(one_line("  a\u{2028}b\u{202e}c\t\td  ", 200), "a b c d");
        check(one_line("\u{85}x\u{7f}", 200), "x");
    }

    #[test]
    fn text_shows_what_was_there() {
        check(
            text(HOSTILE, 200),
            "alice\\r\\nBcc: evil@x\\r\\n<script>alert(1)</script>\\u{1b}[31m",
        );
        check(text("évian\u{202e}", 200), "évian\\u{202e}");
    }

    #[test]
    fn html_escapes_markup_after_controls() {
        check(
            html(HOSTILE, 200),
            "alice\\r\\nBcc: evil@x\\r\\n&lt;script&gt;alert(1)&lt;/script&gt;\\u{1b}[31m",
        );
        check(html("a&b\"c'd", 200), "a&amp;b&quot;c&#39;d");
    }

    #[test]
    fn long_strings_are_cut_by_characters() {
        check(bounded("abcdef", 4), "abc…");
        check(bounded("abcd", 4), "abcd");
        check(bounded("ééééé", 3), "éé…");
        check(bounded("", 3), "");
        let long = "x".repeat(100_000);
        assert_eq!(one_line(&long, 200).chars().count(), 200);
        assert_eq!(text(&long, 300).chars().count(), 300);
        check(one_line("abc def", 4), "abc…");
    }

    #[test]
    fn only_plain_http_urls_are_links() {
        assert_eq!(link("https://console/a?b=1"), Some("https://console/a?b=1"));
        assert_eq!(link("HTTP://console/"), Some("HTTP://console/"));
        assert_eq!(link("javascript:alert(1)"), None);
        assert_eq!(link("https://x/\r\nBcc: y"), None);
        assert_eq!(link("https://"), None);
        assert_eq!(link("/relative"), None);
        check(
            html_href("https://x/?a=1&b=\"2\""),
            "https://x/?a=1&amp;b=&quot;2&quot;",
        );
    }

    #[test]
    fn lists_are_bounded() {
        let items: Vec<String> = (0..25).map(|index| index.to_string()).collect();
        let shown = list(&items, "none", |item| item.to_owned());
        assert!(shown.ends_with("19, and 5 more"), "{shown}");
        check(list(&[], "none", |item| item.to_owned()), "none");
    }
}
