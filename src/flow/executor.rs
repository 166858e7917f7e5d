//! The flow runtime: one task per call walks the compiled graph. Each applet yields an
//! outcome; the edge with that label gives the next applet.
//!
//! The executor knows applets only through [`crate::applets::Applet`], and the call,
//! webhooks and trunks only through the runtime contract ([`crate::runtime`]): the live
//! SIP engine and the reqwest client implement it, and so do the scripted stand-ins of
//! `callflow simulate` and the unit tests.

use super::compile::Flow;
use crate::applets::Context;
use crate::lang::vars::CallInfo;
use crate::runtime::{CallControl, CallRecord, Directory, Http, Settings, Step};

/// Runs `flow` on a call to its end and returns the call record.
pub async fn run(
    flow: &Flow,
    call: &mut dyn CallControl,
    http: &dyn Http,
    directory: &dyn Directory,
    settings: &Settings,
    info: CallInfo,
) -> CallRecord {
    let mut cx = Context::new(call, http, directory, settings, info, &flow.id);
    walk(flow, &mut cx).await;
    cx.finish()
}

/// Runs the applets of `flow` from its start until one stops the call or an outcome
/// has nowhere to go (then the call is hung up).
pub async fn walk(flow: &Flow, cx: &mut Context<'_>) {
    let mut node = flow.start;
    while let Some(applet) = flow.applet(node) {
        cx.begin_step(&applet.id, applet.kind.kind());
        let step = applet.kind.run(cx).await;
        cx.end_step(&step);
        let Step::Outcome(outcome) = step else { break };
        if cx.call.caller_gone() {
            break;
        }
        match flow.next(node, &outcome) {
            Some(next) => node = next,
            None => {
                tracing::info!(sid = %cx.info.sid, %outcome, "no transition: hanging up");
                cx.call.hangup(crate::applets::hangup::DEFAULT_STATUS).await;
                break;
            }
        }
    }
}
