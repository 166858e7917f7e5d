//! UDP: one receive loop per socket, one message per datagram.

use std::sync::Arc;

use tokio::net::UdpSocket;

use super::Transports;
use crate::sip::message::{Framing, MAX_MESSAGE_BYTES, Message};
use crate::sip::typed::Transport;

/// The receive buffer asked for on each UDP listener (the kernel caps it at
/// `net.core.rmem_max`). Linux's default, 208 KiB, holds about 300 INVITEs: at 1,000
/// calls/s a few milliseconds without the CPU (another process's turn, the
/// hypervisor's) fills it, and what does not fit is dropped and retransmitted
/// 500 ms later.
pub const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// Asks for [`RECEIVE_BUFFER_BYTES`] of receive buffer on `socket`; a refusal only
/// leaves the default, so it is logged, not fatal.
pub(super) fn grow_receive_buffer(socket: &UdpSocket) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::net::sockopt::set_socket_recv_buffer_size(socket, RECEIVE_BUFFER_BYTES)
    {
        tracing::debug!(error = %e, "UDP receive buffer left at the system's default");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// Datagrams read by one receive call at most. A read that returns fewer has
/// emptied the socket's queue, so the socket is known to be drained without the
/// further read that would only say `EAGAIN` (one system call saved per wake-up).
/// Four, not more: each slot's header is set up for every read (BENCHMARKS.md,
/// session 24: eight cost about 700 instructions more per hand-off call than four).
pub const BATCH: usize = 4;

/// One datagram's slot in the receive buffer: one byte more than the largest
/// message, so that a longer datagram is seen as too large, not cut to fit.
const SLOT: usize = MAX_MESSAGE_BYTES + 1;

/// One datagram read: its length in its slot, and its source (`None` if it was not
/// an IP address, which an IP socket never reports; such a datagram is skipped).
type Received = (usize, Option<std::net::SocketAddr>);

/// Receives datagrams until shutdown.
pub(super) async fn receive_loop(
    transports: Arc<Transports>,
    socket: Arc<UdpSocket>,
    local: std::net::SocketAddr,
) {
    let mut buf = vec![0u8; SLOT * BATCH];
    let mut got = [(0, None); BATCH];
    // Made once: a new one each turn would join and leave the token's waiters (a
    // lock each way) for every datagram.
    let shutdown = transports.shutdown.clone().cancelled_owned();
    tokio::pin!(shutdown);
    loop {
        let count = tokio::select! {
            biased;
            _ = &mut shutdown => return,
            r = receive_batch(&socket, &mut buf, &mut got) => match r {
                Ok(count) => count,
                // ICMP errors surface here on some systems; the socket stays usable.
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            },
        };
        for (slot, &(len, source)) in buf.chunks(SLOT).zip(&got[..count]) {
            if let Some(source) = source {
                handle(&transports, &slot[..len], source, local).await;
            }
        }
    }
}

/// Handles one datagram: keep-alives are skipped, the rest parsed and delivered, or
/// refused.
async fn handle(
    transports: &Arc<Transports>,
    data: &[u8],
    source: std::net::SocketAddr,
    local: std::net::SocketAddr,
) {
    if !transports.admits(source) {
        return;
    }
    if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return; // keep-alive
    }
    match Message::parse(data, Framing::Datagram) {
        Ok(message) => {
            transports
                .deliver(message, Transport::Udp, source, local)
                .await
        }
        Err(e) => transports.refuse(data, &e, source).await,
    }
}

