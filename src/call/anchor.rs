//! A call's media anchored in rtpengine (`media: { rtpengine: … }`), as the bridge
//! uses it: the caller's offer anchored when its INVITE is accepted (503 when no
//! rtpengine answers), each far leg offered the anchored SDP (SRTP where its media
//! asks for it, restricted to its codecs), its early media and its answer anchored
//! before they reach the caller, in-dialog offers anchored both ways, recording,
//! the media-timeout check and the delete when the call ends. With `media: none`
//! every function here passes the SDP through as the codec filter leaves it.

use compact_str::CompactString;
use std::time::Duration;

use bytes::Bytes;

use super::bridge::Call;
use super::far::FarLeg;
use super::sdp;
use crate::media::{MediaSession, RecordedMedia};
use crate::runtime::{LegError, LegOutcome, LegRequest};
use crate::sip::message::Message;
use crate::sip::transport::Target;
use crate::sip::typed::Transport;

/// Why a caller's INVITE was refused before any flow ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferRefused {
    /// Its SDP is not SDP (400) or has no codec callflow carries (488).
    Sdp,
    /// No rtpengine answered (503).
    MediaUnavailable,
}

/// How one far leg's media is anchored.
#[derive(Debug, Clone)]
pub(crate) struct FarMedia {
    /// The branch of its INVITE (rtpengine's `via-branch`, which tells forks apart).
    pub branch: CompactString,
    /// Whether it speaks SRTP.
    pub srtp: bool,
}

impl FarMedia {
    /// The media of `leg` reached at `target` through INVITE branch `branch`.
    pub(crate) fn of(leg: &LegRequest, target: &Target, branch: CompactString) -> FarMedia {
        FarMedia {
            branch,
            srtp: leg.media.srtp(target.transport == Transport::Tls),
        }
    }
}

/// What ending a call's media left: a recording to write, or why there is none.
#[derive(Debug, Default)]
pub struct MediaEnd {
    /// The recorded media, when a recording was asked for and made.
    pub recorded: Option<RecordedMedia>,
    /// Why a recording asked for cannot be written.
    pub recording_error: Option<String>,
}

impl Call {
    /// Checks the caller's offer and anchors it (see [`OfferRefused`]); the caller
    /// has been answered when it is refused.
    pub async fn accept_offer(&mut self) -> Result<(), OfferRefused> {
        if !self.caller.accept_offer().await {
            return Err(OfferRefused::Sdp);
        }
        self.anchor_media().await
    }

    /// Anchors the caller's offer in rtpengine when media is anchored; a caller
    /// whose INVITE had no offer is not anchored. 503 when no rtpengine answers.
    pub async fn anchor_media(&mut self) -> Result<(), OfferRefused> {
        let Some(cfg) = self.core.media.clone() else {
            return Ok(());
        };
        let Some(offer) = self.caller.first_offer().cloned() else {
            tracing::info!(sid = %self.sid, "the caller made no offer: media not anchored");
            return Ok(());
        };
        let tag = self.caller.party_tag();
        match MediaSession::open(cfg.rtpengine, &self.sid, &tag, offer).await {
            Ok(session) => {
                self.media = Some(session);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(sid = %self.sid, error = %e, "media not anchored: 503");
                self.caller.finish(503).await;
                Err(OfferRefused::MediaUnavailable)
            }
        }
    }

    /// The SDP offer of a far leg's INVITE: the anchored offer, or the caller's
    /// (none for a caller already answered, RFC 3725), restricted to the leg's codecs.
    pub(crate) async fn far_offer(
        &mut self,
        leg: &LegRequest,
        media: &FarMedia,
    ) -> Result<Option<Bytes>, LegError> {
        let offer = match &mut self.media {
            Some(m) => Some(
                m.offer_far(media.srtp, Some(&media.branch))
                    .await
                    .map_err(|e| LegError::Media(e.to_string()))?,
            ),
            None => self.caller.offer().cloned(),
        };
        match offer {
            Some(o) if !leg.media.codecs.is_empty() => sdp::restrict(&o, &leg.media.codecs)
                .map(|s| Some(Bytes::from(s)))
                .map_err(|_| LegError::NoCodec),
            other => Ok(other),
        }
    }

