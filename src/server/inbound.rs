//! Each new INVITE: who sent it decides what it is. From a carrier, an inbound call to
//! one of the trunks' numbers, which runs the number's flow; from a trunk's
//! whitelisted address (or with its digest credentials), the partner's call to the
//! PSTN ([`super::outbound`]); anything else is refused. Channel and rate limits are
//! taken before the call goes on.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::Instrument;

use super::admission::{call_info, caller_number, listed, take};
use super::{State, guard, outbound, record};
use crate::call::{Call, CallHandler};
use crate::flow::executor;
use crate::lang::number::normalise;
use crate::routing::limits::{carrier_key, trunk_key};
use crate::routing::{Inbound, Refusal, Trunk, TrunkDirectory};
use crate::sip::Name;
use crate::sip::digest::Verdict;

/// The handler that routes each new call and runs it with the state that is current
/// when the call arrives.
pub fn handler(current: Arc<ArcSwap<State>>) -> CallHandler {
    Arc::new(move |call| {
        let state = current.load_full();
        let span = tracing::info_span!("call", sid = %call.sid);
        // The call is boxed before the future is made: the future keeps 8 bytes for
        // it instead of the call itself (2 KB) for the call's whole life.
        Box::pin(handle(Box::new(call), state).instrument(span))
    })
}

/// Every step is boxed: this future lives as long as the call, and inlining the
/// steps' futures (the flow, calls to the PSTN, the store) made it about 13 KB per
/// call (heaptrack, BENCHMARKS.md); boxed, only the step running takes memory.
async fn handle(mut call: Box<Call>, state: Arc<State>) {
    let state = &*state;
    let routing = &*state.routing;
    let source = call.source();
    let dialled = call
        .request()
        .request_uri()
        .and_then(|u| u.user())
        .unwrap_or("")
        .to_string();
    let caller = caller_number(&call);
    let (number, route) = match routing.inbound(source.ip(), &dialled, &caller) {
        Inbound::Forbidden(refusal, why) => {
            if let Some(trunk) =
                Box::pin(authenticate(&mut call, state, &caller, refusal, &why)).await
            {
                let (caller, dialled) = (normalise(&caller), normalise(&dialled));
                Box::pin(outbound::call(&mut call, state, &trunk, &caller, &dialled)).await;
            }
            return;
        }
        Inbound::Outbound {
            trunk,
            caller,
            dialled,
        } => {
            Box::pin(outbound::call(&mut call, state, &trunk, &caller, &dialled)).await;
            return;
        }
        Inbound::UnknownNumber(n) => {
            tracing::info!(sid = %call.sid, number = %n, "unknown number: 404");
            crate::metrics::global().reject("unknown_number");
            Box::pin(call.hangup(404)).await;
            return;
        }
        Inbound::Number { number, route } => (number, route),
    };
    let trunk = &route.trunk;
    let limits = routing.limits();
    let key = trunk_key(&trunk.sid);
    let Some(_trunk_permit) = Box::pin(take(
        &mut call,
        limits,
        &key,
        trunk.max_channels,
        trunk.max_cps,
    ))
    .await
    else {
        return;
    };
    let _carrier_permit = match routing.carrier_of(source.ip()) {
        Some(c) => {
            let key = carrier_key(&c.name);
            match Box::pin(take(&mut call, limits, &key, c.max_channels, None)).await {
                Some(p) => Some(p),
                None => return,
            }
        }
        None => None,
    };
    let info = call_info(&call, number, "incoming", None, trunk.account.clone());
    let Some(_admitted) = Box::pin(admit(&mut call, state, &info, trunk)).await else {
        return;
    };
    if let Err(refused) = Box::pin(call.accept_offer()).await {
        if refused == crate::call::OfferRefused::MediaUnavailable {
            crate::metrics::global().reject("media_unavailable");
        }
        return;
    }
    let _listed = listed(state, &call, &info);
    let _limit = guard::TimeLimit::start(call.controller(), trunk.max_call_duration);
    let flow = &route.flow;
    let account = trunk.account.clone();
    let lookup = |id: &str| flow_for(routing, account.as_deref(), id);
    let (webhooks, settings) = (state.webhooks(), &state.settings);
    let directory = TrunkDirectory { routing, trunk };
    let mut record = Box::pin(executor::run(
        flow, &mut *call, webhooks, &directory, settings, info, &lookup,
    ))
    .await;
    Box::pin(super::recordings::end_media(
        &mut call,
        &mut record,
        &state.recordings,
    ))
    .await;
    Box::pin(record::finish(
        state,
        record::StatusCallback::of_flow(Some(flow)),
        record,
    ))
    .await;
}

