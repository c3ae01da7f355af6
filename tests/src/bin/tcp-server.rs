//! TCP listeners for the connect tests, run inside a network namespace the
//! test made.
//!
//! `tcp-server listen ADDRESS READY_FILE`: accepts and closes every
//! connection.
//! `tcp-server backlog ADDRESS READY_FILE`: listens with a backlog of 0,
//! fills its accept queue with one connection of its own and never accepts
//! on its own, so the kernel drops further SYNs. Each SIGUSR1 accepts one
//! queued connection, which makes room for exactly one more.
//!
//! Both write their pid to READY_FILE once listening, then run until
//! killed; the test owns and kills the process.

use std::{
    env, fs,
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    process::ExitCode,
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::Duration,
};

/// SIGUSR1 deliveries not yet served by an accept.
static ACCEPT_REQUESTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigusr1(_signal: libc::c_int) {
    ACCEPT_REQUESTS.fetch_add(1, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (Some(mode), Some(address), Some(ready_file)) =
        (args.first().map(String::as_str), args.get(1).and_then(|text| text.parse::<SocketAddr>().ok()), args.get(2))
    else {
        return usage();
    };
    let listener = match TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("tcp-server: binding {address} failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    match mode {
        "listen" => {
            write_ready(ready_file);
            for stream in listener.incoming() {
                drop(stream);
            }
            ExitCode::SUCCESS
        }
        "backlog" => serve_backlog(&listener, address, ready_file),
        _ => usage(),
    }
}

fn serve_backlog(listener: &TcpListener, address: SocketAddr, ready_file: &str) -> ExitCode {
    // SAFETY: listen on a valid socket; a second listen() only changes the
    // backlog. With a backlog of 0 the accept queue has room for one
    // connection.
    if unsafe { libc::listen(listener.as_raw_fd(), 0) } != 0 {
        eprintln!("tcp-server: listen(0) failed: {}", std::io::Error::last_os_error());
        return ExitCode::FAILURE;
    }
    let filler = match TcpStream::connect(address) {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!("tcp-server: filling the accept queue failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: installs an async-signal-safe handler (one atomic add).
    unsafe { libc::signal(libc::SIGUSR1, on_sigusr1 as *const () as libc::sighandler_t) };
    write_ready(ready_file);
    let mut accepted = Vec::new();
    loop {
        if ACCEPT_REQUESTS.load(Ordering::SeqCst) > 0 {
            ACCEPT_REQUESTS.fetch_sub(1, Ordering::SeqCst);
            // The queue is full, so accept returns at once.
            if let Ok((stream, _)) = listener.accept() {
                accepted.push(stream);
            }
        }
        thread::sleep(Duration::from_millis(5));
        let _ = &filler;
    }
}

fn write_ready(path: &str) {
    if let Err(error) = fs::write(path, std::process::id().to_string()) {
        eprintln!("tcp-server: writing {path} failed: {error}");
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: tcp-server listen|backlog ADDRESS READY_FILE");
    ExitCode::from(2)
}
