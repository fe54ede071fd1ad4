//! Layer 3 (Unix): the socket's receive low-water mark (`SO_RCVLOWAT`, Linux): the least
//! number of buffered bytes that makes the socket readable for `epoll`. The client driver
//! raises it while the server owes it many acknowledgements, so that a wake-up reads several
//! of them (`driver.rs`, "Reading acknowledgements in batches"). Every runtime's TCP
//! transports set it through [`set_receive_low_water`] (tokio's here, smol's and async-std's
//! through [`engine`](crate::engine)). Imports nothing from the crate.
//!
//! The crate's only `unsafe` code: no safe crate exposes the option.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::BorrowedFd;

/// Sets `socket`'s receive low-water mark to `bytes` (at least 1, the default): the socket
/// is reported readable only once that many bytes are buffered, or at the end of the stream
/// or an error. What a TCP transport's
/// [`Transport::set_read_low_water`](crate::engine::Transport::set_read_low_water) calls when
/// it reports its read readiness without reading.
///
/// Linux signals readiness at once when the new mark is already reached (so lowering it
/// wakes a reader whose bytes were held back), and a non-blocking read still returns what is
/// buffered below the mark: the mark holds back wake-ups, not reads. Elsewhere it is an error
/// of kind `Unsupported`, and nothing changes.
pub fn set_receive_low_water(socket: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return {
        let _ = (socket, bytes);
        Err(io::ErrorKind::Unsupported.into())
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    set_rcvlowat(socket, bytes)
}

/// `setsockopt(SO_RCVLOWAT)`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_rcvlowat(socket: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let value = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    let size = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .expect("the size of a c_int fits a socklen_t");
    // SAFETY: `setsockopt` reads `size` bytes from `&value`, a live `c_int` of exactly that
    // size, and writes nothing; the descriptor is borrowed, so it stays open for the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            size,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