/// Takes the call within its account's caps, or refuses it (with a record).
pub(super) async fn admit(
    call: &mut Call,
    state: &State,
    info: &crate::lang::vars::CallInfo,
    trunk: &Trunk,
) -> Option<guard::Admitted> {
    match guard::admit(&state.routing, trunk.account.as_deref()) {
        Ok(a) => Some(a),
        Err(r) => {
            refuse(call, state, info, &r).await;
            None
        }
    }
}

/// Refuses the caller as `r` says and stores the refused call's record.
pub(super) async fn refuse(
    call: &mut Call,
    state: &State,
    info: &crate::lang::vars::CallInfo,
    r: &guard::Refused,
) {
    let retry = r
        .retry_after
        .filter(|_| r.status == 503)
        .map(|s| (Name::RetryAfter, s.to_string()));
    call.reject(r.status, None, retry.into_iter().collect())
        .await;
    guard::refused(state, info, r).await;
}

/// The flow `id` as `account` names it: its own, else the file's.
pub(super) fn flow_for(
    routing: &crate::routing::Routing,
    account: Option<&str>,
    id: &str,
) -> Option<Arc<crate::flow::Flow>> {
    account
        .and_then(|a| routing.flow(&crate::store::flows::routing_id(a, id)))
        .or_else(|| routing.flow(id).filter(|_| !id.contains('/')))
}

/// A source that is neither a carrier nor whitelisted may still be a trunk that
/// authenticates with digest credentials (RFC 3261 §22): the caller id names the
/// trunk. Returns the trunk once the credentials are right; otherwise the caller has
/// been answered (401 with a challenge, or 403 with why).
async fn authenticate(
    call: &mut Call,
    state: &State,
    caller: &str,
    refusal: Refusal,
    why: &str,
) -> Option<Arc<Trunk>> {
    let metrics = crate::metrics::global();
    let trunk = state
        .routing
        .trunk_for_caller(caller)
        .filter(|t| !t.credentials.is_empty());
    let Some(trunk) = trunk else {
        tracing::info!(sid = %call.sid, source = %call.source(), %why, "INVITE refused: 403");
        if let Some(user) = digest_user(call.request()) {
            state.shield.auth_failed(call.source().ip(), &user);
        }
        metrics.reject(refusal.as_str());
        call.reject(403, None, Vec::new()).await;
        return None;
    };
    match state.auth.check_secrets(
        call.request(),
        call.source().ip(),
        &trunk.credentials,
        trunk.allow_md5,
    ) {
        Verdict::Ok => {
            state.shield.auth_succeeded(call.source().ip());
            Some(trunk)
        }
        Verdict::Challenge(values) => {
            let headers = values
                .into_iter()
                .map(|v| (Name::parse("WWW-Authenticate"), v))
                .collect();
            metrics.reject("auth_challenged");
            call.reject(401, None, headers).await;
            None
        }
        Verdict::Refused(reason) => {
            tracing::info!(sid = %call.sid, trunk = %trunk.sid, %reason, "digest refused: 403");
            let user = digest_user(call.request()).unwrap_or_default();
            state.shield.auth_failed(call.source().ip(), &user);
            metrics.reject("auth");
            call.reject(403, None, Vec::new()).await;
            None
        }
    }
}

/// The user name an INVITE's Authorization names, if it has one.
fn digest_user(request: &crate::sip::Message) -> Option<String> {
    let value = request.header(&Name::parse("Authorization"))?;
    let rest = value.split("username=\"").nth(1)?;
    Some(rest.split('"').next()?.chars().take(64).collect())
}
