//! A client of rtpengine's ng control protocol: `<cookie> <bencoded dict>` over UDP,
//! to one or more rtpengines. A new call goes to an rtpengine picked by weight among
//! those answering; a request that times out goes to the next; a call stays on the
//! rtpengine that anchored it. rtpengines marked down are pinged every
//! [`PING_EVERY`] and taken back when they answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::bencode::{Value, dict};

/// How often rtpengines marked down are pinged.
pub const PING_EVERY: Duration = Duration::from_secs(2);

/// Why an ng request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NgError {
    /// No answer within the timeout (after one retransmission).
    #[error("rtpengine {0} did not answer")]
    Timeout(SocketAddr),
    /// rtpengine answered `result: error`.
    #[error("rtpengine refused: {0}")]
    Refused(String),
    /// The answer is not an ng answer.
    #[error("rtpengine answered something unreadable")]
    BadAnswer,
    /// The socket failed.
    #[error("{0}")]
    Io(String),
    /// No rtpengine answered.
    #[error("no rtpengine answered")]
    Unavailable,
}

/// One rtpengine.
#[derive(Debug)]
struct Instance {
    /// Its ng address.
    addr: SocketAddr,
    /// Its share of new calls, relative to the others.
    weight: u32,
    /// False once a request to it timed out, until it answers a ping.
    up: AtomicBool,
}

/// Answers awaited, by cookie.
type Pending = Mutex<HashMap<String, oneshot::Sender<Value>>>;

/// The ng client, shared by every call.
#[derive(Debug)]
pub struct Rtpengine {
    instances: Vec<Instance>,
    socket: Arc<UdpSocket>,
    pending: Arc<Pending>,
    timeout: Duration,
    /// Requests that timed out, since start.
    timeouts: AtomicU64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Rtpengine {
    /// A client of the rtpengines at `(address, weight)`, waiting `timeout` for each
    /// answer. Starts the task that reads answers and the one that pings rtpengines
    /// marked down.
    pub async fn start(
        instances: &[(SocketAddr, u32)],
        timeout: Duration,
    ) -> std::io::Result<Arc<Rtpengine>> {
        let bind = match instances.first() {
            Some((a, _)) if a.is_ipv6() => "[::]:0",
            _ => "0.0.0.0:0",
        };
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        let pending: Arc<Pending> = Arc::default();
        let reader = tokio::spawn(read_answers(socket.clone(), pending.clone()));
        let engine = Arc::new_cyclic(|weak: &std::sync::Weak<Rtpengine>| {
            let pinger = tokio::spawn(ping_down(weak.clone()));
            Rtpengine {
                instances: instances
                    .iter()
                    .map(|&(addr, weight)| Instance {
                        addr,
                        weight: weight.max(1),
                        up: AtomicBool::new(true),
                    })
                    .collect(),
                socket,
                pending,
                timeout,
                timeouts: AtomicU64::new(0),
                tasks: vec![reader, pinger],
            }
        });
        Ok(engine)
    }

    /// Whether some rtpengine is believed to answer.
    pub fn available(&self) -> bool {
        self.instances.iter().any(|i| i.up.load(Ordering::Relaxed))
    }

    /// Requests that timed out since start.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// The order in which a new call tries the rtpengines: one of those up, picked
    /// by weight, then the other ones up, then those down.
    pub fn order(&self) -> Vec<usize> {
        let up: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].up.load(Ordering::Relaxed))
            .collect();
        let total: u32 = up.iter().map(|&i| self.instances[i].weight).sum();
        let mut order = Vec::with_capacity(self.instances.len());
        if total > 0 {
            let mut pick = rand::random_range(0..total);
            for &i in &up {
                let w = self.instances[i].weight;
                if pick < w {
                    order.push(i);
                    break;
                }
                pick -= w;
            }
        }
        let first = order.first().copied();
        order.extend(up.iter().filter(|&&i| Some(i) != first));
        order.extend((0..self.instances.len()).filter(|i| !up.contains(i)));
        order
    }

    /// Sends `command` (a dictionary) to rtpengine `index` and returns its answer,
    /// `result: ok` or `result: pong`.
    pub async fn request(&self, index: usize, command: Value) -> Result<Value, NgError> {
        let instance = self.instances.get(index).ok_or(NgError::Unavailable)?;
        let cookie = format!("{:016x}", rand::random::<u64>());
        let mut datagram = format!("{cookie} ").into_bytes();
        command.encode_into(&mut datagram);
        let (tx, mut rx) = oneshot::channel();
        self.pending().insert(cookie.clone(), tx);
        let answer = self.exchange(instance, &datagram, &mut rx).await;
        self.pending().remove(&cookie);
        match answer {
            Err(e) => {
                if matches!(e, NgError::Timeout(_)) {
                    self.timeouts.fetch_add(1, Ordering::Relaxed);
                    if instance.up.swap(false, Ordering::Relaxed) {
                        tracing::warn!(rtpengine = %instance.addr, "rtpengine does not answer; marked down");
                    }
                }
                Err(e)
            }
            Ok(v) => {
                instance.up.store(true, Ordering::Relaxed);
                check_result(v)
            }
        }
    }

    /// Sends the datagram, once more after half the timeout (rtpengine answers a
    /// repeated cookie from its cache), and waits for the answer.
    async fn exchange(
        &self,
        instance: &Instance,
        datagram: &[u8],
        rx: &mut oneshot::Receiver<Value>,
    ) -> Result<Value, NgError> {
        let half = self.timeout / 2;
        for _ in 0..2 {
            self.socket
                .send_to(datagram, instance.addr)
                .await
                .map_err(|e| NgError::Io(e.to_string()))?;
            match tokio::time::timeout(half, &mut *rx).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(_)) => return Err(NgError::BadAnswer),
                Err(_) => {}
            }
        }
        Err(NgError::Timeout(instance.addr))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Value>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// `result: ok`/`pong` (warnings logged), or the error rtpengine gave.
