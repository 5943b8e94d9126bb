//! Kernel addresses to "function+0xoff [module]", from /proc/kallsyms.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Symbol {
    addr: u64,
    name: String,
    module: Option<String>,
}

/// The text symbols of the running kernel and its modules.
#[derive(Debug)]
pub struct Kallsyms {
    path: PathBuf,
    symbols: Vec<Symbol>,
    loaded_at: Option<Instant>,
    /// Addresses read as 0: kptr_restrict hides them from this process.
    pub restricted: bool,
}

/// How often a miss may trigger a re-read (modules come and go).
const RELOAD_EVERY: Duration = Duration::from_secs(10);

impl Kallsyms {
    pub fn new(path: impl AsRef<Path>) -> Kallsyms {
        Kallsyms {
            path: path.as_ref().to_path_buf(),
            symbols: Vec::new(),
            loaded_at: None,
            restricted: false,
        }
    }

    fn parse(text: &str) -> Vec<Symbol> {
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
                let module = parts
                    .next()
                    .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_owned());
                Some(Symbol {
                    addr,
                    name: name.to_owned(),
                    module,
                })
            })
            .collect();
        symbols.sort_by_key(|s| s.addr);
        symbols
    }

    fn reload(&mut self) {
        self.loaded_at = Some(Instant::now());
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                self.symbols = Kallsyms::parse(&text);
                self.restricted =
                    !self.symbols.is_empty() && self.symbols.iter().all(|s| s.addr == 0);
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
        let stale = self.loaded_at.is_none_or(|t| t.elapsed() > RELOAD_EVERY);
        if self.find(addr).is_none() && stale {
            self.reload();
        }
        match self.find(addr) {
            Some(s) => {
                let mut out = format!("{}+{:#x}", s.name, addr - s.addr);
                if let Some(m) = &s.module {
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
        Kallsyms::new(path)
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
        let mut k = Kallsyms::new(path);
        assert_eq!(k.symbolize(0xffffffff81000010), "0xffffffff81000010");
        assert!(k.restricted);
    }
}
