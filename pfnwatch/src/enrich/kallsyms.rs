//! Kernel addresses to "function+0xoff [module]", from /proc/kallsyms.
//!
//! A kernel has 100,000 to 200,000 text symbols, read again whenever a
//! module comes or goes. They are kept in three allocations (the entries,
//! every name in one string, the module names), not one per symbol: a
//! third of the memory, and each reread frees whole blocks the allocator
//! gives back, where a heap of 150,000 small strings grew with every
//! module load (the soak test's RSS on 7.2).

use crate::kernel::facts;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One symbol: its address and where its name and module are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    addr: u64,
    /// Byte range of the name in [`Table::names`].
    name_start: u32,
    name_len: u16,
    /// Index into [`Table::modules`] plus one; 0 for the core kernel.
    module: u16,
}

/// The symbols, sorted by address.
#[derive(Debug, Default)]
struct Table {
    entries: Vec<Entry>,
    names: String,
    modules: Vec<Box<str>>,
}

/// A symbol found in a [`Table`].
struct Symbol<'t> {
    addr: u64,
    name: &'t str,
    module: Option<&'t str>,
}

impl Table {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn symbol(&self, e: &Entry) -> Symbol<'_> {
        let start = e.name_start as usize;
        Symbol {
            addr: e.addr,
            name: self
                .names
                .get(start..start + usize::from(e.name_len))
                .unwrap_or(""),
            module: e
                .module
                .checked_sub(1)
                .and_then(|i| self.modules.get(usize::from(i)))
                .map(|m| &**m),
        }
    }
}

/// The text symbols of the running kernel and its modules.
#[derive(Debug)]
pub struct Kallsyms {
    path: PathBuf,
    /// The module list: the symbols are read again only when it changed
    /// (modules come and go), not on every address no symbol covers (there
    /// are such in every call path: BPF trampolines, for one).
    modules_path: PathBuf,
    modules: Option<String>,
    symbols: Table,
    checked_at: Option<Instant>,
    /// Addresses read as 0: kptr_restrict hides them from this process.
    pub restricted: bool,
}

/// How often a lookup may look at the module list. A hit looks too: the
/// table is read at start, and an address in a module loaded since can
/// fall within reach of an older module's last symbol and read as it.
const RECHECK_EVERY: Duration = Duration::from_secs(10);

/// How often a record naming a module the table lacks may look.
const RECHECK_MODULE_EVERY: Duration = Duration::from_secs(1);

impl Kallsyms {
    pub fn new(path: impl AsRef<Path>) -> Kallsyms {
        Kallsyms::with_modules(path, "/proc/modules")
    }

    /// Symbols from `path`, reread when `modules` changes.
    pub fn with_modules(path: impl AsRef<Path>, modules: impl AsRef<Path>) -> Kallsyms {
        Kallsyms {
            path: path.as_ref().to_path_buf(),
            modules_path: modules.as_ref().to_path_buf(),
            modules: None,
            symbols: Table::default(),
            checked_at: None,
            restricted: false,
        }
    }

