//! One call's media anchored in rtpengine: the ng exchanges of its offers and
//! answers, recording, the media-timeout check and the delete that ends it.
//!
//! The ng `call-id` is the call's sid; the caller's ng tag is the caller's dialog tag
//! and each far leg's its To tag. Every far leg is offered the caller's SDP with
//! `port latching` and `strict source`, so that the port facing the caller never
//! changes when a new far leg replaces the old one (no re-INVITE to the caller), and
//! packets from the old far leg are dropped.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::bencode::{Value, dict};
use super::ng::{NgError, Rtpengine};

/// SRTP suites callflow does not offer: everything but AES_CM_128_HMAC_SHA1_80 (first)
/// and AES_CM_128_HMAC_SHA1_32, so no NULL cipher and only suites every SRTP peer has.
const SDES_REFUSED: [&str; 10] = [
    "no-AEAD_AES_256_GCM",
    "no-AEAD_AES_128_GCM",
    "no-AES_256_CM_HMAC_SHA1_80",
    "no-AES_256_CM_HMAC_SHA1_32",
    "no-AES_192_CM_HMAC_SHA1_80",
    "no-AES_192_CM_HMAC_SHA1_32",
    "no-F8_128_HMAC_SHA1_80",
    "no-F8_128_HMAC_SHA1_32",
    "no-NULL_HMAC_SHA1_80",
    "no-NULL_HMAC_SHA1_32",
];

/// RTP/AVP or RTP/SAVP, as `transport-protocol` says it.
fn protocol(srtp: bool) -> &'static str {
    if srtp { "RTP/SAVP" } else { "RTP/AVP" }
}

/// Whether an SDP body's first audio stream is SRTP.
fn is_srtp(sdp: &[u8]) -> bool {
    String::from_utf8_lossy(sdp)
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .is_some_and(|l| l.contains("RTP/SAVP"))
}

/// The ports of every `m=` line of an SDP body.
pub fn ports(sdp: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(sdp)
        .lines()
        .filter_map(|l| l.strip_prefix("m="))
        .filter_map(|m| m.split_whitespace().nth(1)?.parse().ok())
        .filter(|&p| p != 0)
        .collect()
}

/// A recording asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Caller left, far party right; else both mixed into one channel.
    pub dual: bool,
    /// Whether rtpengine records already.
    started: bool,
    /// The pcap rtpengine writes, once it said where.
    pcap: Option<PathBuf>,
}

/// The far leg bridged now.
#[derive(Debug, Clone)]
struct Far {
    /// Its ng tag (its To tag).
    tag: String,
    /// Whether it speaks SRTP.
    srtp: bool,
}

/// What a recording needs once the call is deleted from rtpengine.
#[derive(Debug, Clone)]
pub struct RecordedMedia {
    /// The pcap rtpengine wrote (None: it never said where).
    pub pcap: Option<PathBuf>,
    /// Caller left, far party right.
    pub dual: bool,
    /// rtpengine's ports that received the caller's packets.
    pub caller_ports: Vec<u16>,
    /// rtpengine's ports that received the far parties' packets.
    pub far_ports: Vec<u16>,
}

/// A call's media in rtpengine.
#[derive(Debug)]
pub struct MediaSession {
    ng: Arc<Rtpengine>,
    /// The rtpengine that holds the call.
    instance: usize,
    /// The ng call-id (the call's sid).
    call_id: String,
    /// The caller's ng tag.
    caller_tag: String,
    /// The caller's last SDP offer.
    caller_sdp: Bytes,
    /// Whether the caller speaks SRTP.
    caller_srtp: bool,
    /// The far leg bridged now.
    far: Option<Far>,
    /// rtpengine's ports facing the caller (from the SDPs sent to it).
    caller_ports: Vec<u16>,
    /// rtpengine's ports facing far legs (from the SDPs sent to them).
    far_ports: Vec<u16>,
    /// The recording asked for, if any.
    recording: Option<Recording>,
    /// Whether the call has been deleted from rtpengine.
    deleted: bool,
}

impl MediaSession {
    /// Anchors a call: `offer` (the caller's filtered SDP) goes to the first
    /// rtpengine that answers, in [`Rtpengine::order`].
    pub async fn open(
        ng: Arc<Rtpengine>,
        call_id: &str,
        caller_tag: &str,
        offer: Bytes,
    ) -> Result<MediaSession, NgError> {
        let mut session = MediaSession {
            ng: ng.clone(),
            instance: 0,
            call_id: call_id.to_string(),
            caller_tag: caller_tag.to_string(),
            caller_srtp: is_srtp(&offer),
            caller_sdp: offer,
            far: None,
            caller_ports: Vec::new(),
            far_ports: Vec::new(),
            recording: None,
            deleted: false,
        };
        let mut last = NgError::Unavailable;
        for i in ng.order() {
            session.instance = i;
            match session.offer_far(false, None).await {
                Ok(_) => return Ok(session),
                Err(e @ NgError::Timeout(_)) => last = e,
                Err(e) => {
                    session.deleted = true;
                    return Err(e);
                }
            }
        }
        session.deleted = true;
        Err(last)
    }

