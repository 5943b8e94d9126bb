//! What is attached while a workload runs: nothing, the empty fexit
//! program, `pfnwatch run` (default rules, the lookups on demand) alone or
//! while this process holds a device mapping (so they are attached),
//! `pfnwatch trace --all`, or the naive peer (every call through a ring
//! buffer, drained and counted here).

use super::super::readings::{self, Prog};
use crate::guest::daemon::scrape;
use crate::guest::watch::lines_of;
use crate::scenario::PCI_BAR;
use crate::sys::{self, Map};
use anyhow::{Context, Result, bail};
use aya::maps::{PerCpuArray, RingBuf};
use aya::programs::FExit;
use aya::{Btf, Ebpf, EbpfLoader};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Under TCG pfnwatch takes seconds to load; leave room.
const READY: Duration = Duration::from_secs(90);
const STOP: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    None,
    Empty,
    Run,
    /// `pfnwatch run` while one page of the VGA BAR is mapped elsewhere.
    RunMapped,
    Trace,
    /// pfnwatch-ebpf's naive.bpf.c: a record per vm_normal_page call.
    Naive,
    /// Debian's bpftrace counting vm_normal_page calls in a map by class.
    Bpftrace,
}

impl Config {
    pub const ALL: [Config; 7] = [
        Config::None,
        Config::Empty,
        Config::Run,
        Config::RunMapped,
        Config::Trace,
        Config::Naive,
        Config::Bpftrace,
    ];

    /// Whether this guest can run it: bpftrace only where xtask could put
    /// it in the initramfs.
    pub fn available(self) -> bool {
        self != Config::Bpftrace || std::path::Path::new(&bpftrace_path("bpftrace")).exists()
    }

    pub fn name(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::Empty => "empty",
            Config::Run => "run",
            Config::RunMapped => "run-mapped",
            Config::Trace => "trace",
            Config::Naive => "naive",
            Config::Bpftrace => "bpftrace",
        }
    }
}

pub enum Attached {
    None,
    /// The object stays loaded (and the program attached) while held.
    Empty {
        _ebpf: Ebpf,
        prog: Prog,
    },
    Pfnwatch(Pfnwatch),
    Naive(Naive),
    Bpftrace(Bpftrace),
}

/// bpftrace running its one-liner, and the program it attached.
pub struct Bpftrace {
    child: Child,
    prog: Prog,
    _out: Receiver<String>,
}

/// The naive peer: its object (the program attached while held) and the
/// thread draining its ring buffer.
pub struct Naive {
    ebpf: Ebpf,
    prog: Prog,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<u64>>,
}

/// A pfnwatch child and the programs it loaded.
pub struct Pfnwatch {
    child: Child,
    pub progs: Vec<Prog>,
    /// trace's output reader: records counted, the summary kept.
    output: Option<JoinHandle<TraceOutput>>,
    /// run's log, read so the pipe never fills.
    _log: Option<Receiver<String>>,
    /// run-mapped's device mapping, held while attached.
    _device: Option<Map>,
}

/// What trace printed after its ready line.
#[derive(Debug, Default)]
pub struct TraceOutput {
    pub records: u64,
    /// The kernel's lost count, from the summary trace prints when it stops.
    pub lost: Option<u64>,
}

impl Attached {
    pub fn start(config: Config, btf: &Btf) -> Result<Attached> {
        match config {
            Config::None => Ok(Attached::None),
            Config::Empty => empty(btf),
            Config::Run => Pfnwatch::run(btf).map(Attached::Pfnwatch),
            Config::RunMapped => {
                let mut run = Pfnwatch::run(btf)?;
                let device = Map::file(&sys::open_rw(PCI_BAR, 0)?, 0, 1, false)?;
                lookups_attached()?;
                run._device = Some(device);
                Ok(Attached::Pfnwatch(run))
            }
            Config::Trace => Pfnwatch::trace(btf).map(Attached::Pfnwatch),
            Config::Naive => Naive::start(btf).map(Attached::Naive),
            Config::Bpftrace => Bpftrace::start().map(Attached::Bpftrace),
        }
    }

