//! Booting a kernel and initramfs under qemu and streaming its serial console.
//!
//! Mode-agnostic: the caller picks `pfnwatch.mode=...` and decides, line by line,
//! what the console means (tests, demo, later benchmarks).

use pfnwatch_testbed_protocol::mode::Mode;
use std::{
    fs,
    io::{BufRead as _, BufReader, LineWriter, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{arch::Arch, cmd::describe, protocol::BootEnd};

/// How long qemu gets to exit after the guest said it is done (verdict or panic).
const GRACE: Duration = Duration::from_secs(30);

/// One boot.
#[derive(Debug, Clone)]
pub struct Boot {
    pub arch: Arch,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// What the guest does (`pfnwatch.mode=` on the kernel command line).
    pub mode: Mode,
    /// More `key=value` kernel parameters for the guest.
    pub params: Vec<String>,
    pub timeout: Duration,
    /// Where the whole console goes (with `\r` removed).
    pub log: PathBuf,
}

/// What the caller makes of a console line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// The guest is done; qemu should exit by itself within [`GRACE`].
    Finishing,
}

#[derive(Debug)]
pub struct BootResult {
    pub end: BootEnd,
    pub elapsed: Duration,
    /// qemu's own complaints (bad option, missing file), for failure reports.
    pub qemu_stderr: String,
}

/// The legacy pmem region (E820_TYPE_PRAM): nd_e820 makes it /dev/pmem0,
/// DAX-capable with struct pages, no NVDIMM or ndctl needed.
pub const PMEM: &str = "memmap=128M!896M";
/// PCI slots of the devices the correct-driver scenarios use (the guest
/// finds them by vendor and device id).
const EDU_SLOT: u8 = 0x10;
const BOCHS_SLOT: u8 = 0x11;

/// The qemu command line. TCG only: this machine's /dev/kvm cannot run stock
/// kernels. x86's `-vga std` and arm64's VGA at slot 2 both provide PCI
/// 00:02.0, whose BAR the tests mmap.
///
/// x86-64: 1152 MiB, of which the kernel takes 128 MiB at 896 MiB as a
/// legacy persistent-memory region (`memmap=` below): the guest keeps the
/// 1 GiB of RAM it always had, and the region stays clear of the top of
/// RAM, where SeaBIOS puts the ACPI tables (a PRAM range over them would
/// win the e820 merge and hide them). arm64 has no such region (memmap= is
/// x86's): its guests run no DAX scenario.
///
/// One vCPU: with two, multi-threaded TCG let a vCPU run a stale translation
/// of a BPF trampoline the other had just re-patched (text_poke_bp's int3),
/// and 7.2 oopsed in about one boot of four ("Oops: int3" in
/// bpf_trampoline_*, under khugepaged). Real CPUs serialise that patching.
pub fn command(arch: Arch, kernel: &Path, initrd: &Path, mode: Mode, params: &[String]) -> Command {
    let mut command = Command::new(arch.qemu());
    command
        .args(arch.machine())
        .args(["-m", "1152", "-smp", "1", "-nographic", "-no-reboot"]);
    match arch {
        Arch::X86_64 => command.args(["-vga", "std"]),
        Arch::Arm64 => command.args(["-device", "VGA,addr=0x2"]),
    };
    command
        // No NIC: the guest needs no network, and the NIC's iPXE ROM costs ~1.7 s a boot.
        .args(["-nic", "none"])
        // A 1 GiB BAR (ivshmem's BAR 2, 1 GiB-aligned, no struct pages in the
        // guest) for the test module's pud-sized pfn map. The host backs only
        // the pages the guest touches.
        .args(["-object", "memory-backend-ram,id=pudbar,size=1G,share=on"])
        .args(["-device", "ivshmem-plain,memdev=pudbar"])
        // After the devices above, so their PCI addresses stay as they were.
        // qemu's edu device: a 1 MiB 32-bit MMIO BAR for uio_pci_generic.
        .args(["-device", &format!("edu,addr={EDU_SLOT:#x}")])
        // A second bochs display (1234:1111, display class) for DRM's bochs
        // driver: the guest keeps the driver off 00:02.0, whose BAR the
        // pcibar scenarios and the test module map (a bound driver claims
        // the BAR, and IO_STRICT_DEVMEM then refuses its resource0 mmap).
        .args(["-device", &format!("bochs-display,addr={BOCHS_SLOT:#x}")])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append");
    let console = format!("console={} panic=-1 quiet loglevel=4", arch.console());
    let pmem = (arch == Arch::X86_64).then_some(PMEM);
    command.arg(
        std::iter::once(console.as_str())
            .chain(pmem)
            .chain(std::iter::once(mode.param().as_str()))
            .chain(params.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
    );
    command
}

/// Boots and feeds every console line to `on_line` until qemu exits, the
/// timeout passes, or the guest finished but qemu lingers past [`GRACE`].
pub fn run(boot: &Boot, on_line: impl FnMut(&str) -> Next) -> Result<BootResult> {
    run_with(boot, &[], on_line)
}

/// [`run`] with more qemu arguments (the benchmark's `-icount`).
pub fn run_with(
    boot: &Boot,
    extra: &[&str],
    mut on_line: impl FnMut(&str) -> Next,
) -> Result<BootResult> {
    if let Some(dir) = boot.log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log_file =
        fs::File::create(&boot.log).with_context(|| format!("creating {}", boot.log.display()))?;
    let mut log = LineWriter::new(log_file);

    let mut command = command(
        boot.arch,
        &boot.kernel,
        &boot.initrd,
        boot.mode,
        &boot.params,
    );
    command
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = Qemu(
        command
            .spawn()
            .with_context(|| format!("running {}", describe(&command)))?,
    );
    let stdout = child.0.stdout.take().context("qemu has no stdout pipe")?;
    let mut stderr = child.0.stderr.take().context("qemu has no stderr pipe")?;

    // Reading happens on threads so the timeout can be enforced here.
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut buf = Vec::new();
        // Bytes, not `lines()`: a console can carry invalid UTF-8 (early boot noise).
        while stdout.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            if lines_tx
                .send(clean(&String::from_utf8_lossy(&buf)))
                .is_err()
            {
                break;
            }
            buf.clear();
        }
    });
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        // Whatever qemu managed to say is still worth reporting if this fails.
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut deadline = started + boot.timeout;
    let mut finishing = false;
    let end = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                writeln!(log, "{line}")
                    .with_context(|| format!("writing {}", boot.log.display()))?;
                if on_line(&line) == Next::Finishing && !finishing {
                    finishing = true;
                    deadline = deadline.min(Instant::now() + GRACE);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.0.wait().context("waiting for qemu")?;
                break BootEnd::Exited(status.to_string());
            }
            Err(RecvTimeoutError::Timeout) => {
                child.kill()?;
                break if finishing {
                    BootEnd::Lingered
                } else {
                    BootEnd::TimedOut {
                        secs: boot.timeout.as_secs(),
                    }
                };
            }
        }
    };
    let elapsed = started.elapsed();
    // After a kill, keep what was already on its way to the log.
    for line in lines.iter() {
        writeln!(log, "{line}").with_context(|| format!("writing {}", boot.log.display()))?;
    }
    let _ = reader.join();
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    if !qemu_stderr.trim().is_empty() {
        writeln!(log, "--- qemu stderr ---\n{}", qemu_stderr.trim_end())
            .with_context(|| format!("writing {}", boot.log.display()))?;
    }
    Ok(BootResult {
        end,
        elapsed,
        qemu_stderr,
    })
}

