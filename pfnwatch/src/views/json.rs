//! A record's JSON line written straight from the outcome into a reused
//! buffer: byte for byte what serde writes for [`Line::record`], without
//! building the line (its copies of the record and host context, a string
//! per flag name, serde's flattening). Replay's JSON ran at half the text
//! path's rate for those alone.
//!
//! The object's shape is written here; every value still goes through
//! serde_json (its escaping, its numbers). [`Line`] stays the schema: the
//! tests render both for records that set every field, and compare.
//!
//! [`Line`]: super::line::Line
//! [`Line::record`]: super::line::Line::record

use crate::kernel::decode::{DevNum, MappedFile};
use crate::pipeline::Outcome;
use crate::pipeline::alert::Clock;
use pfnwatch_common::{Class, Level, pgtable::PAGE_SHIFT_DEFAULT, vm_flags};
use serde::Serialize;
use std::time::{Duration, UNIX_EPOCH};

/// A file that is no device node's (0:0): no `device` field.
const NO_DEVICE: DevNum = DevNum { major: 0, minor: 0 };

/// Writes record lines; keeps its buffer and what repeats from line to
/// line (class names, the time's second) for the next.
#[derive(Default)]
pub struct RecordLines {
    buf: Vec<u8>,
    /// Class names by the class's bits.
    classes: Vec<Option<Box<str>>>,
    /// The last second written and its "YYYY-MM-DDTHH:MM:SS".
    second: Option<(u64, Box<str>)>,
}

impl RecordLines {
    /// The record line of `o`, without its newline. `stack`: with the call
    /// path by symbol. Kernel addresses never appear (as in
    /// [`crate::kernel::decode::Record::without_kernel_addresses`]).
    pub fn record(&mut self, o: &Outcome, clock: &Clock, stack: bool) -> &[u8] {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.record_into(&mut buf, o, clock, stack);
        self.buf = buf;
        &self.buf
    }

    fn record_into(&mut self, out: &mut Vec<u8>, o: &Outcome, clock: &Clock, stack: bool) {
        let Outcome {
            record: r,
            hits,
            host,
        } = o;
        let mut obj = Object::new(out);
        obj.word("type", "record");
        obj.number("ts_ns", r.ts_ns);
        obj.word("hook", r.hook.function());
        obj.key("class");
        self.class_into(obj.out, r.class);
        obj.number("pid", r.pid);
        obj.number("tgid", r.tgid);
        obj.field("comm", &r.comm);
        obj.number("cgroup_id", r.cgroup_id);
        obj.number("vm_flags", r.vm_flags);
        obj.number("vm_start", r.vm_start);
        obj.number("vm_end", r.vm_end);
        obj.number("vm_pgoff", r.vm_pgoff);
        if let Some(before) = r.pgoff_before {
            obj.number("pgoff_before", before);
        }
        obj.number("addr", r.addr);
        match r.pfn {
            Some(pfn) => obj.number("pfn", pfn),
            None => obj.raw("pfn", b"null"),
        }
        obj.number("size", r.size);
        obj.number("entry", r.entry);
        obj.number("ret", r.ret);
        if r.level != Level::Pte {
            obj.number("level", r.level.raw());
        }
        if r.page_shift != PAGE_SHIFT_DEFAULT {
            obj.number("page_shift", r.page_shift);
        }
        if let Some(file) = &r.file {
            obj.key("file");
            file_into(obj.out, file);
        }
        // fault_fn: a kernel address, never written.
        if r.vma_id != 0 {
            obj.number("vma_id", r.vma_id);
        }
        for (name, set) in [
            ("at_entry", r.at_entry),
            ("zero_page", r.zero_page),
            ("fork", r.fork),
            ("existing", r.existing),
            ("free_unseen", r.free_unseen),
        ] {
            if set {
                obj.raw(name, b"true");
            }
        }
        // stack: kernel addresses, never written.
        obj.key("rules");
        words(obj.out, hits.iter().map(|h| h.rule.id.as_str()));
        obj.key("time");
        self.time_into(obj.out, clock, r.ts_ns);
        obj.key("vm_flags_names");
        words(obj.out, vm_flags::names(r.vm_flags));
        obj.number("expected_pfn", r.rule_pfn());
        if let Some(f) = r.file.as_ref().filter(|f| f.rdev != NO_DEVICE) {
            obj.field("device", &f.rdev);
        }
        for (name, value) in [
            ("cgroup", &host.cgroup),
            ("container", &host.container),
            ("driver", &host.driver),
        ] {
            if let Some(v) = value {
                obj.field(name, v);
            }
        }
        // handlers: left out of record lines.
        if stack && !host.stack.is_empty() {
            obj.key("call_path");
            obj.out.push(b'[');
            for (i, frame) in host.stack.iter().enumerate() {
                if i > 0 {
                    obj.out.push(b',');
                }
                value(obj.out, frame);
            }
            obj.out.push(b']');
        }
        match hits.iter().map(|h| h.severity).max() {
            Some(s) => obj.word("severity", s.as_str()),
            None => obj.raw("severity", b"null"),
        }
        if !hits.is_empty() {
            obj.key("hits");
            obj.out.push(b'[');
            for (i, h) in hits.iter().enumerate() {
                if i > 0 {
                    obj.out.push(b',');
                }
                let mut hit = Object::new(obj.out);
                hit.word("rule", h.rule.id.as_str());
                hit.word("name", h.rule.name);
                hit.word("severity", h.severity.as_str());
                hit.close();
            }
            obj.out.push(b']');
        }
        obj.close();
    }

