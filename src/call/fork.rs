//! Parallel ringing: several far legs invited at once; the first to answer is bridged,
//! every other one is cancelled (or, answering too late, acknowledged and hung up).
//!
//! Each leg's client transaction is watched by its own small task, which forwards
//! its events to the call and cleans up after itself once another leg has won: it
//! sends CANCEL (waiting for a provisional response first, RFC 3261 §9.1), and ACKs
//! then BYEs a 2xx that arrives after the race is over.

use compact_str::CompactString;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::anchor::FarMedia;
use super::bridge::{Call, Ringing};
use super::core::Core;
use super::far::{self, cancel_for};
use crate::runtime::{LegError, LegOutcome, LegRequest};
use crate::sip::message::Message;
use crate::sip::transaction::{ClientEvent, ClientTransaction, new_branch, until};
use crate::sip::transport::Target;

/// No leg has won yet.
const NONE: usize = usize::MAX;

/// What a leg's watcher tells the call.
enum ForkEvent {
    /// A provisional response worth relaying, from this leg.
    Provisional(usize, Message),
    /// This leg won the race with this 2xx.
    Won(usize, Message),
    /// This leg ended without winning: its final status (0 for no response).
    Done(u16),
}

/// One leg in the race.
struct Racer {
    invite: Arc<Message>,
    target: Target,
    call_id: String,
    from_tag: String,
    /// How its media is anchored.
    media: FarMedia,
}

impl Call {
    /// Rings every leg at once; bridges the first that answers.
    pub async fn dial_parallel(&mut self, legs: Vec<LegRequest>, ring: Duration) -> LegOutcome {
        if self.caller.gone() {
            return LegOutcome::CallerGone;
        }
        let won = Arc::new(AtomicUsize::new(NONE));
        // true: cancel every leg still ringing (another won, ring timeout, caller gone).
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::channel(64);
        let mut racers = Vec::new();
        for leg in &legs {
            let Ok(targets) = self.core.resolver.resolve(&leg.uri).await else {
                continue;
            };
            let Some(target) = targets.into_iter().next() else {
                continue;
            };
            let media = FarMedia::of(leg, &target, new_branch());
            let mut calling = self.caller.calling();
            calling.offer = match self.far_offer(leg, &media).await {
                Ok(offer) => offer,
                Err(e) => {
                    tracing::info!(sid = %self.sid, uri = %leg.uri, error = %e, "fork not placed");
                    continue;
                }
            };
            let invite = far::invite(&self.core, &calling, leg, &target);
            let (call_id, from_tag) = far::dialog_key(&invite);
            self.core.add_dialog(&call_id, &from_tag, self.tx.clone());
            let branch = media.branch.clone();
            let ct = self
                .core
                .layer
                .send_request(invite, target.clone(), Some(branch.clone()))
                .await;
            let racer = Racer {
                invite: ct.request.clone(),
                target: target.clone(),
                call_id,
                from_tag,
                media,
            };
            let i = racers.len();
            let watcher = Watcher {
                index: i,
                core: self.core.clone(),
                won: won.clone(),
                stop: stop_rx.clone(),
                tx: tx.clone(),
                branch,
            };
            tokio::spawn(watcher.run(ct, racer.invite.clone(), target));
            racers.push(racer);
        }
        drop(tx);
        if racers.is_empty() {
            return LegOutcome::Failed(LegError::NothingPlaced);
        }
        let outcome = self.race(&racers, &mut rx, &stop_tx, ring).await;
        let _ = stop_tx.send(true);
        for (i, r) in racers.iter().enumerate() {
            if outcome != LegOutcome::Answered || won.load(Ordering::SeqCst) != i {
                self.core.remove_dialog(&r.call_id, &r.from_tag);
            }
        }
        tracing::debug!(sid = %self.sid, legs = racers.len(), ?outcome, "parallel ringing");
        outcome
    }

