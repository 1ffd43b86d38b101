//! `slipway`: the server (`slipway server`), the git hook it installs (`slipway hook:pre-receive`)
//! and the command-line client (every other command).

mod bench;
mod bench_router;
mod config;
mod hook;
mod proxy;
mod server;
mod stacks;

use std::process::ExitCode;

/// mimalloc: the router and API allocate many small, short-lived buffers per request; glibc's
/// allocator spent about a tenth of the router's CPU on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("server") => server::main(args),
        Some("hook:pre-receive") => hook::main(),
        Some("dyno-exec") => slipway_runtime::launcher::launcher_main(),
        Some("addon-exec") => slipway_addons::process::exec_main(),
        Some("bench:dyno-start") => bench::main(args),
        Some("bench:router-proxy") => bench_router::main(args),
        Some("stacks:install") => stacks::main(args),
        Some("proxy") => proxy::main(args),
        _ => slipway_cli::run(args),
    }
}
