//! Kernel addresses to "function+0xoff [module]", from /proc/kallsyms.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Symbol {
    addr: u64,
    name: Box<str>,
    /// Shared by every symbol of the module.
    module: Option<Arc<str>>,
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
    symbols: Vec<Symbol>,
    checked_at: Option<Instant>,
    /// Addresses read as 0: kptr_restrict hides them from this process.
    pub restricted: bool,
}

/// How often a miss may look at the module list.
const RECHECK_EVERY: Duration = Duration::from_secs(10);

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
            symbols: Vec::new(),
            checked_at: None,
            restricted: false,
        }
    }

    fn parse(text: &str) -> Vec<Symbol> {
        let mut module_names: Vec<Arc<str>> = Vec::new();
        let mut symbols: Vec<Symbol> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                // Text symbols only: the call path is made of return addresses.
                if !matches!(kind, "t" | "T" | "w" | "W") {
                    return None;
                }
                let module = parts.next().map(|m| {
                    let m = m.trim_matches(|c| c == '[' || c == ']');
                    // A module's symbols come together: the last name is
                    // nearly always the one.
                    match module_names.iter().rev().find(|n| &***n == m) {
                        Some(n) => n.clone(),
                        None => {
                            let n: Arc<str> = Arc::from(m);
                            module_names.push(n.clone());
                            n
                        }
                    }
                });
                Some(Symbol {
                    addr,
                    name: name.into(),
                    module,
                })
            })
            .collect();
        symbols.sort_by_key(|s| s.addr);
        symbols.shrink_to_fit();
        symbols
    }

    /// Rereads the symbols if the module list changed since the last read
    /// (or nothing was read yet).
    fn refresh(&mut self) {
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
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                self.symbols = Kallsyms::parse(&text);
                self.restricted =
                    !self.symbols.is_empty() && self.symbols.iter().all(|s| s.addr == 0);
                self.modules = modules;
            }
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; call paths stay unsymbolised",
                    self.path.display()
                );
            }
        }
    }

    fn find(&self, addr: u64) -> Option<&Symbol> {
        let idx = self.symbols.partition_point(|s| s.addr <= addr);
        let sym = self.symbols.get(idx.checked_sub(1)?)?;
        // Past the last symbol of the core kernel, or in a gap: no answer
        // beats a wrong one. 1 MiB is larger than any kernel function.
        (addr - sym.addr < 1 << 20 && sym.addr != 0).then_some(sym)
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

    /// "function+0xoff [module]", or the bare address if unknown.
    pub fn symbolize(&mut self, addr: u64) -> String {
        let stale = self.checked_at.is_none_or(|t| t.elapsed() > RECHECK_EVERY);
        if self.find(addr).is_none() && stale {
            self.refresh();
        }
        match self.find(addr) {
            Some(s) => {
                let mut out = format!("{}+{:#x}", s.name, addr - s.addr);
                if let Some(m) = s.module.as_deref() {
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
        assert_eq!(k.symbols.len(), 6);
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
