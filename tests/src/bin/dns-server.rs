//! A DNS server for the integration tests, run inside a network namespace
//! the test made.
//!
//! `dns-server PORT DELAY_MS READY_FILE` listens on UDP and TCP at 127.0.0.1 and ::1
//! and responds to every query after DELAY_MS milliseconds, by the first label
//! of the name (or its suffix):
//!
//! - `nx-*` or names ending in `.search.test`: NXDOMAIN
//! - `servfail-*`: SERVFAIL; `refused-*`: REFUSED
//! - `silent-*`: no response at all
//! - anything else: NOERROR, with one A or AAAA record from the
//!   documentation ranges.
//!
//! It writes its pid to READY_FILE once listening, then runs until
//! killed; the test owns and kills the process.

use std::{
    env,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::ExitCode,
    sync::Arc,
    thread,
    time::Duration,
};

use integration_tests::dns_wire::{self, Question, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL};

/// Upper bound on a TCP message the server reads (RFC 1035 allows 65535).
const MAX_MESSAGE: usize = 65_535;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (Some(port), Some(delay_ms), Some(ready_file)) = (
        args.first().and_then(|text| text.parse::<u16>().ok()),
        args.get(1).and_then(|text| text.parse::<u64>().ok()),
        args.get(2),
    ) else {
        eprintln!("usage: dns-server PORT DELAY_MS READY_FILE");
        return ExitCode::from(2);
    };
    let delay = Duration::from_millis(delay_ms);
    let addresses: [SocketAddr; 2] = [([127, 0, 0, 1], port).into(), (std::net::Ipv6Addr::LOCALHOST, port).into()];
    let mut handles = Vec::new();
    for address in addresses {
        let udp = match UdpSocket::bind(address) {
            Ok(socket) => Arc::new(socket),
            Err(error) => {
                eprintln!("dns-server: binding UDP {address} failed: {error}");
                return ExitCode::FAILURE;
            }
        };
        let tcp = match TcpListener::bind(address) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("dns-server: binding TCP {address} failed: {error}");
                return ExitCode::FAILURE;
            }
        };
        handles.push(thread::spawn(move || serve_udp(&udp, delay)));
        handles.push(thread::spawn(move || serve_tcp(&tcp, delay)));
    }
    if let Err(error) = std::fs::write(ready_file, std::process::id().to_string()) {
        eprintln!("dns-server: writing {ready_file} failed: {error}");
        return ExitCode::FAILURE;
    }
    for handle in handles {
        let _ = handle.join();
    }
    ExitCode::SUCCESS
}

/// Chooses the response code for a name, or `None` to stay silent.
fn rcode_for(question: &Question) -> Option<u8> {
    let name = question.name.as_str();
    if name.starts_with("silent-") {
        None
    } else if name.starts_with("nx-") || name.ends_with(".search.test") {
        Some(RCODE_NXDOMAIN)
    } else if name.starts_with("servfail-") {
        Some(RCODE_SERVFAIL)
    } else if name.starts_with("refused-") {
        Some(RCODE_REFUSED)
    } else {
        Some(RCODE_NOERROR)
    }
}

fn serve_udp(socket: &Arc<UdpSocket>, delay: Duration) {
    let mut buffer = [0u8; 1500];
    loop {
        let Ok((length, client)) = socket.recv_from(&mut buffer) else { continue };
        let Some(question) = dns_wire::parse_question(&buffer[..length]) else { continue };
        let Some(rcode) = rcode_for(&question) else { continue };
        let socket = Arc::clone(socket);
        // One thread per query, so parallel queries (A and AAAA) are each
        // answered after the delay, not one after the other.
        thread::spawn(move || {
            thread::sleep(delay);
            let _ = socket.send_to(&dns_wire::encode_response(&question, rcode), client);
        });
    }
}

fn serve_tcp(listener: &TcpListener, delay: Duration) {
    for stream in listener.incoming().flatten() {
        thread::spawn(move || serve_tcp_connection(stream, delay));
    }
}

fn serve_tcp_connection(mut stream: TcpStream, delay: Duration) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    loop {
        let mut length = [0u8; 2];
        if stream.read_exact(&mut length).is_err() {
            return;
        }
        let length = usize::from(u16::from_be_bytes(length)).min(MAX_MESSAGE);
        let mut message = vec![0u8; length];
        if stream.read_exact(&mut message).is_err() {
            return;
        }
        let Some(question) = dns_wire::parse_question(&message) else { return };
        let Some(rcode) = rcode_for(&question) else { continue };
        thread::sleep(delay);
        let response = dns_wire::encode_response(&question, rcode);
        let mut framed = (response.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}
