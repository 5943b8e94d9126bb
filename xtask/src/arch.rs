//! The guest architectures: what differs between booting a Debian x86-64
//! kernel and an arm64 one under qemu (TCG on this x86-64 machine either way).

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Arch {
    /// x86-64: Debian's amd64 kernels, qemu-system-x86_64 (the host's own)
    #[default]
    #[value(name = "x86_64", alias = "amd64")]
    X86_64,
    /// arm64: Debian's arm64 kernels, qemu-system-aarch64 `-M virt`, the
    /// guest programs cross-built in a Debian testing root (cross.rs)
    #[value(alias = "aarch64")]
    Arm64,
}

impl Arch {
    /// Debian's name (`linux-image-<it>`, `APT::Architecture`).
    pub const fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    pub const fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The GNU triplet of Debian's cross toolchains.
    pub const fn gnu_triplet(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
            Arch::Arm64 => "aarch64-linux-gnu",
        }
    }

    pub const fn qemu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    /// The Debian package holding [`Arch::qemu`].
    pub const fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Arm64 => "qemu-system-arm",
        }
    }

    /// The serial console the guest writes its protocol lines to.
    pub const fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            // virt's PL011 UART.
            Arch::Arm64 => "ttyAMA0",
        }
    }

    /// The machine and CPU: x86 TCG's `max`; arm64's virt board with
    /// `max` (LPA2 and the rest of ARMv9 that qemu emulates), and the
    /// cheap implementation-defined pointer authentication instead of
    /// QARMA, which costs TCG several times more per signed return.
    pub const fn machine(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["-accel", "tcg", "-cpu", "max"],
            Arch::Arm64 => &["-accel", "tcg", "-M", "virt", "-cpu", "max,pauth-impdef=on"],
        }
    }

    /// The host's own architecture needs no cross-building.
    pub const fn is_host(self) -> bool {
        matches!(self, Arch::X86_64)
    }

    /// The name used in paths, labels and output.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
