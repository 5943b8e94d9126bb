//! podman's default seccomp profile (containers-common's seccomp.json) and
//! bpf(2). containers-common 0.50 (bookworm) allows bpf(2) and
//! perf_event_open(2) only to CAP_SYS_ADMIN holders and returns EPERM to
//! everyone else, CAP_BPF or not; 0.62 (trixie) and later allow them to
//! CAP_BPF holders too. Where the suite's profile is the old kind, the
//! guest checks that it does refuse pfnwatch, and runs the container under
//! a profile derived from it the way the newer ones are written.

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

/// The calls pfnwatch needs, and the capability that should allow each.
const CALLS: [(&str, &str); 2] = [("bpf", "CAP_BPF"), ("perf_event_open", "CAP_PERFMON")];

/// `Some(derived profile)` when `profile` refuses bpf(2) to CAP_BPF holders,
/// `None` when it allows it already.
pub fn derive(profile: &str) -> Result<Option<String>> {
    let mut p: Value = serde_json::from_str(profile).context("parsing seccomp.json")?;
    let syscalls = p["syscalls"]
        .as_array()
        .context("seccomp.json has no syscalls")?
        .clone();
    let allowed = |name: &str, cap: &str| {
        syscalls.iter().any(|s| {
            names(s).contains(&name)
                && s["action"] == "SCMP_ACT_ALLOW"
                && caps(&s["includes"]).contains(&cap)
        })
    };
    let missing: Vec<(&str, &str)> = CALLS
        .into_iter()
        .filter(|(name, cap)| !allowed(name, cap))
        .collect();
    if !missing.iter().any(|(name, _)| *name == "bpf") {
        return Ok(None);
    }
    let mut kept = Vec::new();
    let mut split = Vec::new();
    for mut s in syscalls {
        // A refusal (ERRNO) that applies unless CAP_SYS_ADMIN: take the
        // calls out of it, each into a copy that also spares their
        // capability (two rules with different actions that both apply to
        // one call would conflict).
        let excluded = !caps(&s["excludes"]).is_empty();
        let moved: Vec<(&str, &str)> = missing
            .iter()
            .copied()
            .filter(|(name, _)| {
                excluded && s["action"] != "SCMP_ACT_ALLOW" && names(&s).contains(name)
            })
            .collect();
        for (name, cap) in &moved {
            let mut copy = s.clone();
            copy["names"] = json!([name]);
            if let Some(list) = copy["excludes"]["caps"].as_array_mut() {
                list.push(json!(cap));
            }
            split.push(copy);
        }
        if !moved.is_empty() {
            let rest: Vec<Value> = names(&s)
                .into_iter()
                .filter(|n| !moved.iter().any(|(m, _)| m == n))
                .map(|n| json!(n))
                .collect();
            s["names"] = Value::Array(rest);
        }
        if !names(&s).is_empty() {
            kept.push(s);
        }
    }
    kept.extend(split);
    for (name, cap) in missing {
        kept.push(json!({
            "names": [name],
            "action": "SCMP_ACT_ALLOW",
            "args": [],
            "comment": format!("pfnwatch: {name} for {cap} holders, as containers-common 0.62 allows"),
            "includes": {"caps": [cap]},
            "excludes": {},
        }));
    }
    p["syscalls"] = Value::Array(kept);
    Ok(Some(serde_json::to_string_pretty(&p)?))
}

fn names(s: &Value) -> Vec<&str> {
    s["names"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn caps(set: &Value) -> Vec<&str> {
    set["caps"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of containers-common 0.50's rules for bpf(2).
    const OLD: &str = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["read","write"],"action":"SCMP_ACT_ALLOW","args":[],"includes":{},"excludes":{}},
        {"names":["bpf","clone","perf_event_open"],"action":"SCMP_ACT_ALLOW","args":[],"includes":{"caps":["CAP_SYS_ADMIN"]},"excludes":{}},
        {"names":["bpf","perf_event_open","mount"],"action":"SCMP_ACT_ERRNO","args":[],"errnoRet":1,"includes":{},"excludes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;

    #[test]
    fn an_old_profile_gets_bpf_for_cap_bpf() {
        let derived = derive(OLD).unwrap().unwrap();
        let p: Value = serde_json::from_str(&derived).unwrap();
        let rules = p["syscalls"].as_array().unwrap();
        let with = |name: &str| -> Vec<&Value> {
            rules.iter().filter(|s| names(s).contains(&name)).collect()
        };
        // mount keeps its refusal unchanged.
        let mount = with("mount");
        assert_eq!(mount.len(), 1);
        assert_eq!(caps(&mount[0]["excludes"]), ["CAP_SYS_ADMIN"]);
        // bpf: allowed to CAP_SYS_ADMIN and CAP_BPF, refused unless either.
        let bpf = with("bpf");
        assert!(
            bpf.iter()
                .any(|s| s["action"] == "SCMP_ACT_ALLOW" && caps(&s["includes"]) == ["CAP_BPF"])
        );
        assert!(bpf.iter().any(|s| s["action"] == "SCMP_ACT_ERRNO"
            && caps(&s["excludes"]) == ["CAP_SYS_ADMIN", "CAP_BPF"]));
        let perf = with("perf_event_open");
        assert!(perf.iter().any(|s| s["action"] == "SCMP_ACT_ALLOW" && caps(&s["includes"]) == ["CAP_PERFMON"]));
        // A derived profile is not derived again.
        assert!(derive(&derived).unwrap().is_none());
    }

    #[test]
    fn a_new_profile_is_left_alone() {
        let new = OLD.replace(
            r#""includes":{"caps":["CAP_SYS_ADMIN"]}"#,
            r#""includes":{"caps":["CAP_SYS_ADMIN","CAP_BPF"]}"#,
        );
        assert!(derive(&new).unwrap().is_none());
    }
}