    /// The SDP for a far leg's INVITE: the caller's offer anchored, SRTP (SDES) when
    /// `srtp`; `branch` tells forked legs apart.
    pub async fn offer_far(&mut self, srtp: bool, branch: Option<&str>) -> Result<Bytes, NgError> {
        let mut cmd = self.command("offer", &self.caller_tag.clone(), None, srtp);
        set(&mut cmd, "sdp", Value::Bytes(self.caller_sdp.to_vec()));
        if let Some(b) = branch {
            set(&mut cmd, "via-branch", Value::str(b));
        }
        let sdp = self.sdp_of(cmd).await?;
        add_ports(&mut self.far_ports, &sdp);
        Ok(sdp)
    }

    /// The SDP for the caller from far leg `tag`'s answer `sdp`; the leg is bridged
    /// from now on (and recorded, when asked).
    pub async fn answer_far(
        &mut self,
        tag: &str,
        sdp: &[u8],
        srtp: bool,
        branch: Option<&str>,
    ) -> Result<Bytes, NgError> {
        let mut cmd = self.command(
            "answer",
            &self.caller_tag.clone(),
            Some(tag),
            self.caller_srtp,
        );
        set(&mut cmd, "sdp", Value::Bytes(sdp.to_vec()));
        if let Some(b) = branch {
            set(&mut cmd, "via-branch", Value::str(b));
        }
        let record = self.recording.as_ref().is_some_and(|r| !r.started);
        if record {
            set(&mut cmd, "record call", Value::str("yes"));
        }
        let answer = self.request(cmd).await?;
        if record {
            self.recording_started(&answer);
        }
        let out = answer_sdp(&answer)?;
        add_ports(&mut self.caller_ports, &out);
        let previous = self.far.replace(Far {
            tag: tag.to_string(),
            srtp,
        });
        if let Some(old) = previous.filter(|old| old.tag != tag) {
            self.silence(&old.tag).await;
        }
        Ok(out)
    }

    /// Drops whatever a replaced far leg (ng tag `tag`) still sends: after a hand-off
    /// its port stays open until the call ends, and without this its packets would
    /// still reach the caller.
    async fn silence(&self, tag: &str) {
        let cmd = dict([
            ("command", Value::str("block media")),
            ("call-id", Value::str(&self.call_id)),
            ("from-tag", Value::str(tag)),
        ]);
        if let Err(e) = self.request(cmd).await {
            tracing::warn!(error = %e, "the replaced far leg's media could not be blocked");
        }
    }

    /// Anchors an offer made inside the dialog (a re-INVITE or UPDATE) by the caller
    /// (`from_caller`) or the far leg; gives the SDP for the other side.
    pub async fn reoffer(&mut self, from_caller: bool, sdp: &[u8]) -> Result<Bytes, NgError> {
        let (from, to, srtp) = self.direction(from_caller)?;
        let mut cmd = self.command("offer", &from, Some(&to), srtp);
        set(&mut cmd, "sdp", Value::Bytes(sdp.to_vec()));
        if from_caller {
            self.caller_sdp = Bytes::copy_from_slice(sdp);
        }
        self.sdp_of(cmd).await
    }

    /// Anchors the answer to an offer [`MediaSession::reoffer`] made from the other side.
    pub async fn reanswer(
        &mut self,
        offer_from_caller: bool,
        sdp: &[u8],
    ) -> Result<Bytes, NgError> {
        let (from, to, _) = self.direction(offer_from_caller)?;
        let srtp = if offer_from_caller {
            self.caller_srtp
        } else {
            self.far.as_ref().is_some_and(|f| f.srtp)
        };
        let mut cmd = self.command("answer", &from, Some(&to), srtp);
        set(&mut cmd, "sdp", Value::Bytes(sdp.to_vec()));
        self.sdp_of(cmd).await
    }

    /// (from-tag, to-tag, SRTP towards the receiver) of an in-dialog offer.
    fn direction(&self, from_caller: bool) -> Result<(String, String, bool), NgError> {
        let far = self
            .far
            .as_ref()
            .ok_or(NgError::Refused("no far leg".into()))?;
        Ok(if from_caller {
            (self.caller_tag.clone(), far.tag.clone(), far.srtp)
        } else {
            (far.tag.clone(), self.caller_tag.clone(), self.caller_srtp)
        })
    }

