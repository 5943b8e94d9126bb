//! PID 1 of pfnwatch's test VM; see `pfnwatch_testbed::guest`.

fn main() {
    pfnwatch_testbed::guest::main()
}