    /// The SDP of a far leg's 180/183 as the caller gets it.
    pub(crate) async fn early_media(&mut self, r: &Message, media: &FarMedia) -> Option<Bytes> {
        let filtered = Bytes::from(sdp::filter(&sdp::body_of(r)).ok()?);
        let Some(m) = &mut self.media else {
            return Some(filtered);
        };
        let tag = r.to_header().ok()?.tag()?.to_string();
        m.answer_far(&tag, &filtered, media.srtp, Some(&media.branch))
            .await
            .inspect_err(
                |e| tracing::warn!(sid = %self.sid, error = %e, "early media not anchored"),
            )
            .ok()
    }

    /// Bridges an answered far leg whose media is anchored: its answer goes through
    /// rtpengine to the caller, who is answered with it, or, already answered, keeps
    /// its port and gets no re-INVITE.
    pub(crate) async fn bridge_anchored(
        &mut self,
        mut far: FarLeg,
        resp: &Message,
        media: &FarMedia,
    ) -> LegOutcome {
        far.ack(None).await;
        let answer = match sdp::filter(&sdp::body_of(resp)) {
            Ok(a) => a,
            Err(_) => {
                far.bye().await;
                return LegOutcome::Failed(LegError::NoCodec);
            }
        };
        let tag = far.dialog.id.remote_tag.clone();
        let Some(m) = self.media.as_mut() else {
            return LegOutcome::Failed(LegError::Media("not anchored".into()));
        };
        let sdp = match m
            .answer_far(&tag, answer.as_bytes(), media.srtp, Some(&media.branch))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                far.bye().await;
                return LegOutcome::Failed(LegError::Media(e.to_string()));
            }
        };
        if !self.caller.answered() {
            self.caller.answer(Some(sdp), &self.tx).await;
        }
        far.dialog.refresh_target(resp);
        self.far = Some(far);
        LegOutcome::Answered
    }

    /// The body of an in-dialog message relayed from the caller (`from_caller`) or
    /// the far leg: an SDP offer (requests) or answer (responses) anchored when
    /// media is; `None` when it must not be relayed.
    pub(crate) async fn relayed_sdp(
        &mut self,
        m: &Message,
        from_caller: bool,
        offer: bool,
    ) -> Option<Bytes> {
        let filtered = sdp::filter(&sdp::body_of(m)).ok()?;
        let Some(session) = &mut self.media else {
            return Some(Bytes::from(filtered));
        };
        let anchored = if offer {
            session.reoffer(from_caller, filtered.as_bytes()).await
        } else {
            session.reanswer(!from_caller, filtered.as_bytes()).await
        };
        anchored
            .inspect_err(
                |e| tracing::warn!(sid = %self.sid, error = %e, "in-dialog SDP not anchored"),
            )
            .ok()
    }

    /// Records the call (see [`crate::runtime::CallControl::record`]).
    pub async fn record(&mut self, dual: bool) -> Result<(), String> {
        let result = match &mut self.media {
            None => Err("recording needs media anchored in rtpengine (media: none)".to_string()),
            Some(m) => m.record(dual).await.map_err(|e| e.to_string()),
        };
        if let Err(e) = &result {
            tracing::info!(sid = %self.sid, error = %e, "no recording");
            self.recording_error = Some(e.clone());
        }
        result
    }

    /// Whether a bridged call's RTP has stopped for the media timeout; checked every
    /// quarter of it (at most every 5 s).
    pub(crate) async fn media_stopped(&self) -> Option<Duration> {
        let (Some(cfg), Some(m)) = (&self.core.media, &self.media) else {
            return None;
        };
        let last = m.last_packet().await.ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let silent = Duration::from_secs(now.saturating_sub(last).max(0) as u64);
        (silent >= cfg.timeout).then_some(cfg.timeout)
    }

    /// How often [`Call::media_stopped`] is asked, when media is anchored.
    pub(crate) fn media_check_every(&self) -> Option<Duration> {
        let cfg = self.core.media.as_ref().filter(|_| self.media.is_some())?;
        Some((cfg.timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(5)))
    }

    /// Deletes the call's media from rtpengine; what a recording needs.
    pub async fn release_media(&mut self) -> MediaEnd {
        let mut end = MediaEnd {
            recorded: None,
            recording_error: self.recording_error.take(),
        };
        if let Some(mut m) = self.media.take() {
            match m.delete().await {
                Ok(recorded) => end.recorded = recorded,
                Err(e) => {
                    tracing::warn!(sid = %self.sid, error = %e, "rtpengine delete failed");
                    end.recording_error.get_or_insert(format!("rtpengine: {e}"));
                }
            }
        }
        end
    }
}
