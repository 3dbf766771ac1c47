//! Run one draw in a real forked child process and bring the number back through a
//! pipe: the experiment of lesson `lessons/02-random` that shows why a generator must
//! notice `fork()` (see [`super::WichmannHill`]).
//!
//! The child does only async-signal-safe work (the draw, `write`, `_exit`), so this is
//! sound even when the parent has other threads (as the test harness does).
//!
//! ```
//! use tensor::random::{draw_in_forked_child, NaiveWichmannHill};
//! use tensor::Rng;
//! let mut rng = NaiveWichmannHill::seed(457428938475);
//! for _ in 0..3 { rng.uniform(); }
//! let (_child_pid, child) = draw_in_forked_child(&mut rng).unwrap();
//! assert_eq!(child, rng.uniform());   // the copied state repeats the draw: the bug
//! assert_eq!(child, 0.9559050644103264);
//! ```

use super::Rng;
use crate::error::{Result, TensorError};

fn os_error(what: &str) -> TensorError {
    TensorError::invalid(
        "draw_in_forked_child",
        format!("{what}: {}", std::io::Error::last_os_error()),
    )
}

/// Fork; in the child draw `rng.uniform()` once, send the 8 bytes up a pipe and
/// `_exit`; in the parent read them and reap the child. Returns `(child_pid, draw)`.
/// The parent's `rng` is not advanced.
///
/// `R::uniform` must be async-signal-safe (no allocation, no locks): true of the
/// generators in this module.
pub fn draw_in_forked_child<R: Rng>(rng: &mut R) -> Result<(i32, f64)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for pipe to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os_error("pipe"));
    }
    let [read_fd, write_fd] = fds;
    // SAFETY: the child below only calls async-signal-safe functions before _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        // SAFETY: closing the two descriptors we own.
        unsafe {
            libc::close(read_fd);
            libc::close(write_fd);
        }
        return Err(os_error("fork"));
    }
    if pid == 0 {
        // Child: draw, write, exit without running destructors or atexit handlers.
        let bytes = rng.uniform().to_le_bytes();
        // SAFETY: write from a live 8-byte buffer to our pipe; _exit never returns.
        unsafe {
            let n = libc::write(write_fd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(if n == bytes.len() as isize { 0 } else { 1 });
        }
    }
    // Parent.
    // SAFETY: the parent does not write; closing its copy lets read see EOF.
    unsafe { libc::close(write_fd) };
    let mut buf = [0u8; 8];
    let mut got = 0usize;
    let mut read_err = None;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of buf.
        let n = unsafe { libc::read(read_fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 {
            break;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            read_err = Some(os_error("read"));
            break;
        }
    }
    // SAFETY: closing our read end; waitpid on the child we created.
    let mut status: libc::c_int = 0;
    let waited = unsafe {
        libc::close(read_fd);
        libc::waitpid(pid, &mut status, 0)
    };
    if let Some(e) = read_err {
        return Err(e);
    }
    if waited != pid {
        return Err(os_error("waitpid"));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) || got != buf.len() {
        return Err(TensorError::invalid(
            "draw_in_forked_child",
            format!("child {pid} failed (status {status}, sent {got} of 8 bytes)"),
        ));
    }
    Ok((pid, f64::from_le_bytes(buf)))
}
