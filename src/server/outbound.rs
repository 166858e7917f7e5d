//! A partner's call to the PSTN, within its trunk's limits: through the carriers in
//! priority order with connect's own dialling ([`crate::applets::connect::dial`]),
//! the next carrier on no answer or a failover status (408, 5xx, 6xx by default);
//! the partner hears a failure only when every carrier failed, with the status that
//! ended the search.

use super::admission::{call_info, listed, take};
use super::inbound::{admit, refuse};
use super::{State, guard, record};
use crate::applets::Context;
use crate::applets::connect::Target;
use crate::applets::connect::dial::{Plan, dial_plan, expand_all};
use crate::call::Call;
use crate::routing::limits::trunk_key;
use crate::routing::{Trunk, TrunkDirectory};
use crate::runtime::Step;

/// The record's flow id for calls to the PSTN.
pub const FLOW_ID: &str = "outbound";

/// Carries the call from `caller` (a number of `trunk`) to `dialled`.
pub async fn call(call: &mut Call, state: &State, trunk: &Trunk, caller: &str, dialled: &str) {
    let routing = &*state.routing;
    let key = trunk_key(&trunk.sid);
    let limits = routing.limits();
    let Some(_permit) = take(call, limits, &key, trunk.max_channels, trunk.max_cps).await else {
        return;
    };
    let info = call_info(
        call,
        dialled.to_string(),
        "outbound-dial",
        Some(trunk.sid.clone()),
        trunk.account.clone(),
    );
    if let Err(r) = guard::destination(trunk, dialled) {
        return refuse(call, state, &info, &r).await;
    }
    let Some(_admitted) = admit(call, state, &info, trunk).await else {
        return;
    };
    if let Err(refused) = call.accept_offer().await {
        if refused == crate::call::OfferRefused::MediaUnavailable {
            crate::metrics::global().reject("media_unavailable");
        }
        return;
    }
    let _listed = listed(state, call, &info);
    let (http, settings) = (&state.http, &state.settings);
    let directory = TrunkDirectory { routing, trunk };
    let mut cx = Context::new(call, http, &directory, settings, info, FLOW_ID);
    cx.begin_step("carriers", crate::applets::connect::NAME);
    let attempts = match expand_all(&[Target::Number(dialled.to_string())], &cx) {
        Ok(a) => a,
        Err(why) => {
            cx.step.notes.push(why);
            Vec::new()
        }
    };
    let plan = Plan {
        attempts,
        headers: Default::default(),
        ring_timeout: routing.outbound().ring_timeout,
        max_duration: trunk.max_call_duration,
        caller_id: Some(caller.to_string()),
        parallel: false,
    };
    let dialled = dial_plan(&plan, &mut cx).await;
    cx.end_step(&dialled.step);
    if let Step::Outcome(_) = &dialled.step {
        let status = if cx.call.answered() {
            480
        } else {
            dialled.last_status.unwrap_or(503)
        };
        cx.call.hangup(status).await;
    }
    let mut record = cx.finish();
    super::recordings::end_media(call, &mut record, &state.recordings).await;
    record::finish(state, None, record).await;
}
