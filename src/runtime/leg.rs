//! Far legs as the flow runtime asks for them and hears how they went.

use std::time::Duration;

use crate::sip::SipUri;

/// A far leg to place.
#[derive(Debug, Clone)]
pub struct LegRequest {
    /// Whom to dial.
    pub uri: SipUri,
    /// Extra headers on the INVITE (custom `X-` headers, callflow's own).
    pub headers: Vec<(String, String)>,
    /// How long it may ring before it is cancelled.
    pub ring_timeout: Duration,
    /// The number to present in From instead of the caller's.
    pub caller_id: Option<String>,
    /// How the leg's media is offered.
    pub media: LegMedia,
}

/// How a far leg's media is offered when it is anchored in rtpengine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegMedia {
    /// SRTP whatever the transport (a trunk's `srtp: required`); otherwise SRTP
    /// only towards destinations reached over TLS.
    pub srtp_required: bool,
    /// Plain RTP even over TLS (carriers).
    pub plain: bool,
    /// The codecs the far end takes, by encoding name (empty: those callflow carries).
    pub codecs: Vec<String>,
}

impl LegMedia {
    /// Plain RTP whatever the transport: the carriers' side.
    pub fn plain() -> LegMedia {
        LegMedia {
            plain: true,
            ..LegMedia::default()
        }
    }

    /// Whether the leg gets SRTP, reached over TLS (`tls`) or not.
    pub fn srtp(&self, tls: bool) -> bool {
        !self.plain && (self.srtp_required || tls)
    }
}

/// How placing a far leg ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegOutcome {
    /// The far end answered; the legs are bridged.
    Answered,
    /// The far end refused with this final status (486, 603, 404, …).
    Rejected(u16),
    /// Nobody answered before the ring timeout.
    NoAnswer,
    /// The leg could not be placed or got no response.
    Failed(LegError),
    /// The caller hung up or cancelled meanwhile.
    CallerGone,
}

/// Why a far leg could not be placed or bridged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegError {
    /// The URI's host did not resolve (RFC 3263).
    #[error("{0}")]
    Resolve(String),
    /// It resolved to no address at all.
    #[error("no address")]
    NoAddress,
    /// The INVITE got no response (Timer B).
    #[error("no response (timeout)")]
    NoResponse,
    /// The transport could not send it.
    #[error("{0}")]
    Transport(String),
    /// The engine is shutting down.
    #[error("engine stopped")]
    EngineStopped,
    /// The far end's 2xx could not start a dialog.
    #[error("far end's 2xx has no usable Contact or To")]
    BadAnswer,
    /// The far end's SDP has no codec callflow carries.
    #[error("far end answered with no usable codec")]
    NoCodec,
    /// A leg invited without SDP (re-targeting) made no usable offer.
    #[error("new leg made no usable offer")]
    NoOffer,
    /// The caller refused the re-INVITE that re-targets its media.
    #[error("caller refused the re-INVITE")]
    ReinviteRefused,
    /// The media relay refused or did not answer.
    #[error("media: {0}")]
    Media(String),
    /// None of the forked legs could be sent.
    #[error("no leg could be placed")]
    NothingPlaced,
}

/// How a bridged far leg ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEnd {
    /// The far end sent BYE; the caller is still connected.
    FarHangup,
    /// The caller sent BYE; the far leg has been hung up.
    CallerHangup,
    /// The far end sent REFER: its target and `X-` headers. The far leg is released.
    Transfer {
        /// The Refer-To URI.
        refer_to: String,
        /// The REFER's `X-` headers.
        headers: Vec<(String, String)>,
    },
    /// The longest allowed duration passed; both legs are hung up.
    MaxDuration,
    /// The call was moved into another flow (the calls API); the far leg is hung up.
    Redirected,
    /// No RTP for this long in either direction; both legs are hung up.
    MediaTimeout(Duration),
}

#[cfg(test)]
mod tests {
    use super::LegMedia;

    #[test]
    fn srtp_over_tls_or_when_required_never_to_carriers() {
        let trunk = LegMedia::default();
        assert!(trunk.srtp(true) && !trunk.srtp(false));
        let required = LegMedia {
            srtp_required: true,
            ..LegMedia::default()
        };
        assert!(required.srtp(false));
        assert!(!LegMedia::plain().srtp(true));
    }
}