    pub fn progs(&self) -> Vec<Prog> {
        match self {
            Attached::None => Vec::new(),
            Attached::Empty { prog, .. } => vec![prog.clone()],
            Attached::Pfnwatch(p) => p.progs.clone(),
            Attached::Naive(n) => vec![n.prog.clone()],
            Attached::Bpftrace(b) => vec![b.prog.clone()],
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Attached::Pfnwatch(p) => Some(p.child.id()),
            _ => None,
        }
    }

    /// The lines `pfnwatch run` logged since the last call that contain
    /// `text` (the rest are dropped).
    pub fn logged(&self, text: &str) -> Vec<String> {
        match self {
            Attached::Pfnwatch(Pfnwatch {
                _log: Some(log), ..
            }) => log.try_iter().filter(|l| l.contains(text)).collect(),
            _ => Vec::new(),
        }
    }

    /// Detaches; for trace, what it printed; for the naive peer, what it
    /// drained and lost.
    pub fn stop(self) -> Result<Option<TraceOutput>> {
        match self {
            Attached::None | Attached::Empty { .. } => Ok(None),
            Attached::Pfnwatch(p) => p.stop(),
            Attached::Naive(n) => n.stop().map(Some),
            Attached::Bpftrace(b) => b.stop().map(|()| None),
        }
    }
}

fn empty(btf: &Btf) -> Result<Attached> {
    let (ebpf, prog) = fexit_on_vm_normal_page(
        pfnwatch_ebpf::BENCH_OBJECT,
        pfnwatch_ebpf::BENCH_EMPTY_PROGRAM,
        btf,
    )?;
    Ok(Attached::Empty { _ebpf: ebpf, prog })
}

/// Loads `object` and attaches its fexit program `name` to vm_normal_page
/// (the empty yardstick and the naive peer alike); the object holds it
/// attached.
fn fexit_on_vm_normal_page(object: &[u8], name: &str, btf: &Btf) -> Result<(Ebpf, Prog)> {
    let mut ebpf = EbpfLoader::new()
        .btf(Some(btf))
        .load(object)
        .with_context(|| format!("loading the object of {name}"))?;
    let program: &mut FExit = ebpf
        .program_mut(name)
        .with_context(|| format!("the object has no {name}"))?
        .try_into()?;
    program
        .load("vm_normal_page", btf)
        .with_context(|| format!("loading {name}"))?;
    program
        .attach()
        .with_context(|| format!("attaching {name}"))?;
    let id = program
        .info()
        .with_context(|| format!("{name}'s info"))?
        .id();
    let prog = Prog {
        id,
        name: name.to_owned(),
        function: "vm_normal_page".to_owned(),
    };
    Ok((ebpf, prog))
}

