//! deploy/kubernetes/pfnwatch-daemonset.yaml as podman sees it: the pod's
//! security context, volumes and limits turned into `podman run` options,
//! so the systemd guest runs the image exactly as a node would. A field
//! this does not know is an error: the manifest cannot grow a setting the
//! test silently leaves out.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize as _;
use serde_norway::Value;

/// What the guest's podman check runs (pfnwatch-testbed's guest/deploy/podman.rs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PodmanRun {
    pub options: Vec<String>,
    pub image: String,
    pub args: Vec<String>,
}

/// The manifest's container and its ConfigMap's files.
#[derive(Debug, Clone)]
pub struct Pod {
    pub run: PodmanRun,
    /// ConfigMap key (file name) to contents.
    pub config: BTreeMap<String, String>,
}

/// Reads the manifest's documents; `config_dir` is where the guest finds
/// the ConfigMap's files (mounted where the DaemonSet mounts the ConfigMap).
pub fn read(manifest: &str, config_dir: &str) -> Result<Pod> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(manifest) {
        docs.push(Value::deserialize(doc).context("parsing the manifest")?);
    }
    let kind = |k: &str| docs.iter().find(|d| d["kind"].as_str() == Some(k));
    let daemonset = kind("DaemonSet").context("no DaemonSet in the manifest")?;
    let config_map = kind("ConfigMap").context("no ConfigMap in the manifest")?;
    let config: BTreeMap<String, String> = config_map["data"]
        .as_mapping()
        .context("the ConfigMap has no data")?
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
        .collect();
    let pod = &daemonset["spec"]["template"]["spec"];
    let containers = pod["containers"]
        .as_sequence()
        .context("the DaemonSet has no containers")?;
    let [container] = containers.as_slice() else {
        bail!(
            "the DaemonSet has {} containers, one expected",
            containers.len()
        );
    };

    let mut options = Vec::new();
    if pod["hostPID"].as_bool() == Some(true) {
        options.push("--pid=host".to_owned());
    }
    // A pod has a network namespace of its own; no CNI here, so it has only
    // loopback, where the guest scrapes it (`podman exec ... wget`).
    if pod["hostNetwork"].as_bool() == Some(true) {
        options.push("--network=host".to_owned());
    } else {
        options.push("--network=none".to_owned());
    }
    security_context(&container["securityContext"], &mut options)?;
    if let Some(memory) = container["resources"]["limits"]["memory"].as_str() {
        options.push(format!("--memory={}", memory_bytes(memory)?));
    }
    volumes(pod, container, config_dir, &mut options)?;
    let image = container["image"]
        .as_str()
        .context("the container names no image")?
        .to_owned();
    let args = container["args"]
        .as_sequence()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if !container["command"].is_null() {
        bail!("the container sets `command`: the image's entrypoint is pfnwatch");
    }
    Ok(Pod {
        run: PodmanRun {
            options,
            image,
            args,
        },
        config,
    })
}

fn security_context(sc: &Value, options: &mut Vec<String>) -> Result<()> {
    let map = sc
        .as_mapping()
        .context("the container has no securityContext")?;
    for (key, value) in map {
        let key = key.as_str().unwrap_or_default();
        match key {
            "runAsUser" => options.push(format!(
                "--user={}",
                value.as_u64().context("runAsUser is not a number")?
            )),
            "privileged" if value.as_bool() == Some(false) => {}
            "allowPrivilegeEscalation" if value.as_bool() == Some(false) => {
                options.push("--security-opt=no-new-privileges".to_owned());
            }
            "readOnlyRootFilesystem" if value.as_bool() == Some(true) => {
                options.push("--read-only".to_owned());
                // Kubernetes mounts no tmpfs of its own on a read-only root;
                // podman would on /tmp, /var/tmp and /run.
                options.push("--read-only-tmpfs=false".to_owned());
            }
            "capabilities" => {
                for cap in value["drop"].as_sequence().into_iter().flatten() {
                    let cap = cap.as_str().unwrap_or_default().to_lowercase();
                    options.push(format!("--cap-drop={cap}"));
                }
                for cap in value["add"].as_sequence().into_iter().flatten() {
                    let cap = cap.as_str().unwrap_or_default();
                    options.push(format!("--cap-add=CAP_{cap}"));
                }
            }
            // podman's default is the runtime's default profile
            // (containers-common's seccomp.json).
            "seccompProfile" => match value["type"].as_str() {
                Some("RuntimeDefault") => {}
                Some("Unconfined") => options.push("--security-opt=seccomp=unconfined".to_owned()),
                other => bail!("seccompProfile type {other:?} is not turned into podman options"),
            },
            _ => bail!("securityContext.{key}: {value:?} is not turned into podman options"),
        }
    }
    Ok(())
}

