//! PID 1 of pfnwatch's test VM; see `pfnwatch_trigger::guest`.

fn main() {
    pfnwatch_trigger::guest::main()
}
