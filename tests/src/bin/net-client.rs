//! Network clients for the DNS and connect tests. Each times its own
//! operations and appends one line per operation to OUT:
//! `TARGET OUTCOME ELAPSED_NS`, then a final `done` line.
//!
//! `net-client dns udp|tcp SERVER TIMEOUT_MS OUT NAME/QTYPE...`: one query
//! per name, in order, over one socket; OUTCOME is the RCODE or `timeout`.
//! `net-client resolve OUT COUNT NAME`: COUNT calls of getaddrinfo (glibc,
//! through `ToSocketAddrs`); OUTCOME is `ok` or `failed`.
//! `net-client connect OUT SYN_COUNT ADDRESS...`: one blocking connect per
//! address, with TCP_SYNCNT set to SYN_COUNT (0 keeps the system default);
//! OUTCOME is `established`, `refused`, `timeout` or `error`.
//! `net-client nonblocking OUT WAIT_MS ADDRESS`: a non-blocking connect,
//! polled for up to WAIT_MS milliseconds, then closed; OUTCOME is
//! `established` or `abandoned`.
//! `net-client raw-udp OUT SERVER HEX...`: sends each hex string as one
//! datagram and waits for nothing; OUTCOME is `sent`.

use std::{
    env, fs,
    io::{Read as _, Write as _},
    mem,
    net::{SocketAddr, TcpStream, ToSocketAddrs as _, UdpSocket},
    process::ExitCode,
    time::{Duration, Instant},
};

use integration_tests::dns_wire;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let text: Vec<&str> = args.iter().map(String::as_str).collect();
    let lines = match text.as_slice() {
        ["dns", transport, server, timeout_ms, out, queries @ ..] => {
            let (Ok(server), Ok(timeout_ms)) = (server.parse(), timeout_ms.parse()) else { return usage() };
            let result = dns_queries(transport, server, Duration::from_millis(timeout_ms), queries);
            (out.to_string(), result)
        }
        ["resolve", out, count, name] => {
            let Ok(count) = count.parse() else { return usage() };
            (out.to_string(), Ok(resolve(name, count)))
        }
        ["connect", out, syn_count, addresses @ ..] => {
            let Ok(syn_count) = syn_count.parse() else { return usage() };
            let lines = addresses
                .iter()
                .map(|address| match address.parse() {
                    Ok(address) => connect_once(address, syn_count),
                    Err(_) => format!("{address} error 0"),
                })
                .collect();
            (out.to_string(), Ok(lines))
        }
        ["raw-udp", out, server, payloads @ ..] => {
            let Ok(server) = server.parse() else { return usage() };
            (out.to_string(), send_raw(server, payloads))
        }
        ["nonblocking", out, wait_ms, address] => {
            let (Ok(wait_ms), Ok(address)) = (wait_ms.parse(), address.parse()) else { return usage() };
            (out.to_string(), Ok(vec![connect_nonblocking(address, Duration::from_millis(wait_ms))]))
        }
        _ => return usage(),
    };
    let (out, result) = lines;
    let mut lines = match result {
        Ok(lines) => lines,
        Err(error) => vec![format!("error {error}")],
    };
    lines.push("done".to_owned());
    match fs::write(&out, lines.join("\n") + "\n") {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("net-client: writing {out} failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn dns_queries(
    transport: &str,
    server: SocketAddr,
    timeout: Duration,
    queries: &[&str],
) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    // Transaction ids start from the pid so runs differ.
    let mut transaction_id = std::process::id() as u16;
    match transport {
        "udp" => {
            let bind: SocketAddr =
                if server.is_ipv4() { ([127, 0, 0, 1], 0).into() } else { (std::net::Ipv6Addr::LOCALHOST, 0).into() };
            let socket = UdpSocket::bind(bind)?;
            socket.connect(server)?;
            for query in queries {
                transaction_id = transaction_id.wrapping_add(1);
                let (name, qtype) = split_query(query);
                let started = Instant::now();
                socket.send(&dns_wire::encode_query(transaction_id, name, qtype))?;
                let outcome = receive_udp(&socket, transaction_id, timeout, started);
                lines.push(format!("{query} {outcome} {}", started.elapsed().as_nanos()));
            }
        }
        "tcp" => {
            let mut stream = TcpStream::connect(server)?;
            stream.set_read_timeout(Some(timeout))?;
            for query in queries {
                transaction_id = transaction_id.wrapping_add(1);
                let (name, qtype) = split_query(query);
                let message = dns_wire::encode_query(transaction_id, name, qtype);
                let mut framed = (message.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&message);
                let started = Instant::now();
                stream.write_all(&framed)?;
                let mut length = [0u8; 2];
                stream.read_exact(&mut length)?;
                let mut response = vec![0u8; usize::from(u16::from_be_bytes(length))];
                stream.read_exact(&mut response)?;
                let elapsed = started.elapsed().as_nanos();
                let outcome = match dns_wire::parse_response(&response) {
                    Some((id, rcode)) if id == transaction_id => rcode.to_string(),
                    _ => "invalid".to_owned(),
                };
                lines.push(format!("{query} {outcome} {elapsed}"));
            }
        }
        _ => return Err(std::io::Error::other(format!("invalid transport {transport}: expected udp or tcp"))),
    }
    Ok(lines)
}