    /// Asks for a recording from now to the end of the call: at the far leg's
    /// answer, or now when a far leg is bridged already.
    pub async fn record(&mut self, dual: bool) -> Result<(), NgError> {
        if let Some(r) = &mut self.recording {
            r.dual = dual;
            return Ok(());
        }
        self.recording = Some(Recording {
            dual,
            started: false,
            pcap: None,
        });
        if self.far.is_some() {
            let cmd = dict([
                ("command", Value::str("start recording")),
                ("call-id", Value::str(&self.call_id)),
            ]);
            let answer = self.request(cmd).await?;
            self.recording_started(&answer);
        }
        Ok(())
    }

    fn recording_started(&mut self, answer: &Value) {
        if let Some(r) = &mut self.recording {
            r.started = true;
            let path = answer
                .get("recordings")
                .and_then(|l| l.items().first())
                .and_then(Value::as_str);
            if let Some(p) = path {
                r.pcap = Some(PathBuf::from(p));
            }
        }
    }

    /// The ng call-id (the call's sid), which prefixes rtpengine's pcap file name.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Seconds since the epoch of the last packet rtpengine saw on any of the call's
    /// streams (the call's creation when none came).
    pub async fn last_packet(&self) -> Result<i64, NgError> {
        let cmd = dict([
            ("command", Value::str("query")),
            ("call-id", Value::str(&self.call_id)),
        ]);
        let answer = self.request(cmd).await?;
        let mut last = answer.get("created").and_then(Value::as_int).unwrap_or(0);
        let tags = answer.get("tags").into_iter().flat_map(Value::values);
        let streams = tags
            .flat_map(|t| t.get("medias").map(Value::items).unwrap_or(&[]))
            .flat_map(|m| m.get("streams").map(Value::items).unwrap_or(&[]));
        for s in streams {
            if let Some(t) = s.get("last packet").and_then(Value::as_int) {
                last = last.max(t);
            }
        }
        Ok(last)
    }

    /// Deletes the call from rtpengine (its ports released, its recording closed);
    /// gives what a recording needs.
    pub async fn delete(&mut self) -> Result<Option<RecordedMedia>, NgError> {
        if self.deleted {
            return Ok(None);
        }
        self.deleted = true;
        self.ng
            .request(self.instance, delete_command(&self.call_id))
            .await?;
        Ok(self.recording.as_ref().map(|r| RecordedMedia {
            pcap: r.pcap.clone(),
            dual: r.dual,
            caller_ports: self.caller_ports.clone(),
            far_ports: self.far_ports.clone(),
        }))
    }

    /// An offer or answer command with the options every one carries.
    fn command(&self, name: &str, from: &str, to: Option<&str>, srtp: bool) -> Value {
        let mut cmd = dict([
            ("command", Value::str(name)),
            ("call-id", Value::str(&self.call_id)),
            ("from-tag", Value::str(from)),
            ("ICE", Value::str("remove")),
            ("DTLS", Value::str("off")),
            ("replace", Value::strs(["origin", "session-connection"])),
            ("flags", Value::strs(["port latching", "strict source"])),
            ("transport-protocol", Value::str(protocol(srtp))),
        ]);
        if let Some(t) = to {
            set(&mut cmd, "to-tag", Value::str(t));
        }
        if srtp {
            set(&mut cmd, "SDES", Value::strs(SDES_REFUSED));
        }
        cmd
    }

    async fn request(&self, cmd: Value) -> Result<Value, NgError> {
        self.ng.request(self.instance, cmd).await
    }

    async fn sdp_of(&self, cmd: Value) -> Result<Bytes, NgError> {
        answer_sdp(&self.request(cmd).await?)
    }
}

impl Drop for MediaSession {
    /// A call dropped without [`MediaSession::delete`] (a task that ended early) is
    /// deleted from rtpengine in the background.
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (ng, instance, cmd) = (
            self.ng.clone(),
            self.instance,
            delete_command(&self.call_id),
        );
        rt.spawn(async move {
            if let Err(e) = ng.request(instance, cmd).await {
                tracing::warn!(error = %e, "rtpengine delete failed");
            }
        });
    }
}

fn delete_command(call_id: &str) -> Value {
    dict([
        ("command", Value::str("delete")),
        ("call-id", Value::str(call_id)),
        ("delete delay", Value::Int(0)),
    ])
}

fn set(cmd: &mut Value, key: &str, v: Value) {
    if let Value::Dict(d) = cmd {
        d.insert(key.as_bytes().to_vec(), v);
    }
}

fn add_ports(into: &mut Vec<u16>, sdp: &[u8]) {
    for p in ports(sdp) {
        if !into.contains(&p) {
            into.push(p);
        }
    }
}

fn answer_sdp(answer: &Value) -> Result<Bytes, NgError> {
    match answer.get("sdp") {
        Some(Value::Bytes(b)) => Ok(Bytes::copy_from_slice(b)),
        _ => Err(NgError::BadAnswer),
    }
}