    async fn race(
        &mut self,
        racers: &[Racer],
        rx: &mut mpsc::Receiver<ForkEvent>,
        stop: &watch::Sender<bool>,
        ring: Duration,
    ) -> LegOutcome {
        let deadline = Instant::now() + ring;
        let (mut done, mut busy, mut relayed) = (0, false, false);
        let (mut timed_out, mut caller_left) = (false, false);
        loop {
            let retransmit = self.caller.retransmit_at();
            tokio::select! {
                ev = rx.recv() => match ev {
                    None => break,
                    Some(ForkEvent::Provisional(i, r)) => {
                        if !relayed && !timed_out && !caller_left {
                            relayed = true;
                            let early = self.early_media(&r, &racers[i].media).await;
                            self.caller.provisional(&r, early).await;
                        }
                    }
                    Some(ForkEvent::Won(i, resp)) => {
                        let _ = stop.send(true);
                        let r = &racers[i];
                        return self
                            .far_answered(&r.invite, &resp, r.target.clone(), timed_out, caller_left, &r.media)
                            .await;
                    }
                    Some(ForkEvent::Done(status)) => {
                        busy |= matches!(status, 486 | 600);
                        done += 1;
                        if done == racers.len() {
                            break;
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline), if !timed_out => {
                    timed_out = true;
                    let _ = stop.send(true);
                }
                _ = until(retransmit) => {
                    self.retransmit_2xx().await;
                    if self.caller.gone() && !caller_left {
                        caller_left = true;
                        let _ = stop.send(true);
                    }
                }
                input = self.rx.recv() => match input {
                    None => break,
                    Some(input) => {
                        if self.while_ringing(input).await == Ringing::Left {
                            caller_left = true;
                            let _ = stop.send(true);
                        }
                    }
                },
            }
        }
        if caller_left {
            LegOutcome::CallerGone
        } else if busy && !timed_out {
            LegOutcome::Rejected(486)
        } else {
            LegOutcome::NoAnswer
        }
    }
}

/// Watches one leg's client transaction.
struct Watcher {
    index: usize,
    core: Arc<Core>,
    won: Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
    tx: mpsc::Sender<ForkEvent>,
    branch: CompactString,
}

impl Watcher {
    async fn run(mut self, mut ct: ClientTransaction, invite: Arc<Message>, target: Target) {
        let (mut provisional, mut cancelled, mut watch_closed) = (false, false, false);
        loop {
            let stopping = *self.stop.borrow() || watch_closed;
            if stopping && provisional && !cancelled {
                cancelled = true;
                self.cancel(&invite, &target).await;
            }
            tokio::select! {
                changed = self.stop.changed(), if !stopping => {
                    // The call gone means stop too.
                    watch_closed = changed.is_err();
                }
                ev = ct.events.recv() => {
                    let status = match ev {
                        Some(ClientEvent::Response(r)) => match r.status().unwrap_or(0) {
                            s @ 100..=199 => {
                                provisional = true;
                                if matches!(s, 180 | 183) {
                                    let _ = self.tx.send(ForkEvent::Provisional(self.index, *r)).await;
                                }
                                continue;
                            }
                            200..=299 => {
                                let first = self
                                    .won
                                    .compare_exchange(NONE, self.index, Ordering::SeqCst, Ordering::SeqCst)
                                    .is_ok();
                                if first && !*self.stop.borrow() {
                                    let _ = self.tx.send(ForkEvent::Won(self.index, *r)).await;
                                    return;
                                }
                                if first {
                                    self.won.store(NONE, Ordering::SeqCst);
                                }
                                // Late: acknowledged, then hung up (RFC 3261 §13.2.2.4).
                                self.core.hang_up_answer(&r, &target).await;
                                0
                            }
                            s => s,
                        },
                        _ => 0,
                    };
                    let _ = self.tx.send(ForkEvent::Done(status)).await;
                    return;
                }
            }
        }
    }

    async fn cancel(&self, invite: &Message, target: &Target) {
        if let Some(cancel) = cancel_for(invite) {
            let _ct = self
                .core
                .layer
                .send_request(cancel, target.clone(), Some(self.branch.clone()))
                .await;
        }
    }
}
