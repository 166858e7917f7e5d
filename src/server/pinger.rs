//! OPTIONS pings: every trunk destination and carrier is pinged every interval; any
//! final response marks it up, none within the interval (at most 5 s) marks it down.
//! Routing skips what is down while something else is up.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::State;
use crate::call::core::Core;
use crate::sip::{Message, Method, Name, SipUri, Uri};

/// Pings until `stop`, with the targets of whatever state is current.
pub async fn run(
    core: Arc<Core>,
    current: Arc<ArcSwap<State>>,
    every: Duration,
    stop: CancellationToken,
) {
    let wait = every.min(Duration::from_secs(5));
    loop {
        let state = current.load_full();
        for uri in state.routing.ping_targets() {
            let (core, health) = (core.clone(), state.routing.health().clone());
            tokio::spawn(async move {
                let up = ping(&core, &uri, wait).await;
                if health.mark(&uri, up) {
                    if up {
                        tracing::info!(%uri, "answers OPTIONS again: up");
                    } else {
                        tracing::warn!(%uri, "no answer to OPTIONS: down");
                    }
                }
            });
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One OPTIONS ping: whether any final response came within `wait`.
async fn ping(core: &Core, uri: &SipUri, wait: Duration) -> bool {
    let Some(target) = core
        .resolver
        .resolve(uri)
        .await
        .ok()
        .and_then(|t| t.into_iter().next())
    else {
        return false;
    };
    let mut req = Message::request(Method::Options, Uri::Sip(uri.clone()));
    let tag = crate::sip::dialog::new_tag();
    req.push_header(Name::MaxForwards, "70");
    req.push_header(Name::From, format!("<sip:{}>;tag={tag}", uri.host));
    req.push_header(Name::To, format!("<{uri}>"));
    req.push_header(Name::CallId, format!("ping-{:016x}", rand::random::<u64>()));
    req.push_header(Name::CSeq, "1 OPTIONS");
    let answered = core.transact(req, target);
    matches!(tokio::time::timeout(wait, answered).await, Ok(Some(_)))
}
