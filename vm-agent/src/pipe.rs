//! The agent's ends of its pipe to sparsebak: stdin and stdout as plain
//! files (the protocol layer does its own buffering; std's stdout would add
//! a line buffer that splits binary replies at every newline byte), with
//! the kernel's pipe buffers enlarged where they are pipes, so the agent can
//! run a few replies ahead of a reader that is busy verifying.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// Pipe buffer asked for: the largest an unprivileged process gets by
/// default (`/proc/sys/fs/pipe-max-size`).
pub const PIPE_BYTES: i32 = 1 << 20;

/// Ask for a `PIPE_BYTES` buffer if `fd` is a pipe; anything else (a
/// socket, a terminal, a refusal) is left as it is.
pub fn enlarge(fd: BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg};
    let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
}

/// Duplicates of stdin and stdout as unbuffered files.
pub fn stdio() -> io::Result<(File, File)> {
    let dup = |fd: BorrowedFd<'_>, what: &str| {
        enlarge(fd);
        fd.try_clone_to_owned()
            .map(File::from)
            .map_err(|e| io::Error::other(format!("cannot use {what}: {e}")))
    };
    Ok((
        dup(io::stdin().as_fd(), "stdin")?,
        dup(io::stdout().as_fd(), "stdout")?,
    ))
}
