//! The flow runtime: one task per call walks the compiled graph. Each applet yields an
//! outcome; the edge with that label gives the next applet.
//!
//! The executor knows applets only through [`crate::applets::Applet`], and the call,
//! webhooks and trunks only through the runtime contract ([`crate::runtime`]): the live
//! SIP engine and the webhook client implement it, and so do the scripted stand-ins of
//! `callflow simulate` and the unit tests.

use std::sync::Arc;

use super::compile::Flow;
use crate::applets::Context;
use crate::lang::vars::CallInfo;
use crate::runtime::{CallControl, CallRecord, Directory, Http, Settings, Step, StepTrace};

/// Finds the flow a call is moved into (by the calls API), by the id it was given.
pub type FlowLookup<'a> = &'a (dyn Fn(&str) -> Option<Arc<Flow>> + Sync);

/// The HTTP clients a call's webhooks go through: the operator's flows (the flows
/// directory) use `operator`; an account's own flows (uploaded over the API) use
/// `account`, which may refuse private addresses. A call moved into another flow
/// takes that flow's.
#[derive(Clone, Copy)]
pub struct Webhooks<'a> {
    /// For the operator's flows.
    pub operator: &'a dyn Http,
    /// For accounts' flows.
    pub account: &'a dyn Http,
}

impl<'a> Webhooks<'a> {
    /// One client for every flow (simulation, tests).
    pub fn same(http: &'a dyn Http) -> Webhooks<'a> {
        Webhooks {
            operator: http,
            account: http,
        }
    }

    /// The client `flow`'s webhooks use.
    pub fn for_flow(&self, flow: &Flow) -> &'a dyn Http {
        if flow.is_accounts() {
            self.account
        } else {
            self.operator
        }
    }
}

/// Runs `flow` on a call to its end and returns the call record. A call moved into
/// another flow meanwhile goes on there (`lookup` finds it); the record shows the
/// move as a step.
pub async fn run(
    flow: &Flow,
    call: &mut dyn CallControl,
    webhooks: Webhooks<'_>,
    directory: &dyn Directory,
    settings: &Settings,
    info: CallInfo,
    lookup: FlowLookup<'_>,
) -> CallRecord {
    let http = webhooks.for_flow(flow);
    let mut cx = Context::new(call, http, directory, settings, info, &flow.id);
    let mut moved_to = walk(flow, &mut cx).await;
    while let Some(target) = moved_to {
        let mut step = StepTrace::new("(redirect)", "redirect");
        step.started_ms = cx.elapsed_ms();
        step.outcome = target.clone();
        let next = lookup(&target);
        if next.is_none() {
            step.notes
                .push(format!("flow '{target}' is not loaded; hanging up"));
        }
        cx.record.steps.push(step);
        let Some(next) = next else {
            cx.call.hangup(crate::applets::hangup::DEFAULT_STATUS).await;
            break;
        };
        cx.http = webhooks.for_flow(&next);
        moved_to = walk(&next, &mut cx).await;
    }
    cx.finish()
}

/// Runs the applets of `flow` from its start until one stops the call or an outcome
/// has nowhere to go (then the call is hung up). Returns the flow the call was moved
/// into, if it was.
pub async fn walk(flow: &Flow, cx: &mut Context<'_>) -> Option<String> {
    let mut node = flow.start;
    while let Some(applet) = flow.applet(node) {
        cx.begin_step(&applet.id, applet.kind.kind());
        let step = applet.kind.run(cx).await;
        cx.end_step(&step);
        if let Some(target) = cx.call.take_redirect() {
            return Some(target);
        }
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
    None
}
