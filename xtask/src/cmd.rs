//! Running host programs with errors that say what was run and what it said.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, Result, bail};

/// Runs `command` with the terminal as its stdio (for output the user should see).
pub fn run_inherited(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(command));
    }
    Ok(())
}

/// An error naming `command`, its exit status and what it said on stderr,
/// unless it succeeded.
pub fn ensure_success(command: &Command, output: &Output) -> Result<()> {
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `program args...`, for messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where `program` would be found on `PATH`, like `command -v`.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return is_executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_command_its_status_and_its_stderr() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo oops >&2; exit 3"]);
        let output = command.output().unwrap();
        let err = ensure_success(&command, &output).unwrap_err().to_string();
        assert!(
            err.starts_with("sh -c echo oops >&2; exit 3 failed ("),
            "{err}"
        );
        assert!(err.contains("3") && err.ends_with("): oops"), "{err}");
        let mut ok = Command::new("true");
        let output = ok.output().unwrap();
        assert!(ensure_success(&ok, &output).is_ok());
    }
}