fn volumes(
    pod: &Value,
    container: &Value,
    config_dir: &str,
    options: &mut Vec<String>,
) -> Result<()> {
    let volumes = pod["volumes"].as_sequence().cloned().unwrap_or_default();
    for mount in container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let name = mount["name"]
            .as_str()
            .context("a volumeMount without a name")?;
        let path = mount["mountPath"]
            .as_str()
            .with_context(|| format!("volumeMount {name} has no mountPath"))?;
        let ro = if mount["readOnly"].as_bool() == Some(true) {
            ":ro"
        } else {
            ""
        };
        let volume = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .with_context(|| format!("volumeMount {name} names no volume"))?;
        if !volume["configMap"].is_null() {
            options.push(format!("--volume={config_dir}:{path}{ro}"));
        } else if let Some(host) = volume["hostPath"]["path"].as_str() {
            options.push(format!("--volume={host}:{path}{ro}"));
        } else if !volume["emptyDir"].is_null() {
            options.push(format!("--tmpfs={path}"));
        } else {
            bail!(
                "volume {name}: only configMap, hostPath and emptyDir are turned into podman options"
            );
        }
    }
    Ok(())
}

/// A Kubernetes quantity (`256Mi`, `1Gi`, `500M`) in bytes.
fn memory_bytes(quantity: &str) -> Result<u64> {
    const UNITS: [(&str, u64); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    let (number, scale) = UNITS
        .iter()
        .find_map(|(suffix, scale)| Some((quantity.strip_suffix(suffix)?, *scale)))
        .unwrap_or((quantity, 1));
    let n: u64 = number
        .parse()
        .with_context(|| format!("memory quantity {quantity:?}"))?;
    Ok(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_daemonset_becomes_its_podman_options() {
        let manifest = include_str!("../../../deploy/kubernetes/pfnwatch-daemonset.yaml");
        let pod = read(manifest, "/opt/x/k8s").unwrap();
        let o = &pod.run.options;
        for want in [
            "--pid=host",
            "--network=none",
            "--user=0",
            "--security-opt=no-new-privileges",
            "--read-only",
            "--cap-drop=all",
            "--cap-add=CAP_BPF",
            "--cap-add=CAP_PERFMON",
            "--cap-add=CAP_SYSLOG",
            "--memory=268435456",
            "--volume=/opt/x/k8s:/etc/pfnwatch:ro",
            "--volume=/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "--tmpfs=/var/lib/pfnwatch",
        ] {
            assert!(o.iter().any(|x| x == want), "{want} missing from {o:?}");
        }
        // Exactly three capabilities, and no seccomp option: the runtime's default.
        assert_eq!(o.iter().filter(|x| x.starts_with("--cap-add")).count(), 3);
        assert!(!o.iter().any(|x| x.contains("seccomp")));
        assert_eq!(pod.run.image, "pfnwatch:0.1.0");
        assert_eq!(pod.run.args[0], "run");
        assert!(pod.config["pfnwatch.toml"].contains("0.0.0.0:19463"));
    }

    #[test]
    fn unknown_security_settings_are_refused() {
        let manifest = include_str!("../../../deploy/kubernetes/pfnwatch-daemonset.yaml").replace(
            "runAsUser: 0",
            "runAsUser: 0\n            procMount: Unmasked",
        );
        let err = read(&manifest, "/k").unwrap_err();
        assert!(format!("{err:#}").contains("procMount"), "{err:#}");
    }

    #[test]
    fn quantities() {
        assert_eq!(memory_bytes("256Mi").unwrap(), 256 << 20);
        assert_eq!(memory_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(memory_bytes("4096").unwrap(), 4096);
        assert!(memory_bytes("lots").is_err());
    }
}
