//! `slipway-dyno`: the dyno launcher on its own, a small binary that starts faster than the whole
//! `slipway` (which runs the same code as `slipway dyno-exec`). The server uses it when it sits
//! beside the `slipway` binary.

fn main() {
    slipway_runtime::launcher::launcher_main()
}
