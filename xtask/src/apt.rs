//! A private apt root per Debian suite, so kernels from other suites can be resolved
//! and downloaded without touching the host's sources, lists or pinning.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// Used when the host's sources name no Debian archive we can parse.
pub const DEFAULT_ARCHIVE: &str = "http://deb.debian.org/debian";
/// Signs every Debian suite; debootstrap (badmod roots) checks against it too.
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// apt state for one suite under `dir`: `sources.list`, `lists/`, `cache/`.
pub struct AptRoot {
    dir: PathBuf,
    suite: String,
    /// Debian's architecture name: whose packages apt resolves.
    arch: String,
}

impl AptRoot {
    /// Creates (or reuses) the private root for `arch`'s packages (Debian's
    /// name) and (re)writes its one-line sources.list.
    pub fn new(dir: &Path, archive: &str, suite: &str, arch: &str) -> Result<Self> {
        for sub in ["lists/partial", "cache/archives/partial"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        let sources = dir.join("sources.list");
        fs::write(
            &sources,
            format!("deb [signed-by={KEYRING}] {archive} {suite} main\n"),
        )
        .with_context(|| format!("writing {}", sources.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            suite: suite.to_owned(),
            arch: arch.to_owned(),
        })
    }

    /// Options that point every apt path at this root. The host's apt.conf.d is
    /// still read (it may hold the proxy this machine needs), so its extra index
    /// targets (appstream's DEP-11) and translations are switched off here.
    fn options(&self) -> Vec<OsString> {
        let dir = self.dir.display();
        [
            format!("Dir::Etc::SourceList={dir}/sources.list"),
            "Dir::Etc::SourceParts=/nonexistent".to_owned(),
            "Dir::Etc::Parts=/nonexistent".to_owned(),
            format!("Dir::State::Lists={dir}/lists"),
            format!("Dir::Cache={dir}/cache"),
            "Dir::State::status=/dev/null".to_owned(),
            format!("APT::Architecture={}", self.arch),
            // Downloads land in our own directory, so apt need not drop to _apt.
            "APT::Sandbox::User=root".to_owned(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_owned(),
            "Acquire::Languages=none".to_owned(),
        ]
        .into_iter()
        .flat_map(|option| [OsString::from("-o"), OsString::from(option)])
        .collect()
    }

    /// Runs `program <our options> args` in `cwd`; errors name the command without
    /// the option noise, plus the apt root and apt's stderr.
    fn run(&self, program: &str, args: &[&str], cwd: Option<&Path>) -> Result<String> {
        let mut command = Command::new(program);
        command.args(self.options()).args(args);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let short = format!("{program} {}", args.join(" "));
        let output = command
            .output()
            .with_context(|| format!("running {short}"))?;
        if !output.status.success() {
            bail!(
                "`{short}` for {} (apt root {}) failed ({}): {}",
                self.suite,
                self.dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn update(&self) -> Result<()> {
        self.run("apt-get", &["-q", "update"], None)?;
        Ok(())
    }

    /// The candidate version's record of `package`.
    pub fn show(&self, package: &str) -> Result<Record> {
        let text = self.run("apt-cache", &["show", "--no-all-versions", package], None)?;
        parse_record(&text).with_context(|| format!("parsing `apt-cache show {package}`"))
    }

    /// Downloads `package`'s candidate .deb into `into` (emptied first) and returns its path.
    pub fn download(&self, package: &str, into: &Path) -> Result<PathBuf> {
        if into.exists() {
            fs::remove_dir_all(into).with_context(|| format!("clearing {}", into.display()))?;
        }
        fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
        // `apt-get download` writes into the current directory.
        self.run("apt-get", &["-q", "download", package], Some(into))?;
        let prefix = format!("{package}_");
        for entry in fs::read_dir(into).with_context(|| format!("listing {}", into.display()))? {
            let path = entry
                .with_context(|| format!("listing {}", into.display()))?
                .path();
            let name = path.file_name().and_then(|name| name.to_str());
            if name.is_some_and(|name| name.starts_with(&prefix) && name.ends_with(".deb")) {
                return Ok(path);
            }
        }
        bail!(
            "apt-get download {package} left no {prefix}*.deb in {}",
            into.display()
        )
    }
}

/// The fields we use from one `apt-cache show` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub package: String,
    pub version: String,
    /// Hard dependencies (Pre-Depends and Depends); each inner list is a set of
    /// alternatives (`a | b`), holding package names only.
    pub depends: Vec<Vec<String>>,
}

impl Record {
    /// Dependencies that have no alternative, i.e. that apt must install.
    pub fn required(&self) -> impl Iterator<Item = &str> {
        self.depends
            .iter()
            .filter(|alternatives| alternatives.len() == 1)
            .filter_map(|alternatives| alternatives.first().map(String::as_str))
    }
}

/// Parses the first record of `apt-cache show` output (deb822: `Field: value`,
/// continuation lines start with a space, records are separated by a blank line).
pub fn parse_record(text: &str) -> Result<Record> {
    let mut fields: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if fields.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name, value.trim().to_owned()));
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let package = field("Package").context("record has no Package field")?;
    let version = field("Version").context("record has no Version field")?;
    let depends = ["Pre-Depends", "Depends"]
        .into_iter()
        .filter_map(field)
        .flat_map(parse_depends)
        .collect();
    Ok(Record {
        package: package.to_owned(),
        version: version.to_owned(),
        depends,
    })
}

/// `kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120) | linux-initramfs-tool`
/// -> `[[kmod], [linux-base], [initramfs-tools, linux-initramfs-tool]]`.
fn parse_depends(value: &str) -> Vec<Vec<String>> {
    value
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alternative| {
                    // The name ends at a version, architecture or profile qualifier.
                    let name = alternative
                        .trim()
                        .split(|c: char| c.is_whitespace() || "(:[<".contains(c))
                        .next()?;
                    (!name.is_empty()).then(|| name.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .filter(|alternatives| !alternatives.is_empty())
        .collect()
}

/// The Debian archive URI the host already uses (deb822 `.sources` files first,
/// then one-line `sources.list`), so that a local mirror or proxy keeps being used.
pub fn host_archive() -> String {
    let mut sources: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sources"))
        .collect();
    sources.sort();
    let deb822 = sources
        .into_iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .find_map(|text| archive_from_deb822(&text));
    deb822
        .or_else(|| {
            fs::read_to_string("/etc/apt/sources.list")
                .ok()
                .and_then(|text| archive_from_one_line(&text))
        })
        .unwrap_or_else(|| DEFAULT_ARCHIVE.to_owned())
}

/// A suite of the main archive (not `-security`, `-updates`, `-backports`).
fn is_main_suite(suite: &str) -> bool {
    !suite.contains('-') && !suite.contains('/')
}

/// A snapshot archive is frozen in time: it cannot serve the current kernels of
/// trixie or testing, so it is not used even if the host points at one.
fn is_usable_archive(uri: &str) -> bool {
    !uri.contains("snapshot.debian.org")
}

fn archive_from_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .filter(|line| !line.trim_start().starts_with('#'))
                .find_map(|line| {
                    let (field, value) = line.split_once(':')?;
                    field
                        .trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| value.trim())
                })
        };
        let is_deb = field("Types")?.split_whitespace().any(|t| t == "deb");
        let main_suite = field("Suites")?.split_whitespace().any(is_main_suite);
        let enabled = field("Enabled").is_none_or(|value| value != "no");
        if !(is_deb && main_suite && enabled) {
            return None;
        }
        field("URIs")?
            .split_whitespace()
            .find(|uri| is_usable_archive(uri))
            .map(str::to_owned)
    })
}

