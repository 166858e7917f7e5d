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

/// Receives datagrams until shutdown.
pub(super) async fn receive_loop(
    transports: Arc<Transports>,
    socket: Arc<UdpSocket>,
    local: std::net::SocketAddr,
) {
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
    // Made once: a new one each turn would join and leave the token's waiters (a
    // lock each way) for every datagram.
    let shutdown = transports.shutdown.clone().cancelled_owned();
    tokio::pin!(shutdown);
    loop {
        let (len, source) = tokio::select! {
            biased;
            _ = &mut shutdown => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // ICMP errors surface here on some systems; the socket stays usable.
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            },
        };
        if !transports.admits(source) {
            continue;
        }
        let data = &buf[..len];
        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue; // keep-alive
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