/// A console line as text: without `\r`, the newline, or terminal control
/// sequences (SeaBIOS resets the terminal and turns off line wrap, which would
/// garble the user's terminal in `demo`). Colour (SGR) sequences stay.
pub fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    let mut sequence = String::from("\x1b[");
                    // Parameters and intermediates, then one final byte in '@'..='~'.
                    for next in chars.by_ref() {
                        sequence.push(next);
                        if ('@'..='~').contains(&next) {
                            break;
                        }
                    }
                    if sequence.ends_with('m') {
                        out.push_str(&sequence);
                    }
                }
                // Character-set designation: ESC ( B and friends.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                // Two-byte sequences such as ESC c (full reset).
                _ => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The running qemu; killed if we leave early (an error, a panic) so no VM is
/// left spinning a core after xtask is gone.
struct Qemu(Child);

impl Qemu {
    fn kill(&mut self) -> Result<()> {
        // Already gone is fine: it may have exited between the timeout and the kill.
        let _ = self.0.kill();
        self.0.wait().context("waiting for the killed qemu")?;
        Ok(())
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.kill();
        }
    }
}

/// Boots with the terminal attached (for `vm-shell`): qemu's `Ctrl-A x` quits.
pub fn interactive(arch: Arch, kernel: &Path, initrd: &Path, mode: Mode) -> Result<()> {
    let mut command = command(arch, kernel, initrd, mode, &[]);
    crate::cmd::run_inherited(&mut command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_seabios_resets_but_keeps_colours() {
        assert_eq!(
            clean("\x1bc\x1b[?7l\x1b[2Jpfnwatch-vmtest: PASS a\r\n"),
            "pfnwatch-vmtest: PASS a"
        );
        assert_eq!(
            clean("Booting from ROM..\x1bc\x1b[?7l\x1b[2JRun /init\r\n"),
            "Booting from ROM..Run /init"
        );
        assert_eq!(
            clean("\x1b[32m INFO\x1b[0m pfnwatch: attached\r\n"),
            "\x1b[32m INFO\x1b[0m pfnwatch: attached"
        );
        assert_eq!(clean("\x1b(Bplain\x07\ttab"), "plain\ttab");
        assert_eq!(clean("cut off \x1b["), "cut off ");
    }

    #[test]
    fn command_line_carries_the_mode_and_the_vga_device() {
        let command = command(
            Arch::X86_64,
            Path::new("/k"),
            Path::new("/i"),
            Mode::Bench,
            &["pfnwatch.bench_runs=2".to_owned()],
        );
        let args: Vec<String> = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let after = |flag: &str| {
            let at = args.iter().position(|arg| arg == flag);
            at.and_then(|at| args.get(at + 1)).cloned()
        };
        assert_eq!(after("-accel").as_deref(), Some("tcg"));
        assert_eq!(after("-vga").as_deref(), Some("std"));
        assert_eq!(after("-kernel").as_deref(), Some("/k"));
        assert_eq!(after("-initrd").as_deref(), Some("/i"));
        let append = after("-append").unwrap_or_default();
        assert!(append.contains("console=ttyS0"), "{append}");
        assert!(append.contains("panic=-1"), "{append}");
        assert!(
            append.ends_with("pfnwatch.mode=bench pfnwatch.bench_runs=2"),
            "{append}"
        );
        assert!(append.contains(" memmap=128M!896M "), "{append}");
        assert_eq!(after("-m").as_deref(), Some("1152"));
        let devices: Vec<&String> = args
            .iter()
            .zip(args.iter().skip(1))
            .filter(|(flag, _)| *flag == "-device")
            .map(|(_, device)| device)
            .collect();
        assert_eq!(
            devices,
            [
                "ivshmem-plain,memdev=pudbar",
                "edu,addr=0x10",
                "bochs-display,addr=0x11"
            ]
        );
    }
}
