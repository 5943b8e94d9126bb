//! Numbers appended to text lines without `core::fmt`, whose padding and
//! radix machinery took a third of replay's time at a million lines a
//! second.

/// `v` in decimal (itoa, as serde_json writes numbers).
pub fn dec(s: &mut String, v: impl itoa::Integer) {
    s.push_str(itoa::Buffer::new().format(v));
}

/// `v` as `{:#x}` writes it: 0x and lowercase digits, no leading zeros.
pub fn hex(s: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    s.push_str("0x");
    s.extend(buf[i..].iter().map(|b| char::from(*b)));
}

/// `v` (below 100) as two digits, as `{:02}` writes it.
pub fn two(s: &mut String, v: u64) {
    s.push(char::from(b'0' + (v / 10 % 10) as u8));
    s.push(char::from(b'0' + (v % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_as_format() {
        for v in [0, 1, 9, 10, 0xf0, 0x7f00_0000_1000, u64::MAX] {
            let mut s = String::new();
            hex(&mut s, v);
            assert_eq!(s, format!("{v:#x}"));
            s.clear();
            dec(&mut s, v);
            assert_eq!(s, v.to_string());
        }
        let mut s = String::new();
        dec(&mut s, -22i64);
        assert_eq!(s, "-22");
        for v in [0, 7, 10, 59, 99] {
            let mut s = String::new();
            two(&mut s, v);
            assert_eq!(s, format!("{v:02}"));
        }
    }
}