fn archive_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        // Skip an options block: `[signed-by=... arch=amd64]`, possibly several words.
        if uri.starts_with('[') {
            let mut word = uri;
            while !word.ends_with(']') {
                word = words.next()?;
            }
            uri = words.next()?;
        }
        let suite = words.next()?;
        (is_main_suite(suite) && is_usable_archive(uri)).then(|| uri.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const META_BOOKWORM: &str = "\
Package: linux-image-amd64
Source: linux-signed-amd64 (6.1.176+1)
Version: 6.1.176-1
Installed-Size: 14
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Provides: linux-latest-modules-6.1.0-50-amd64, wireguard-modules (= 1.0.0)
Depends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)
Description: Linux for 64-bit PCs (meta-package)
Section: kernel
Priority: optional
Filename: pool/main/l/linux-signed-amd64/linux-image-amd64_6.1.176-1_amd64.deb

";

    const IMAGE_TESTING: &str = "\
Package: linux-image-7.2.12+deb14-amd64
Source: linux-signed-amd64 (7.2.12+1)
Version: 7.2.12-1
Installed-Size: 9
Pre-Depends: linux-base
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool,
 linux-base-7.2.12+deb14-amd64 (= 7.2.12-1), linux-binary-7.2.12+deb14-amd64 (= 7.2.12-1),
 linux-modules-7.2.12+deb14-amd64 (= 7.2.12-1)