impl Naive {
    fn start(btf: &Btf) -> Result<Naive> {
        let (mut ebpf, prog) = fexit_on_vm_normal_page(
            pfnwatch_ebpf::NAIVE_OBJECT,
            pfnwatch_ebpf::NAIVE_PROGRAM,
            btf,
        )?;
        let ring = ebpf
            .take_map(pfnwatch_ebpf::NAIVE_RING)
            .context("the naive object has no ring buffer")?;
        let mut ring = RingBuf::try_from(ring).context("the naive peer's ring buffer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        // What a naive tool's reader does at the least: wake on the ring
        // buffer, take every record (counted, not classified).
        let reader = std::thread::spawn(move || {
            let mut records = 0u64;
            loop {
                while ring.next().is_some() {
                    records += 1;
                }
                if stopping.load(Ordering::Relaxed) {
                    return records;
                }
                let mut fd = libc::pollfd {
                    fd: ring.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the call's duration.
                unsafe { libc::poll(&mut fd, 1, 20) };
            }
        });
        Ok(Naive {
            ebpf,
            prog,
            stop,
            reader: Some(reader),
        })
    }

    fn stop(mut self) -> Result<TraceOutput> {
        self.stop.store(true, Ordering::Relaxed);
        let records = match self.reader.take().map(JoinHandle::join) {
            Some(Ok(n)) => n,
            _ => bail!("the naive peer's reader panicked"),
        };
        let lost: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.ebpf
                .map(pfnwatch_ebpf::NAIVE_LOST)
                .context("the naive object has no loss counter")?,
        )?;
        let lost = lost.get(&0, 0).context("reading the naive peer's losses")?;
        Ok(TraceOutput {
            records,
            lost: Some(lost.iter().sum()),
        })
    }
}

/// The path of `name` in the bench's bpftrace directory.
fn bpftrace_path(name: &str) -> String {
    format!("{}/{name}", pfnwatch_testbed_protocol::bench::BPFTRACE_DIR)
}

/// "The same counting with a map per class": every vm_normal_page call
/// counted by pfn mapping, mixed map, COW and page found, in the kernel.
const BPFTRACE_PROGRAM: &str = "fexit:vmlinux:vm_normal_page { \
     @calls[(args.vma->vm_flags & 0x400) != 0, (args.vma->vm_flags & 0x10000000) != 0, \
     (args.vma->vm_flags & 0x28) == 0x20, retval != 0] = count(); }";

impl Bpftrace {
    fn start() -> Result<Bpftrace> {
        let links_before = links();
        let dir = pfnwatch_testbed_protocol::bench::BPFTRACE_DIR;
        let mut child = Command::new(bpftrace_path("ld.so"))
            .args(["--library-path", &format!("{dir}/lib")])
            .arg(bpftrace_path("bpftrace"))
            .args(["-e", BPFTRACE_PROGRAM])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting bpftrace")?;
        let stdout = child.stdout.take().context("bpftrace's stdout")?;
        let stderr = child.stderr.take().context("bpftrace's stderr")?;
        let out = lines_of(stdout);
        let err = lines_of(stderr);
        // Attached once its program is in the kernel with a new link.
        let deadline = Instant::now() + READY;
        let prog = loop {
            if let Some(status) = child.try_wait()? {
                let said: Vec<String> = err.try_iter().chain(out.try_iter()).collect();
                bail!("bpftrace exited {status}: {}", said.join(" | "));
            }
            // Its program is the one a new link holds (bpftrace loads
            // and drops feature probes of its own while it starts).
            let attached = links()
                .into_iter()
                .find(|(id, _)| !links_before.contains_key(id));
            if let Some((_, prog_id)) = attached {
                let name = readings::loaded()?
                    .remove(&prog_id)
                    .map(|l| l.name)
                    .unwrap_or_default();
                break Prog {
                    id: prog_id,
                    name,
                    function: "vm_normal_page".to_owned(),
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("bpftrace did not attach within {READY:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(Bpftrace {
            child,
            prog,
            _out: out,
        })
    }

    /// SIGINT, as an operator stops it: it prints its map and exits.
    fn stop(mut self) -> Result<()> {
        // SAFETY: signalling our own child.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) } != 0 {
            return Err(std::io::Error::last_os_error()).context("signalling bpftrace");
        }
        let deadline = Instant::now() + STOP;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("bpftrace exited {status}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("bpftrace did not exit within {STOP:?} of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The kernel's BPF links: id to the program each holds.
/// A link being made or torn down this instant (EAGAIN: bpftrace probes
/// features with links of its own while it starts) is left out.
fn links() -> BTreeMap<u32, u32> {
    aya::programs::loaded_links()
        .filter_map(|l| l.ok().map(|l| (l.id(), l.program_id())))
        .collect()
}

/// A phase that fails half-way must not leave the reader spinning.
impl Drop for Naive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Pfnwatch {
    /// `pfnwatch run` as the package starts it, with the guest's absent
    /// /etc/pfnwatch/pfnwatch.toml: the defaults (every rule, 256 KiB ring
    /// buffer, call paths in records).
    fn run(btf: &Btf) -> Result<Pfnwatch> {
        let before = readings::loaded_ids()?;
        let mut child = Command::new("/bin/pfnwatch")
            .arg("run")
            .stderr(Stdio::piped())
            .spawn()
            .context("starting pfnwatch run")?;
        let stderr = child.stderr.take().context("pfnwatch run's stderr")?;
        let log = lines_of(stderr);
        let deadline = Instant::now() + READY;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok(line) if line.contains("pfnwatch running") => break,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    bail!("pfnwatch run did not start: {}", seen.join(" | "));
                }
            }
        }
        let mut pfnwatch = Pfnwatch {
            progs: Vec::new(),
            child,
            output: None,
            _log: Some(log),
            _device: None,
        };
        pfnwatch.progs = new_programs(&before, btf)?;
        Ok(pfnwatch)
    }

    /// `pfnwatch trace --all --format json --lookups always`, its output read and counted
    /// (not parsed) as `> /dev/null` would take it.
    fn trace(btf: &Btf) -> Result<Pfnwatch> {
        let before = readings::loaded_ids()?;
        let mut child = Command::new("/bin/pfnwatch")
            // What sending every record costs, from the first fork: no
            // wait for the lookups to attach on demand.
            .args(["trace", "--all", "--format", "json", "--lookups", "always"])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting pfnwatch trace")?;
        let stdout = child.stdout.take().context("pfnwatch trace's stdout")?;
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let output = std::thread::spawn(move || {
            let mut out = TraceOutput::default();
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            if let Some(first) = lines.next() {
                let _ = ready_tx.send(first);
            }
            for line in lines {
                if line.starts_with(r#"{"type":"record""#) {
                    out.records += 1;
                } else if line.starts_with(r#"{"type":"summary""#) {
                    out.lost = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v.get("lost")?.as_u64());
                }
            }
            out
        });
        match ready.recv_timeout(READY) {
            Ok(line) if line.starts_with(r#"{"type":"ready""#) => {}
            Ok(line) => {
                let _ = child.kill();
                bail!("pfnwatch trace printed {line:?} before it was ready");
            }
            Err(_) => {
                let _ = child.kill();
                bail!("pfnwatch trace was not ready within {READY:?}");
            }
        }
        let mut pfnwatch = Pfnwatch {
            progs: Vec::new(),
            child,
            output: Some(output),
            _log: None,
            _device: None,
        };
        pfnwatch.progs = new_programs(&before, btf)?;
        Ok(pfnwatch)
    }

    fn stop(mut self) -> Result<Option<TraceOutput>> {
        // SAFETY: signalling our own child.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) } != 0 {
            return Err(std::io::Error::last_os_error()).context("signalling pfnwatch");
        }
        let deadline = Instant::now() + STOP;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("pfnwatch did not exit within {STOP:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            bail!("pfnwatch exited {status}");
        }
        match self.output.take() {
            Some(reader) => match reader.join() {
                Ok(out) => Ok(Some(out)),
                Err(_) => bail!("the trace output reader panicked"),
            },
            None => Ok(None),
        }
    }
}

/// A phase that fails half-way must not leave pfnwatch attached to the
/// next one's workloads.
impl Drop for Pfnwatch {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `pfnwatch run` (on its default port) has the page-table
/// lookups attached; how long after the device mapping's mmap that was.
pub fn lookups_attached() -> Result<Duration> {
    let deadline = Instant::now() + READY;
    loop {
        if let Ok(s) = scrape(19463)
            && s.get("pfnwatch_lookups_attached", &[]) == Some(1.0)
        {
            let delay = s
                .get("pfnwatch_lookups_attach_delay_seconds", &[])
                .filter(|d| d.is_finite())
                .unwrap_or(0.0);
            return Ok(Duration::from_secs_f64(delay));
        }
        if Instant::now() > deadline {
            bail!("pfnwatch run did not attach its lookups within {READY:?} of a device mapping");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The programs that appeared since `before`, named.
fn new_programs(before: &std::collections::BTreeSet<u32>, btf: &Btf) -> Result<Vec<Prog>> {
    let new: BTreeMap<u32, String> = readings::loaded()?
        .into_iter()
        .filter(|(id, _)| !before.contains(id))
        .map(|(id, l)| (id, l.name))
        .collect();
    Ok(readings::name_pfnwatch_programs(&new, |f| {
        pfnwatch::kernel::facts::has_function(btf, f)
    }))
}