/// Waits until `socket` is readable and reads up to [`BATCH`] datagrams with one
/// `recvmmsg`, datagram `i` into `buf`'s `i`th [`SLOT`], its length and source into
/// `got[i]`; returns how many. A read of fewer than [`BATCH`] emptied the queue, so
/// the socket's readiness is cleared there and then (as an `EAGAIN` would clear it):
/// a datagram that arrives after the read raises a new readiness event.
#[cfg(target_os = "linux")]
async fn receive_batch(
    socket: &UdpSocket,
    buf: &mut [u8],
    got: &mut [Received; BATCH],
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    loop {
        socket.readable().await?;
        let mut count = 0;
        let read = socket.try_io(tokio::io::Interest::READABLE, || {
            count = recvmmsg(socket.as_raw_fd(), buf, got)?;
            if count < BATCH {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match read {
            Ok(()) => return Ok(count),
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return Err(e),
            // A short read: the datagrams it got, the readiness cleared.
            Err(_) if count > 0 => return Ok(count),
            // Nothing was there after all: wait for the next readiness.
            Err(_) => {}
        }
    }
}

/// One non-blocking `recvmmsg` into `buf`'s slots.
#[cfg(target_os = "linux")]
fn recvmmsg(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    got: &mut [Received; BATCH],
) -> std::io::Result<usize> {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage};
    let mut slots = buf.chunks_mut(SLOT);
    let mut slices: [[std::io::IoSliceMut; 1]; BATCH] =
        std::array::from_fn(|_| [std::io::IoSliceMut::new(slots.next().unwrap_or_default())]);
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let read = nix::sys::socket::recvmmsg(
        fd,
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    let mut count = 0;
    for (message, entry) in read.zip(got.iter_mut()) {
        *entry = (message.bytes, message.address.and_then(|a| socket_addr(&a)));
        count += 1;
    }
    Ok(count)
}

/// A datagram's source as std's address (`None` for a family other than IP, which
/// an IP socket never reports).
#[cfg(target_os = "linux")]
fn socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<std::net::SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(std::net::SocketAddrV4::from(*v4).into());
    }
    a.as_sockaddr_in6()
        .map(|v6| std::net::SocketAddrV6::from(*v6).into())
}

/// Elsewhere, one datagram per read, into the first slot.
#[cfg(not(target_os = "linux"))]
async fn receive_batch(
    socket: &UdpSocket,
    buf: &mut [u8],
    got: &mut [Received; BATCH],
) -> std::io::Result<usize> {
    let (len, source) = socket.recv_from(&mut buf[..SLOT]).await?;
    got[0] = (len, Some(source));
    Ok(1)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn read_sysctl(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Datagrams queued before a read come [`BATCH`] at a time, each in its own
    /// slot with its length and source; a read of fewer than [`BATCH`] clears the
    /// socket's readiness, and a datagram sent after that still wakes the next read.
    #[tokio::test]
    async fn datagrams_are_read_in_batches_and_a_later_one_still_wakes_the_reader() {
        for (bind, peer) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let Ok(socket) = UdpSocket::bind(bind).await else {
                continue; // no IPv6 on this machine
            };
            let to = socket.local_addr().unwrap();
            let sender = std::net::UdpSocket::bind(peer).unwrap();
            let from = sender.local_addr().unwrap();
            for i in 0..BATCH + 2 {
                sender
                    .send_to(format!("datagram {i}").as_bytes(), to)
                    .unwrap();
            }
            let mut buf = vec![0u8; SLOT * BATCH];
            let mut got = [(0, None); BATCH];
            let (mut read, mut counts) = (Vec::new(), Vec::new());
            while read.len() < BATCH + 2 {
                let batch = receive_batch(&socket, &mut buf, &mut got);
                let count = tokio::time::timeout(std::time::Duration::from_secs(2), batch)
                    .await
                    .expect("queued datagrams are read without a new one")
                    .unwrap();
                counts.push(count);
                for (slot, &(len, source)) in buf.chunks(SLOT).zip(&got[..count]) {
                    assert_eq!(source, Some(from));
                    read.push(String::from_utf8(slot[..len].to_vec()).unwrap());
                }
            }
            let sent: Vec<String> = (0..BATCH + 2).map(|i| format!("datagram {i}")).collect();
            assert_eq!(read, sent);
            assert_eq!(
                counts,
                [BATCH, 2],
                "a loopback send is queued when it returns"
            );
            // The queue is empty: the next read waits, and a datagram wakes it.
            let count = {
                let later = receive_batch(&socket, &mut buf, &mut got);
                tokio::pin!(later);
                let wait = std::time::Duration::from_millis(50);
                let waited = tokio::time::timeout(wait, &mut later).await;
                assert!(waited.is_err(), "a read of an empty socket waits");
                sender.send_to(b"later", to).unwrap();
                tokio::time::timeout(std::time::Duration::from_secs(2), later)
                    .await
                    .expect("the datagram wakes the reader")
                    .unwrap()
            };
            assert_eq!((count, got[0]), (1, (5, Some(from))));
            assert_eq!(&buf[..5], b"later");
        }
    }

    /// The listener's buffer grows past the system's default as far as the system
    /// lets it (Linux reports twice what it grants).
    #[tokio::test]
    async fn listeners_get_a_larger_receive_buffer() {
        let plain = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let grown = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        grow_receive_buffer(&grown);
        let size = |s: &UdpSocket| rustix::net::sockopt::socket_recv_buffer_size(s).unwrap();
        let granted = RECEIVE_BUFFER_BYTES.min(read_sysctl("rmem_max"));
        assert!(
            size(&grown) >= 2 * granted,
            "{} < 2 × {granted}",
            size(&grown)
        );
        if read_sysctl("rmem_max") > read_sysctl("rmem_default") {
            assert!(size(&grown) > size(&plain));
        }
    }
}