    fn class_into(&mut self, out: &mut Vec<u8>, class: Class) {
        let slot = usize::from(class.0);
        if slot >= pfnwatch_common::class::SLOTS {
            return value(out, &class);
        }
        if self.classes.len() <= slot {
            self.classes.resize(slot + 1, None);
        }
        let name = self.classes[slot].get_or_insert_with(|| class.to_string().into());
        value(out, &**name);
    }

    /// [`super::line::wall_time`], quoted (RFC 3339 needs no escaping); the
    /// date and time of day formatted once a second.
    fn time_into(&mut self, out: &mut Vec<u8>, clock: &Clock, mono_ns: u64) {
        let real = u64::try_from(i128::from(mono_ns) + clock.offset_ns()).unwrap_or(0);
        let secs = real / 1_000_000_000;
        let second = match &self.second {
            Some((s, text)) if *s == secs => text,
            _ => {
                let at = UNIX_EPOCH + Duration::from_secs(secs);
                let text = humantime::format_rfc3339_seconds(at).to_string();
                // "…Z": the seconds' text without its zone.
                let text = text.strip_suffix('Z').unwrap_or(&text).into();
                &self.second.insert((secs, text)).1
            }
        };
        out.push(b'"');
        out.extend_from_slice(second.as_bytes());
        let micros = real % 1_000_000_000 / 1000;
        let mut digits = *b".000000Z\"";
        let mut v = micros;
        for d in digits[1..7].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&digits);
    }
}

fn file_into(out: &mut Vec<u8>, f: &MappedFile) {
    let mut obj = Object::new(out);
    obj.field("name", &f.name);
    obj.field("parent", &f.parent);
    obj.number("ino", f.ino);
    obj.field("rdev", &f.rdev);
    obj.field("sdev", &f.sdev);
    if let Some(m) = &f.module {
        obj.field("module", m);
    }
    // mmap_fn: a kernel address, never written.
    obj.close();
}

/// A JSON array of words that need no escaping (see [`word_into`]).
fn words<'a>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'a str>) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        word_into(out, item);
    }
    out.push(b']');
}

/// A name of pfnwatch's own (hook, rule, severity, flag, key): letters,
/// digits and `_`, which JSON takes as they are (a test holds every one to
/// that), so no escaping pass.
fn word_into(out: &mut Vec<u8>, word: &str) {
    out.push(b'"');
    out.extend_from_slice(word.as_bytes());
    out.push(b'"');
}

fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Plain data into a Vec: serde_json cannot fail on it.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// An object being written: keys and commas.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, first: true }
    }

    /// `"name":` after a comma if needed; the value is the caller's.
    fn key(&mut self, name: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        word_into(self.out, name);
        self.out.push(b':');
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, v: &T) {
        self.key(name);
        value(self.out, v);
    }

    fn word(&mut self, name: &str, word: &str) {
        self.key(name);
        word_into(self.out, word);
    }

    fn number(&mut self, name: &str, v: impl itoa::Integer) {
        self.key(name);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn raw(&mut self, name: &str, json: &[u8]) {
        self.key(name);
        self.out.extend_from_slice(json);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::Enrichment;
    use crate::kernel::decode::{MappedFile, Record};
    use crate::rules::{RuleId, Severity};
    use crate::views::line::tests::{clock, remap, rules};
    use crate::views::line::{Format, Line};
    use pfnwatch_common::{Hook, class};

    fn both(record: Record, host: &Enrichment, stack: bool) -> (String, String) {
        let outcome = Outcome {
            hits: rules().evaluate(&record),
            record,
            host: host.clone(),
        };
        let serde = Line::record(&outcome, &clock(), stack).render(Format::Json);
        let fast = RecordLines::default()
            .record(&outcome, &clock(), stack)
            .to_vec();
        (serde, String::from_utf8(fast).unwrap())
    }

    /// A record with every field set away from its default, strings that
    /// need escaping, and the host context in full.
    fn everything() -> (Record, Enrichment) {
        let record = Record {
            comm: "tab\there \"quoted\" \u{7f}é".into(),
            level: Level::Pmd,
            page_shift: 14,
            file: Some(MappedFile {
                name: "resource0\n".into(),
                parent: "0000:00:02.0".into(),
                ino: 42,
                rdev: DevNum {
                    major: 226,
                    minor: 1,
                },
                sdev: DevNum { major: 0, minor: 5 },
                module: Some("bochs".into()),
                mmap_fn: 0xffff_ffff_c000_1000,
            }),
            fault_fn: 0xffff_ffff_c000_2000,
            vma_id: 9,
            at_entry: true,
            zero_page: true,
            fork: true,
            existing: true,
            free_unseen: true,
            pfn: None,
            ret: -22,
            ..remap()
        };
        let host = Enrichment {
            cgroup: Some("/kubepods/\\odd".into()),
            container: Some("c0ffee".into()),
            driver: Some("bochs-drm".into()),
            handlers: Some("fault:x mmap:y".into()),
            stack: vec!["a+0x1".to_owned(), "b \"q\"+0x2 [m]".to_owned()].into(),
        };
        (record, host)
    }

    #[test]
    fn writes_what_serde_writes_for_every_field() {
        let (record, host) = everything();
        for stack in [true, false] {
            let (serde, fast) = both(record.clone(), &host, stack);
            assert_eq!(fast, serde);
        }
    }

    #[test]
    fn writes_what_serde_writes_for_defaults_and_no_hits() {
        let mut plain = Record::new(Hook::VmNormalPage, Class(class::PFNMAP | class::SPECIAL));
        plain.pfn = Some(1);
        for (record, host) in [
            (plain, Enrichment::default()),
            (remap(), Enrichment::default()),
            (
                Record {
                    file: Some(MappedFile {
                        rdev: NO_DEVICE,
                        module: None,
                        ..everything().0.file.unwrap()
                    }),
                    ..remap()
                },
                everything().1,
            ),
        ] {
            for stack in [true, false] {
                let (serde, fast) = both(record.clone(), &host, stack);
                assert_eq!(fast, serde);
            }
        }
    }

    #[test]
    fn the_words_written_unescaped_need_no_escaping() {
        let words = Hook::ALL
            .iter()
            .map(|h| h.function())
            .chain(RuleId::ALL.iter().map(|r| r.as_str()))
            .chain(RuleId::ALL.iter().map(|r| r.rule().name))
            .chain(Severity::ALL.iter().map(|s| s.as_str()))
            .chain(vm_flags::NAMED.iter().map(|(name, _)| *name));
        for w in words {
            assert_eq!(serde_json::to_string(w).unwrap(), format!("\"{w}\""));
        }
    }

    #[test]
    fn the_time_is_humantimes_to_the_microsecond_across_seconds() {
        let mut lines = RecordLines::default();
        for ns in [
            0,
            999_999,
            1_000_000_000,
            1_000_001_000,
            86_399_999_999_999,
            7_000_000,
        ] {
            let mut out = Vec::new();
            lines.time_into(&mut out, &clock(), ns);
            let want = format!("\"{}\"", crate::views::line::wall_time(&clock(), ns));
            assert_eq!(String::from_utf8(out).unwrap(), want, "{ns}");
        }
    }
}