fn check_result(v: Value) -> Result<Value, NgError> {
    match v.get("result").and_then(Value::as_str) {
        Some("ok" | "pong") => {
            if let Some(w) = v.get("warning").and_then(Value::as_str) {
                tracing::debug!(warning = %w, "rtpengine warning");
            }
            Ok(v)
        }
        Some(_) => Err(NgError::Refused(
            v.get("error-reason")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .chars()
                .take(200)
                .collect(),
        )),
        None => Err(NgError::BadAnswer),
    }
}

/// Reads answers and hands each to the request waiting for its cookie; anything
/// else is dropped.
async fn read_answers(socket: Arc<UdpSocket>, pending: Arc<Pending>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, _)) = socket.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some((cookie, body)) = split_cookie(&buf[..n]) else {
            continue;
        };
        let Ok(value) = Value::decode(body) else {
            tracing::debug!("unreadable ng answer dropped");
            continue;
        };
        let waiter = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(cookie);
        if let Some(tx) = waiter {
            let _ = tx.send(value);
        }
    }
}

/// `(cookie, bencoded body)` of an ng datagram.
fn split_cookie(datagram: &[u8]) -> Option<(&str, &[u8])> {
    let space = datagram.iter().take(64).position(|&c| c == b' ')?;
    let cookie = std::str::from_utf8(&datagram[..space]).ok()?;
    Some((cookie, &datagram[space + 1..]))
}

/// Pings the rtpengines marked down, so that they take calls again once they answer.
async fn ping_down(engine: std::sync::Weak<Rtpengine>) {
    loop {
        tokio::time::sleep(PING_EVERY).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        for i in 0..engine.instances.len() {
            if !engine.instances[i].up.load(Ordering::Relaxed)
                && engine
                    .request(i, dict([("command", Value::str("ping"))]))
                    .await
                    .is_ok()
            {
                tracing::info!(rtpengine = %engine.instances[i].addr, "rtpengine answers again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_rtpengine_times_out_and_is_marked_down() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let ng = Rtpengine::start(&[(addr, 1)], Duration::from_millis(100))
            .await
            .unwrap();
        let r = ng.request(0, dict([("command", Value::str("ping"))])).await;
        assert_eq!(r, Err(NgError::Timeout(addr)));
        assert!(!ng.available());
        assert_eq!(ng.timeouts(), 1);
        // The request went twice (one retransmission).
        let mut buf = [0u8; 256];
        let (n, _) = silent.recv_from(&mut buf).await.unwrap();
        assert!(buf[..n].ends_with(b" d7:command4:pinge"));
    }

    #[tokio::test]
    async fn weights_share_new_calls() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let ng = Rtpengine::start(&[(a, 3), (b, 1)], Duration::from_millis(100))
            .await
            .unwrap();
        let firsts = (0..4000).filter(|_| ng.order()[0] == 0).count();
        assert!((2700..3300).contains(&firsts), "{firsts}");
        assert_eq!(ng.order().len(), 2);
        ng.instances[0].up.store(false, Ordering::Relaxed);
        assert_eq!(ng.order(), vec![1, 0]);
    }
}
