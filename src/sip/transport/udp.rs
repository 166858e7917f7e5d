//! UDP: one receive loop per socket, one message per datagram.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::UdpSocket;

use super::Transports;
use crate::sip::message::{Framing, MAX_MESSAGE_BYTES, Message};
use crate::sip::typed::Transport;

/// Receives datagrams until shutdown.
pub(super) async fn receive_loop(
    transports: Arc<Transports>,
    socket: Arc<UdpSocket>,
    local: std::net::SocketAddr,
) {
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
    loop {
        let (len, source) = tokio::select! {
            _ = transports.shutdown.cancelled() => return,
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
            Err(e) => {
                transports
                    .stats
                    .malformed_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%source, error = %e, "malformed datagram dropped");
            }
        }
    }
}