/// Splits `name/QTYPE` (QTYPE `A` or `AAAA`); a bare name is queried for A.
fn split_query(query: &str) -> (&str, u16) {
    match query.rsplit_once('/') {
        Some((name, "AAAA")) => (name, dns_wire::TYPE_AAAA),
        Some((name, _)) => (name, dns_wire::TYPE_A),
        None => (query, dns_wire::TYPE_A),
    }
}

fn receive_udp(socket: &UdpSocket, transaction_id: u16, timeout: Duration, started: Instant) -> String {
    let mut buffer = [0u8; 1500];
    loop {
        let Some(left) = timeout.checked_sub(started.elapsed()).filter(|left| !left.is_zero()) else {
            return "timeout".to_owned();
        };
        if socket.set_read_timeout(Some(left)).is_err() {
            return "timeout".to_owned();
        }
        match socket.recv(&mut buffer) {
            Ok(length) => {
                if let Some((id, rcode)) = dns_wire::parse_response(&buffer[..length])
                    && id == transaction_id
                {
                    return rcode.to_string();
                }
            }
            Err(_) => return "timeout".to_owned(),
        }
    }
}

fn resolve(name: &str, count: u32) -> Vec<String> {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            let outcome = match (name, 80).to_socket_addrs() {
                Ok(addresses) if addresses.len() > 0 => "ok",
                _ => "failed",
            };
            format!("{name} {outcome} {}", started.elapsed().as_nanos())
        })
        .collect()
}

fn socket_for(address: SocketAddr) -> std::io::Result<i32> {
    let family = if address.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket has no memory-safety preconditions.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 { Err(std::io::Error::last_os_error()) } else { Ok(fd) }
}

/// Converts the address to a `sockaddr_storage` and its length.
fn raw_address(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeros is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let length = match address {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for
            // sockaddr_in.
            let raw = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            raw.sin_family = libc::AF_INET as libc::sa_family_t;
            raw.sin_port = v4.port().to_be();
            raw.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let raw = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            raw.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            raw.sin6_port = v6.port().to_be();
            raw.sin6_addr.s6_addr = v6.ip().octets();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, length as libc::socklen_t)
}

fn connect_once(address: SocketAddr, syn_count: i32) -> String {
    let fd = match socket_for(address) {
        Ok(fd) => fd,
        Err(error) => return format!("{address} error:{error} 0"),
    };
    if syn_count > 0 {
        // SAFETY: setsockopt reads an int from a valid pointer.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_SYNCNT,
                (&syn_count as *const i32).cast(),
                mem::size_of::<i32>() as libc::socklen_t,
            )
        };
    }
    let (storage, length) = raw_address(address);
    let started = Instant::now();
    // SAFETY: connect reads `length` bytes of a valid sockaddr.
    let result = unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), length) };
    let elapsed = started.elapsed().as_nanos();
    let outcome = if result == 0 {
        "established".to_owned()
    } else {
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ECONNREFUSED) => "refused".to_owned(),
            Some(libc::ETIMEDOUT) => "timeout".to_owned(),
            other => format!("error:{}", other.unwrap_or(0)),
        }
    };
    // SAFETY: closes the socket this function opened.
    unsafe { libc::close(fd) };
    format!("{address} {outcome} {elapsed}")
}

fn connect_nonblocking(address: SocketAddr, wait: Duration) -> String {
    let fd = match socket_for(address) {
        Ok(fd) => fd,
        Err(error) => return format!("{address} error:{error} 0"),
    };
    // SAFETY: fcntl on a socket this function owns.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let (storage, length) = raw_address(address);
    let started = Instant::now();
    // SAFETY: connect reads `length` bytes of a valid sockaddr.
    unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), length) };
    let mut poll = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    // SAFETY: poll on one valid pollfd.
    let ready = unsafe { libc::poll(&mut poll, 1, wait.as_millis() as i32) };
    let mut error: i32 = 0;
    let mut length = mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt writes an int into a valid pointer.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut error as *mut i32).cast(), &mut length) };
    // SAFETY: closes the socket this function opened.
    unsafe { libc::close(fd) };
    let outcome = match (ready, error) {
        (0, _) => "abandoned".to_owned(),
        (_, 0) => "established".to_owned(),
        (_, error) => format!("error:{error}"),
    };
    format!("{address} {outcome} {}", started.elapsed().as_nanos())
}

fn send_raw(server: SocketAddr, payloads: &[&str]) -> std::io::Result<Vec<String>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let mut lines = Vec::new();
    for payload in payloads {
        let bytes: Vec<u8> = (0..payload.len() / 2)
            .filter_map(|index| u8::from_str_radix(&payload[index * 2..index * 2 + 2], 16).ok())
            .collect();
        socket.send_to(&bytes, server)?;
        lines.push(format!("{payload} sent 0"));
    }
    Ok(lines)
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: net-client dns udp|tcp SERVER TIMEOUT_MS OUT NAME/QTYPE... | resolve OUT COUNT NAME | \
         connect OUT SYN_COUNT ADDRESS... | nonblocking OUT WAIT_MS ADDRESS | raw-udp OUT SERVER HEX..."
    );
    ExitCode::from(2)
}
