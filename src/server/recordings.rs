//! Recordings: when a recorded call ends, rtpengine's pcap of it becomes a WAV under
//! `recordings.dir/<account>/<CallSid>.wav` (`_operator` for calls of the file's
//! trunks), the pcap is removed, and the call record gets its RecordingUrl: the
//! calls API's `/v1/Accounts/<account>/Recordings/<CallSid>.wav` (served with the
//! account's credentials), or the file's path when the API is off or the call has
//! no account. A recording that cannot be written leaves the call as it was and
//! says why on its record.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::call::Call;
use crate::media::RecordedMedia;
use crate::media::recording::pcap_to_wav;
use crate::runtime::CallRecord;

/// Where recordings go and how they are reached.
#[derive(Debug)]
pub struct Recordings {
    /// `recordings.dir`.
    dir: PathBuf,
    /// `recordings.url`, the base of RecordingUrl when configured.
    url: Option<String>,
    /// The API's base URL, once it listens.
    api: OnceLock<String>,
}

impl Recordings {
    /// Recordings under `dir`, reached at `url` when given.
    pub fn new(dir: PathBuf, url: Option<String>) -> Recordings {
        Recordings {
            dir,
            url: url.map(|u| u.trim_end_matches('/').to_string()),
            api: OnceLock::new(),
        }
    }

    /// The API listens at `addr`: RecordingUrls point there unless `recordings.url`
    /// says otherwise.
    pub fn api_listens(&self, addr: SocketAddr) {
        let _ = self.api.set(format!("http://{addr}"));
    }

    /// The WAV of call `sid` of `account`.
    pub fn path(&self, account: Option<&str>, sid: &str) -> PathBuf {
        self.dir
            .join(account.unwrap_or("_operator"))
            .join(format!("{sid}.wav"))
    }

    /// Where call `sid`'s recording is reached.
    pub fn url(&self, account: Option<&str>, sid: &str) -> String {
        let base = self.url.as_ref().or(self.api.get());
        match (account, base) {
            (Some(a), Some(base)) => format!("{base}/v1/Accounts/{a}/Recordings/{sid}.wav"),
            _ => {
                let p = self.path(account, sid);
                std::path::absolute(&p).unwrap_or(p).display().to_string()
            }
        }
    }

    /// Writes the WAV of `recorded` for call `sid`; its URL, or why not.
    pub async fn write(
        &self,
        recorded: RecordedMedia,
        account: Option<&str>,
        sid: &str,
    ) -> Result<String, String> {
        let pcap = recorded.pcap.clone().ok_or(
            "rtpengine did not say where it recorded (is it started with --recording-method=pcap?)",
        )?;
        let wav = self.path(account, sid);
        let written = tokio::task::spawn_blocking(move || {
            let out = pcap_to_wav(
                &pcap,
                &recorded.caller_ports,
                &recorded.far_ports,
                recorded.dual,
                &wav,
            );
            if out.is_ok() {
                let _ = std::fs::remove_file(&pcap);
            }
            out
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        tracing::info!(
            sid,
            samples = written.samples,
            channels = written.channels,
            "recording written"
        );
        Ok(self.url(account, sid))
    }
}

/// Ends the call's media and writes its recording, if it has one, onto `record`.
pub async fn end_media(call: &mut Call, record: &mut CallRecord, recordings: &Recordings) {
    let end = call.release_media().await;
    record.recording_error = end.recording_error;
    let Some(recorded) = end.recorded else {
        return;
    };
    let account = record.account_sid.clone();
    match recordings
        .write(recorded, account.as_deref(), &record.call_sid)
        .await
    {
        Ok(url) => record.recording_url = Some(url),
        Err(e) => {
            tracing::warn!(sid = %record.call_sid, error = %e, "recording not written");
            record.recording_error = Some(e);
        }
    }
}
