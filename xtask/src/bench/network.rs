//! Loopback network loads: UDP request/response round trips and TCP
//! connect/close. Traffic goes to 127.0.0.1 only, and each loop is bounded
//! both in count and in time.
//!
//! Both ends of a loop run on one CPU, as in the pipe load. Left to the
//! scheduler, they spread over the CPUs or share one from run to run, and
//! the throughput of one configuration then varied by a third between
//! rounds, more than the differences being measured.

use std::{
    io::Read as _,
    net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// How long one reply or one connection may take before the loop fails.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends up to `requests` UDP datagrams to an echo thread, one at a time,
/// each waiting for its reply, and returns round trips per second. Stops
/// early after `time_limit`. Both threads run on `cpu`.
pub fn udp_round_trips(cpu: u32, requests: u32, time_limit: Duration) -> anyhow::Result<f64> {
    let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the UDP echo socket failed")?;
    server.set_read_timeout(Some(Duration::from_millis(100)))?;
    let server_address = server.local_addr()?;
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the UDP client socket failed")?;
    client.connect(server_address)?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    let stop = AtomicBool::new(false);

    thread::scope(|scope| {
        scope.spawn(|| {
            pin_to_cpu(cpu);
            let mut buffer = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                // Timeouts only let the loop see `stop`; the client
                // reports any datagram that goes unanswered.
                if let Ok((length, peer)) = server.recv_from(&mut buffer) {
                    let _ = server.send_to(&buffer[..length], peer);
                }
            }
        });
        let client = scope.spawn(|| {
            pin_to_cpu(cpu);
            udp_client(&client, requests, time_limit)
        });
        let result = join(client);
        stop.store(true, Ordering::Relaxed);
        result
    })
}

/// Returns a load thread's result, or its panic as an error.
fn join(thread: thread::ScopedJoinHandle<'_, anyhow::Result<f64>>) -> anyhow::Result<f64> {
    thread.join().unwrap_or_else(|_| bail!("the load thread panicked"))
}

/// Restricts the calling thread to `cpu`. A failure (a CPU that is
/// offline or outside the process's cpuset) leaves the thread where it
/// was, which costs only precision.
fn pin_to_cpu(cpu: u32) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO and CPU_SET write within
    // it, and sched_setaffinity(0, ...) reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("bench: cannot pin a network load thread to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
}

fn udp_client(client: &UdpSocket, requests: u32, time_limit: Duration) -> anyhow::Result<f64> {
    let started_at = Instant::now();
    let mut reply = [0u8; 64];
    let mut done = 0u32;
    while done < requests && started_at.elapsed() < time_limit {
        let request = done.to_le_bytes();
        client.send(&request).context("sending a UDP request on loopback failed")?;
        let length =
            client.recv(&mut reply).with_context(|| format!("no UDP reply to request {done} within {IO_TIMEOUT:?}"))?;
        if reply[..length] != request {
            bail!("UDP reply to request {done} does not match it");
        }
        done += 1;
    }
    Ok(f64::from(done) / started_at.elapsed().as_secs_f64())
}

/// Opens and closes up to `connections` TCP connections to a listener
/// thread and returns connections per second. Stops early after
/// `time_limit`. Both threads run on `cpu`.
///
/// The listener closes first and the client waits for that close, so the
/// TIME_WAIT state stays on the listener's side and the client does not
/// run out of ephemeral ports.
pub fn tcp_connects(cpu: u32, connections: u32, time_limit: Duration) -> anyhow::Result<f64> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the TCP listener failed")?;
    let address = listener.local_addr()?;
    let stop = AtomicBool::new(false);

    thread::scope(|scope| {
        scope.spawn(|| {
            pin_to_cpu(cpu);
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                drop(stream);
            }
        });
        let client = scope.spawn(|| {
            pin_to_cpu(cpu);
            tcp_client(address, connections, time_limit)
        });
        let result = join(client);
        stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it reads `stop`. If this connect
        // fails, the listener has already stopped.
        let _ = TcpStream::connect_timeout(&address, IO_TIMEOUT);
        result
    })
}

fn tcp_client(address: std::net::SocketAddr, connections: u32, time_limit: Duration) -> anyhow::Result<f64> {
    let started_at = Instant::now();
    let mut done = 0u32;
    let mut byte = [0u8; 1];
    while done < connections && started_at.elapsed() < time_limit {
        let mut stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)
            .with_context(|| format!("TCP connect {done} to {address} failed"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        // Waits for the listener's close (read returns 0).
        match stream.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => bail!("the TCP listener sent data; it is expected only to close"),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("waiting for the listener to close connection {done} failed"));
            }
        }
        done += 1;
    }
    Ok(f64::from(done) / started_at.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_loop_completes() {
        let rate = udp_round_trips(0, 50, Duration::from_secs(5)).unwrap();

        assert!(rate > 0.0);
    }

    #[test]
    fn tcp_loop_completes() {
        let rate = tcp_connects(0, 20, Duration::from_secs(5)).unwrap();

        assert!(rate > 0.0);
    }
}
