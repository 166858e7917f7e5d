//! The media gateway driver (docs/architecture.md §5): with `media: none` SDP passes
//! between the legs and RTP flows end to end; with `media: { rtpengine: … }` every
//! call's media is anchored in Sipwise rtpengine, driven over its ng protocol.
//!
//! `bencode` is the protocol's encoding; `ng` the client (several rtpengines,
//! weights, failover); `session` one call's media (offers, answers, recording, media
//! timeout, delete); `recording` turns rtpengine's pcap into a WAV.

pub mod bencode;
pub mod ng;
pub mod recording;
pub mod session;

pub use ng::{NgError, Rtpengine};
pub use session::{MediaSession, RecordedMedia};
