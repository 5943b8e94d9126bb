//! Which driver stands behind a mapped file: the module that owns its file
//! operations (what the kernel's own bad-page report names), else the PCI
//! driver bound to a sysfs BAR file's device, else the character device's
//! name in /proc/devices (built-in drivers such as /dev/mem's).

use crate::kernel::decode::MappedFile;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug)]
pub struct Devices {
    proc_devices: PathBuf,
    sys_pci: PathBuf,
    chars: Option<HashMap<u32, String>>,
}

impl Devices {
    pub fn new() -> Devices {
        Devices::at("/proc/devices", "/sys/bus/pci/devices")
    }

    pub fn at(proc_devices: impl Into<PathBuf>, sys_pci: impl Into<PathBuf>) -> Devices {
        Devices {
            proc_devices: proc_devices.into(),
            sys_pci: sys_pci.into(),
            chars: None,
        }
    }

    /// The driver behind `file`, if one can be named.
    pub fn driver(&mut self, file: &MappedFile) -> Option<String> {
        if let Some(module) = &file.module {
            return Some(module.clone());
        }
        if is_pci_address(&file.parent) {
            let link = std::fs::read_link(self.sys_pci.join(&file.parent).join("driver")).ok()?;
            return link.file_name().map(|n| n.to_string_lossy().into_owned());
        }
        if file.rdev.major == 0 && file.rdev.minor == 0 {
            return None;
        }
        if self.chars.is_none() {
            let text = std::fs::read_to_string(&self.proc_devices).unwrap_or_default();
            self.chars = Some(char_devices(&text));
        }
        self.chars.as_ref()?.get(&file.rdev.major).cloned()
    }
}

impl Default for Devices {
    fn default() -> Self {
        Devices::new()
    }
}

/// "Character devices:" section of /proc/devices: major -> name.
fn char_devices(text: &str) -> HashMap<u32, String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Character devices"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let (major, name) = l.trim().split_once(' ')?;
            Some((major.parse().ok()?, name.trim().to_owned()))
        })
        .collect()
}

/// "0000:00:02.0": domain:bus:device.function.
fn is_pci_address(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && name
            .bytes()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::decode::DevNum;

    fn file(name: &str, parent: &str, major: u32, minor: u32) -> MappedFile {
        MappedFile {
            name: name.into(),
            parent: parent.into(),
            ino: 1,
            rdev: DevNum { major, minor },
            sdev: DevNum { major: 0, minor: 5 },
            module: None,
            mmap_fn: 0,
        }
    }

    #[test]
    fn names_char_devices_and_pci_drivers() {
        let dir = std::env::temp_dir().join(format!("pfnwatch-dev-{}", std::process::id()));
        let pci = dir.join("pci");
        std::fs::create_dir_all(pci.join("0000:00:02.0")).unwrap();
        std::fs::create_dir_all(dir.join("drivers/bochs-drm")).unwrap();
        let _ = std::fs::remove_file(pci.join("0000:00:02.0/driver"));
        std::os::unix::fs::symlink(
            dir.join("drivers/bochs-drm"),
            pci.join("0000:00:02.0/driver"),
        )
        .unwrap();
        std::fs::write(
            dir.join("devices"),
            "Character devices:\n  1 mem\n 10 misc\n226 drm\n\nBlock devices:\n  8 sd\n",
        )
        .unwrap();
        let mut d = Devices::at(dir.join("devices"), &pci);
        assert_eq!(d.driver(&file("mem", "/", 1, 1)).as_deref(), Some("mem"));
        assert_eq!(
            d.driver(&file("pfnw-pgoff", "/", 10, 120)).as_deref(),
            Some("misc")
        );
        assert_eq!(
            d.driver(&file("resource0", "0000:00:02.0", 0, 0))
                .as_deref(),
            Some("bochs-drm")
        );
        assert_eq!(d.driver(&file("resource0", "0000:00:03.0", 0, 0)), None);
        assert_eq!(
            d.driver(&file("x", "/", 8, 0)),
            None,
            "block majors are not char"
        );
        assert_eq!(d.driver(&file("anon", "/", 0, 0)), None);
        // A misc device's file operations are its module's: that names it.
        let owned = MappedFile {
            module: Some("pfnwatch_badmod".into()),
            ..file("pfnw-pgoff", "/", 10, 120)
        };
        assert_eq!(d.driver(&owned).as_deref(), Some("pfnwatch_badmod"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pci_addresses_are_recognised() {
        assert!(is_pci_address("0000:00:02.0"));
        assert!(is_pci_address("0000:3b:00.1"));
        assert!(!is_pci_address("0000:00:02"));
        assert!(!is_pci_address("/"));
        assert!(!is_pci_address("0000x00:02.0"));
    }
}