Recommends: apparmor
Description: Linux 7.2 for 64-bit PCs (signed)

Package: linux-image-7.2.12+deb14-amd64
Version: 7.2.11-1
Depends: something-else
";

    #[test]
    fn resolves_the_image_from_the_meta_package() {
        let record = parse_record(META_BOOKWORM).unwrap();
        assert_eq!(record.package, "linux-image-amd64");
        assert_eq!(record.version, "6.1.176-1");
        assert_eq!(
            record.required().collect::<Vec<_>>(),
            ["linux-image-6.1.0-50-amd64"]
        );
    }

    #[test]
    fn parses_continued_depends_with_alternatives_and_only_the_first_record() {
        let record = parse_record(IMAGE_TESTING).unwrap();
        assert_eq!(record.version, "7.2.12-1");
        assert_eq!(
            record.depends,
            [
                vec!["linux-base".to_owned()],
                vec![
                    "dracut".to_owned(),
                    "initramfs-tools".to_owned(),
                    "linux-initramfs-tool".to_owned()
                ],
                vec!["linux-base-7.2.12+deb14-amd64".to_owned()],
                vec!["linux-binary-7.2.12+deb14-amd64".to_owned()],
                vec!["linux-modules-7.2.12+deb14-amd64".to_owned()],
            ]
        );
        assert!(
            record
                .required()
                .any(|dep| dep == "linux-binary-7.2.12+deb14-amd64")
        );
        assert!(!record.required().any(|dep| dep == "dracut"));
    }

    #[test]
    fn strips_architecture_qualifiers() {
        assert_eq!(
            parse_depends("libc6:any (>= 2.36), foo [amd64]"),
            [vec!["libc6".to_owned()], vec!["foo".to_owned()]]
        );
    }

    #[test]
    fn record_without_version_is_an_error() {
        assert!(parse_record("Package: x\n").is_err());
        assert!(parse_record("").is_err());
    }

    #[test]
    fn finds_the_archive_in_deb822_sources() {
        let text = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
";
        assert_eq!(
            archive_from_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        let security_only =
            "Types: deb\nURIs: http://x/debian-security\nSuites: bookworm-security\n";
        assert_eq!(archive_from_deb822(security_only), None);
        let disabled = "Types: deb\nURIs: http://x/debian\nSuites: bookworm\nEnabled: no\n";
        assert_eq!(archive_from_deb822(disabled), None);
        let snapshot = "Types: deb\nURIs: http://snapshot.debian.org/archive/debian/20250520T000000Z\nSuites: bookworm\n";
        assert_eq!(archive_from_deb822(snapshot), None);
    }

    #[test]
    fn finds_the_archive_in_one_line_sources() {
        let text = "\
# deb http://commented.example/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://ftp.example/debian bookworm main
";
        assert_eq!(
            archive_from_one_line(text).as_deref(),
            Some("http://ftp.example/debian")
        );
    }
}
