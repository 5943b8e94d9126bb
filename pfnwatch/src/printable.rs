//! Names from the kernel and /proc (a task's comm, file names, cgroup
//! paths, module names) are whatever a process made them: they may hold
//! newlines or terminal escapes. Text output and log lines show them with
//! control characters escaped, so one line stays one line and nothing
//! reaches the terminal as a command. JSON and metric labels escape by
//! their own rules (serde, the text exposition format).

use std::borrow::Cow;

/// `s` with every control character escaped as Rust writes it (`\n`,
/// `\u{1b}`); borrowed when there is none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_debug().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// The first `n` characters of `s` (not bytes: a multi-byte character is
/// never cut).
pub fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(printable("pfnwatch-scenar"), Cow::Borrowed(_)));
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(printable("tab\there\r"), "tab\\there\\r");
        // Valid non-ASCII stays as it is; so does the replacement character
        // invalid UTF-8 was decoded to.
        assert_eq!(printable("café \u{fffd}"), "café \u{fffd}");
        assert_eq!(printable("\u{85}next line"), "\\u{85}next line");
    }

    #[test]
    fn prefixes_count_characters() {
        assert_eq!(prefix("0123456789abcdef", 12), "0123456789ab");
        assert_eq!(prefix("ééééé", 2), "éé");
        assert_eq!(prefix("short", 12), "short");
    }
}
