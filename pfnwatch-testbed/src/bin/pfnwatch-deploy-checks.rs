//! The checks of `cargo xtask deploy-test`, run by a systemd unit inside
//! the guest; see `pfnwatch_testbed::guest::deploy`.

fn main() -> std::process::ExitCode {
    pfnwatch_testbed::guest::deploy::main()
}
