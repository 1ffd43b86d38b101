//! The one terminal query without a safe wrapper: the window size.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);

/// Columns and rows of the terminal on `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer, which is valid for the call.
    unsafe { get_winsize(fd.as_raw_fd(), &mut ws) }.ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}