    /// Reads the table line by line ([`facts::kallsyms_lines`]), showing
    /// each line to `also` too.
    fn parse(input: impl BufRead, mut also: impl FnMut(&str)) -> std::io::Result<Table> {
        let mut table = Table::default();
        facts::kallsyms_lines(input, |line| {
            also(line);
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return;
            };
            // Text symbols only: the call path is made of return addresses.
            if !matches!(kind, "t" | "T" | "w" | "W") {
                return;
            }
            let (Ok(addr), Ok(name_start), Ok(name_len)) = (
                u64::from_str_radix(addr, 16),
                u32::try_from(table.names.len()),
                u16::try_from(name.len()),
            ) else {
                return;
            };
            let module = match parts.next() {
                None => 0,
                Some(m) => {
                    let m = m.trim_matches(|c| c == '[' || c == ']');
                    // A module's symbols come together: the last name is
                    // nearly always the one.
                    let at = match table.modules.iter().rposition(|n| &**n == m) {
                        Some(at) => at,
                        None => {
                            table.modules.push(m.into());
                            table.modules.len() - 1
                        }
                    };
                    match u16::try_from(at + 1) {
                        Ok(index) => index,
                        Err(_) => return,
                    }
                }
            };
            table.names.push_str(name);
            table.entries.push(Entry {
                addr,
                name_start,
                name_len,
                module,
            });
        })?;
        table.entries.sort_by_key(|e| e.addr);
        table.entries.shrink_to_fit();
        table.names.shrink_to_fit();
        Ok(table)
    }

    /// Reads the symbols now, not at the first record (the file takes the
    /// kernel most of a second to format on a slow machine, and a reader
    /// stuck in it sees no ring buffer and no device mapping's wake-up),
    /// handing every line to `also` on the way: one read serves the
    /// kernel addresses the programs need too.
    pub fn preload(&mut self, also: impl FnMut(&str)) {
        self.refresh_with(also);
    }

    /// Rereads the symbols if the module list changed since the last read
    /// (or nothing was read yet).
    fn refresh(&mut self) {
        self.refresh_with(|_| {});
    }

    fn refresh_with(&mut self, also: impl FnMut(&str)) {
        self.checked_at = Some(Instant::now());
        // The names alone: a module's use count changes with every open.
        let modules = std::fs::read_to_string(&self.modules_path)
            .ok()
            .map(|text| {
                let mut names: Vec<&str> =
                    text.lines().filter_map(|l| l.split(' ').next()).collect();
                names.sort_unstable();
                names.join(" ")
            });
        if !self.symbols.is_empty() && modules == self.modules {
            return;
        }
        let again = !self.symbols.is_empty() || self.modules.is_some();
        // The old table goes first: never two in memory at once.
        self.symbols = Table::default();
        let read = facts::open_kallsyms(&self.path).and_then(|f| Kallsyms::parse(f, also));
        match read {
            Ok(table) => {
                self.symbols = table;
                self.restricted =
                    !self.symbols.is_empty() && self.symbols.entries.iter().all(|e| e.addr == 0);
                self.modules = modules;
                if again {
                    tracing::info!(
                        symbols = self.symbols.entries.len(),
                        "kernel symbols read again: the module list changed"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; call paths stay unsymbolised",
                    self.path.display()
                );
            }
        }
    }

    fn find(&self, addr: u64) -> Option<Symbol<'_>> {
        let entries = &self.symbols.entries;
        let idx = entries.partition_point(|e| e.addr <= addr);
        let e = entries.get(idx.checked_sub(1)?)?;
        // Past the last symbol of the core kernel, or in a gap: no answer
        // beats a wrong one. 1 MiB is larger than any kernel function.
        (addr - e.addr < 1 << 20 && e.addr != 0).then(|| self.symbols.symbol(e))
    }

    /// "function [module]" for an address a symbol starts at (a handler
    /// pointer, as the kernel's %ps prints it); None for 0 or no symbol.
    pub fn name_at(&mut self, addr: u64) -> Option<String> {
        if addr == 0 {
            return None;
        }
        let text = self.symbolize(addr);
        if text.starts_with("0x") {
            return None;
        }
        // Only "+0x0": a pointer into the middle of a function is no handler.
        let (name, rest) = text.split_once("+0x0")?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        Some(format!("{name}{rest}"))
    }

    /// Rereads the symbols if `module` (a record's driver, loaded after the
    /// table was read) has none in the table and the module list changed.
    pub fn ensure_module(&mut self, module: &str) {
        if self.symbols.modules.iter().any(|m| &**m == module) {
            return;
        }
        if self
            .checked_at
            .is_none_or(|t| t.elapsed() > RECHECK_MODULE_EVERY)
        {
            self.refresh();
        }
    }

    /// "function+0xoff [module]", or the bare address if unknown.
    pub fn symbolize(&mut self, addr: u64) -> String {
        if self.checked_at.is_none_or(|t| t.elapsed() > RECHECK_EVERY) {
            self.refresh();
        }
        match self.find(addr) {
            Some(s) => {
                let mut out = format!("{}+{:#x}", s.name, addr - s.addr);
                if let Some(m) = s.module {
                    out.push_str(&format!(" [{m}]"));
                }
                out
            }
            None => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _stext
ffffffff81234560 T vm_normal_page
ffffffff81234700 t zap_pte_range
ffffffff82000000 D some_data
ffffffffc0001000 t badmod_fault\t[pfnwatch_badmod]
ffffffffc0001100 T badmod_mmap\t[pfnwatch_badmod]
";

    fn loaded() -> Kallsyms {
        let dir = std::env::temp_dir().join(format!("pfnwatch-kallsyms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kallsyms");
        std::fs::write(&path, SAMPLE).unwrap();
        std::fs::write(dir.join("modules"), "pfnwatch_badmod 16384 0 - Live 0x0\n").unwrap();
        Kallsyms::with_modules(path, dir.join("modules"))
    }

    #[test]
    fn one_read_fills_the_table_and_the_kernel_addresses() {
        let dir = std::env::temp_dir().join(format!("pfnwatch-kallsyms-p-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kallsyms");
        std::fs::write(
            &path,
            format!("{SAMPLE}ffffffff82000100 r special_mapping_vmops\n"),
        )
        .unwrap();
        std::fs::write(dir.join("modules"), "pfnwatch_badmod 16384 0 - Live 0x0\n").unwrap();
        let mut k = Kallsyms::with_modules(&path, dir.join("modules"));
        let mut addresses = facts::KernelAddresses::default();
        k.preload(|line| addresses.feed(line));
        assert_eq!(addresses.special_mapping_vmops, 0xffff_ffff_8200_0100);
        // The table is in, so a lookup reads nothing more.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(k.symbolize(0xffff_ffff_8123_4568), "vm_normal_page+0x8");
        assert_eq!(
            k.name_at(0xffff_ffff_c000_1100).as_deref(),
            Some("badmod_mmap [pfnwatch_badmod]")
        );
    }

    #[test]
    fn symbols_are_reread_only_when_the_modules_change() {
        let dir = std::env::temp_dir().join(format!("pfnwatch-kallsyms-m-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, modules) = (dir.join("kallsyms"), dir.join("modules"));
        std::fs::write(&path, SAMPLE).unwrap();
        std::fs::write(&modules, "a 1 0 - Live 0x0\n").unwrap();
        let mut k = Kallsyms::with_modules(&path, &modules);
        assert_eq!(k.symbolize(0xffffffff81234570), "vm_normal_page+0x10");
        // A module loads: kallsyms grows, the module list changes.
        let more = format!("{SAMPLE}ffffffffa0002000 t newmod_fault\t[newmod]\n");
        std::fs::write(&path, more).unwrap();
        // A miss with the module list unchanged: nothing is reread.
        k.checked_at = None;
        assert_eq!(k.symbolize(0xffffffffa0002010), "0xffffffffa0002010");
        // Only a use count changed: still nothing to reread.
        std::fs::write(&modules, "a 1 3 - Live 0x0\n").unwrap();
        k.checked_at = None;
        assert_eq!(k.symbolize(0xffffffffa0002010), "0xffffffffa0002010");
        std::fs::write(&modules, "a 1 0 - Live 0x0\nnewmod 1 0 - Live 0x0\n").unwrap();
        k.checked_at = None;
        assert_eq!(
            k.symbolize(0xffffffffa0002010),
            "newmod_fault+0x10 [newmod]"
        );
        // Within the recheck interval a miss reads nothing at all.
        std::fs::remove_file(&modules).unwrap();
        assert_eq!(k.symbolize(0x1000), "0x1000");
        assert_eq!(k.symbols.entries.len(), 6);
    }

    #[test]
    fn a_module_loaded_after_the_table_is_not_read_as_an_older_ones() {
        let dir = std::env::temp_dir().join(format!("pfnwatch-kallsyms-n-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, modules) = (dir.join("kallsyms"), dir.join("modules"));
        std::fs::write(&path, SAMPLE).unwrap();
        std::fs::write(&modules, "pfnwatch_badmod 16384 0 - Live 0x0\n").unwrap();
        let mut k = Kallsyms::with_modules(&path, &modules);
        k.preload(|_| {});
        // newmod loads just past pfnwatch_badmod: within reach of its last
        // symbol, so before the recheck the address reads as badmod's.
        let more = format!("{SAMPLE}ffffffffc0003000 t newmod_fault\t[newmod]\n");
        std::fs::write(&path, more).unwrap();
        std::fs::write(
            &modules,
            "pfnwatch_badmod 16384 0 - Live 0x0\nnewmod 1 0 - Live 0x0\n",
        )
        .unwrap();
        assert_eq!(
            k.symbolize(0xffffffffc0003010),
            "badmod_mmap+0x1f10 [pfnwatch_badmod]"
        );
        // A record naming newmod as its driver rereads at once.
        k.checked_at = k.checked_at.map(|t| t - RECHECK_MODULE_EVERY * 2);
        k.ensure_module("newmod");
        assert_eq!(
            k.symbolize(0xffffffffc0003010),
            "newmod_fault+0x10 [newmod]"
        );
        // A module the table knows reads nothing.
        std::fs::remove_file(&modules).unwrap();
        k.checked_at = k.checked_at.map(|t| t - RECHECK_MODULE_EVERY * 2);
        k.ensure_module("pfnwatch_badmod");
        assert_eq!(k.symbols.entries.len(), 6);
    }

    #[test]
    fn symbolizes_kernel_and_module_text() {
        let mut k = loaded();
        assert_eq!(k.symbolize(0xffffffff81234570), "vm_normal_page+0x10");
        assert_eq!(k.symbolize(0xffffffff81234700), "zap_pte_range+0x0");
        assert_eq!(
            k.symbolize(0xffffffffc0001042),
            "badmod_fault+0x42 [pfnwatch_badmod]"
        );
        // Data symbols are not part of a call path.
        assert_eq!(k.symbolize(0xffffffff82000010), "0xffffffff82000010");
        // Below every symbol.
        assert_eq!(k.symbolize(0x1000), "0x1000");
        assert!(!k.restricted);
        assert_eq!(
            k.name_at(0xffffffffc0001000).as_deref(),
            Some("badmod_fault [pfnwatch_badmod]")
        );
        assert_eq!(
            k.name_at(0xffffffff81234560).as_deref(),
            Some("vm_normal_page")
        );
        assert_eq!(
            k.name_at(0xffffffff81234561),
            None,
            "not a function's start"
        );
        assert_eq!(k.name_at(0), None);
    }

    #[test]
    fn invalid_utf8_in_one_name_loses_only_that_byte() {
        let mut text = b"ffffffff81000000 T _stext\nffffffffc0001000 t bad_".to_vec();
        text.extend_from_slice(&[0xff, b'x', b'\t']);
        text.extend_from_slice(b"[odd]\nffffffffc0002000 t last\t[odd]");
        let table = Kallsyms::parse(&text[..], |_| {}).unwrap();
        assert_eq!(table.entries.len(), 3, "the last line has no newline");
        let names: Vec<&str> = table.entries.iter().map(|e| table.symbol(e).name).collect();
        assert_eq!(names, ["_stext", "bad_\u{fffd}x", "last"]);
        assert_eq!(table.symbol(&table.entries[2]).module, Some("odd"));
    }

    #[test]
    fn zeroed_addresses_mean_restricted() {
        let dir = std::env::temp_dir().join(format!("pfnwatch-kallsyms0-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kallsyms");
        std::fs::write(&path, "0000000000000000 T _stext\n0000000000000000 t foo\n").unwrap();
        let mut k = Kallsyms::with_modules(&path, dir.join("no-modules"));
        assert_eq!(k.symbolize(0xffffffff81000010), "0xffffffff81000010");
        assert!(k.restricted);
    }
}
