//! Recordings: rtpengine writes each recorded call as a pcap (its `pcap` recording
//! method: both directions as received, SRTP already decrypted); this file turns it
//! into a WAV. The caller's stream is what arrived on rtpengine's caller-facing ports,
//! the far parties' what arrived on the far-facing ports. G.711 (PT 8 A-law, PT 0
//! μ-law) is decoded to 16-bit PCM at 8 kHz; each packet is placed by its RTP
//! timestamp from the moment its stream (SSRC) started, so gaps stay silence and a
//! new far leg after a hand-off starts where it was heard. Dual: caller left, far
//! party right; single: both mixed.

use std::collections::HashMap;
use std::path::Path;

/// Why a recording could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The pcap could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The pcap.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// Not a pcap rtpengine writes.
    #[error("not a pcap of raw IPv4 packets")]
    NotPcap,
    /// The WAV could not be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The WAV.
        path: String,
        /// Why.
        error: std::io::Error,
    },
}

/// Samples per second.
const RATE: u32 = 8000;
/// The longest recording kept (4 h, the default longest call), in samples.
const MAX_SAMPLES: usize = 4 * 3600 * RATE as usize;

/// One RTP packet as captured.
struct Packet {
    /// Capture time, microseconds.
    at_us: u64,
    dst_port: u16,
    ssrc: u32,
    timestamp: u32,
    pt: u8,
    payload: Vec<u8>,
}

/// What a written recording holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Samples per channel.
    pub samples: usize,
    /// Channels (1 or 2).
    pub channels: u16,
    /// G.711 packets decoded.
    pub packets: usize,
}

/// Writes `wav` from the pcap at `pcap`.
pub fn pcap_to_wav(
    pcap: &Path,
    caller_ports: &[u16],
    far_ports: &[u16],
    dual: bool,
    wav: &Path,
) -> Result<Written, RecordingError> {
    let bytes = std::fs::read(pcap).map_err(|error| RecordingError::Read {
        path: pcap.display().to_string(),
        error,
    })?;
    let packets = read_pcap(&bytes)?;
    let start = packets.iter().map(|p| p.at_us).min().unwrap_or(0);
    let end = packets.iter().map(|p| p.at_us).max().unwrap_or(0);
    // A packet may not reach past the capture's length (plus a second): an RTP
    // timestamp that jumps ahead cannot make the WAV longer than the call.
    let limit =
        ((end - start).saturating_mul(u64::from(RATE)) / 1_000_000) as usize + RATE as usize;
    let limit = limit.min(MAX_SAMPLES);
    let caller = place(&packets, caller_ports, start, limit);
    let far = place(&packets, far_ports, start, limit);
    let decoded = packets
        .iter()
        .filter(|p| {
            matches!(p.pt, 0 | 8)
                && (caller_ports.contains(&p.dst_port) || far_ports.contains(&p.dst_port))
        })
        .count();
    let len = caller.len().max(far.len());
    let channels = if dual { 2 } else { 1 };
    let mut pcm = Vec::with_capacity(len * channels as usize);
    for i in 0..len {
        let (l, r) = (at(&caller, i), at(&far, i));
        if dual {
            pcm.extend([l, r]);
        } else {
            pcm.push((i32::from(l) + i32::from(r)).clamp(-32768, 32767) as i16);
        }
    }
    write_wav(wav, channels, &pcm).map_err(|error| RecordingError::Write {
        path: wav.display().to_string(),
        error,
    })?;
    Ok(Written {
        samples: len,
        channels,
        packets: decoded,
    })
}

fn at(track: &[i16], i: usize) -> i16 {
    track.get(i).copied().unwrap_or(0)
}

/// One track from the G.711 packets sent to `ports`, silence where none came, at
/// most `limit` samples.
fn place(packets: &[Packet], ports: &[u16], start_us: u64, limit: usize) -> Vec<i16> {
    let mut track: Vec<i16> = Vec::new();
    // SSRC → (sample offset of its first packet, its first timestamp).
    let mut streams: HashMap<u32, (usize, u32)> = HashMap::new();
    for p in packets.iter().filter(|p| ports.contains(&p.dst_port)) {
        let decode: fn(u8) -> i16 = match p.pt {
            8 => alaw,
            0 => ulaw,
            _ => continue,
        };
        let (base, first_ts) = *streams.entry(p.ssrc).or_insert_with(|| {
            let offset = (p
                .at_us
                .saturating_sub(start_us)
                .saturating_mul(u64::from(RATE))
                / 1_000_000) as usize;
            (offset, p.timestamp)
        });
        let pos = base + p.timestamp.wrapping_sub(first_ts) as usize;
        let end = pos.saturating_add(p.payload.len());
        if end > limit {
            continue;
        }
        if track.len() < end {
            track.resize(end, 0);
        }
        for (slot, &b) in track[pos..end].iter_mut().zip(&p.payload) {
            *slot = decode(b);
        }
    }
    track
}

/// The RTP packets of a pcap of raw IPv4 (linktype 101 or 228) or Ethernet (1).
fn read_pcap(b: &[u8]) -> Result<Vec<Packet>, RecordingError> {
    let header = b.get(..24).ok_or(RecordingError::NotPcap)?;
    let magic = [header[0], header[1], header[2], header[3]];
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => return Err(RecordingError::NotPcap),
    };
    let u32_at = |s: &[u8], i: usize| -> u32 {
        let w = [s[i], s[i + 1], s[i + 2], s[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let skip = match u32_at(header, 20) {
        101 | 228 => 0,
        1 => 14,
        _ => return Err(RecordingError::NotPcap),
    };
    let mut out = Vec::new();
    let mut pos = 24;
    while let Some(rec) = b.get(pos..pos + 16) {
        let (secs, frac, caplen) = (u32_at(rec, 0), u32_at(rec, 4), u32_at(rec, 8) as usize);
        let Some(data) = b.get(pos + 16..pos + 16 + caplen) else {
            break; // a truncated last record (the file was still being written)
        };
        pos += 16 + caplen;
        let us = if nanos {
            u64::from(frac) / 1000
        } else {
            u64::from(frac)
        };
        if let Some(p) = data
            .get(skip..)
            .and_then(|ip| rtp_of(ip, u64::from(secs) * 1_000_000 + us))
        {
            out.push(p);
        }
    }
    Ok(out)
}

/// The RTP packet in an IPv4/UDP datagram.
fn rtp_of(ip: &[u8], at_us: u64) -> Option<Packet> {
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let udp = ip.get(ihl..)?;
    let dst_port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let rtp = udp.get(8..)?;
    if rtp.len() < 12 || rtp[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(rtp[0] & 0x0f);
    let mut start = 12 + cc * 4;
    if rtp[0] & 0x10 != 0 {
        let ext = rtp.get(start + 2..start + 4)?;
        start += 4 + usize::from(u16::from_be_bytes([ext[0], ext[1]])) * 4;
    }
    let mut end = rtp.len();
    if rtp[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*rtp.last()?))?;
    }
    Some(Packet {
        at_us,
        dst_port,
        pt: rtp[1] & 0x7f,
        timestamp: u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]),
        ssrc: u32::from_be_bytes([rtp[8], rtp[9], rtp[10], rtp[11]]),
        payload: rtp.get(start..end)?.to_vec(),
    })
}

/// G.711 A-law to linear (ITU-T G.711).
pub fn alaw(a: u8) -> i16 {
    let a = a ^ 0x55;
    let seg = (a >> 4) & 7;
    let mant = i16::from(a & 0x0f);
    let mag = match seg {
        0 => (mant << 4) + 8,
        _ => ((mant << 4) + 0x108) << (seg - 1),
    };
    if a & 0x80 != 0 { mag } else { -mag }
}

/// G.711 μ-law to linear (ITU-T G.711).
pub fn ulaw(u: u8) -> i16 {
    let u = !u;
    let seg = (u >> 4) & 7;
    let mag = (((i16::from(u & 0x0f) << 3) + 0x84) << seg) - 0x84;
    if u & 0x80 != 0 { -mag } else { mag }
}

/// Writes 16-bit PCM at 8 kHz.
fn write_wav(path: &Path, channels: u16, pcm: &[i16]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let data_len = u32::try_from(pcm.len() * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * u32::from(channels) * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    let tmp = path.with_extension("wav.part");
    std::fs::write(&tmp, out)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One captured packet: (µs, dst port, ssrc, ts, pt, payload).
    type Captured = (u64, u16, u32, u32, u8, Vec<u8>);

    /// A pcap (linktype 101) of `packets`.
    fn pcap(packets: &[Captured]) -> Vec<u8> {
        let mut b = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        b.extend([0u8; 8]);
        b.extend(65535u32.to_le_bytes());
        b.extend(101u32.to_le_bytes());
        for (at, port, ssrc, ts, pt, payload) in packets {
            let mut rtp = vec![0x80, *pt, 0, 1];
            rtp.extend(ts.to_be_bytes());
            rtp.extend(ssrc.to_be_bytes());
            rtp.extend(payload);
            let mut udp = vec![0x75, 0x30];
            udp.extend(port.to_be_bytes());
            udp.extend(((8 + rtp.len()) as u16).to_be_bytes());
            udp.extend([0, 0]);
            udp.extend(rtp);
            let mut ip = vec![
                0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
            ];
            ip.extend(udp);
            b.extend(((at / 1_000_000) as u32).to_le_bytes());
            b.extend(((at % 1_000_000) as u32).to_le_bytes());
            b.extend((ip.len() as u32).to_le_bytes());
            b.extend((ip.len() as u32).to_le_bytes());
            b.extend(ip);
        }
        b
    }

    #[test]
    fn g711_decodes_as_the_standard_says() {
        assert_eq!(alaw(0xd5), 8);
        assert_eq!(alaw(0x55), -8);
        assert_eq!(alaw(0xaa), 32256);
        assert_eq!(ulaw(0xff), 0);
        assert_eq!(ulaw(0x80), 32124);
        assert_eq!(ulaw(0x00), -32124);
    }

    #[test]
    fn dual_puts_each_party_on_its_channel_and_keeps_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let (p, w) = (dir.path().join("c.pcap"), dir.path().join("c.wav"));
        std::fs::write(
            &p,
            pcap(&[
                (1_000_000, 30000, 1, 100, 8, vec![0xaa; 160]),
                (1_000_000, 30002, 2, 900, 0, vec![0x80; 160]),
                // 40 ms later a packet 320 samples on: the 160 between stay silent.
                (1_040_000, 30000, 1, 420, 8, vec![0xaa; 160]),
                (1_040_000, 30004, 3, 0, 101, vec![1, 2, 3, 4]),
            ]),
        )
        .unwrap();
        let out = pcap_to_wav(&p, &[30000], &[30002], true, &w).unwrap();
        assert_eq!(
            out,
            Written {
                samples: 480,
                channels: 2,
                packets: 3
            }
        );
        let wav = std::fs::read(&w).unwrap();
        let s = |i: usize| i16::from_le_bytes([wav[44 + 2 * i], wav[45 + 2 * i]]);
        assert_eq!((s(0), s(1)), (32256, 32124));
        assert_eq!((s(2 * 200), s(2 * 200 + 1)), (0, 0));
        assert_eq!(s(2 * 400), 32256);
        assert!(pcap_to_wav(&w, &[1], &[2], true, &p).is_err());
        // A timestamp 3 hours ahead in a 40 ms capture is dropped, not written.
        std::fs::write(
            &p,
            pcap(&[
                (1_000_000, 30000, 1, 0, 8, vec![0xaa; 160]),
                (1_040_000, 30000, 1, 3 * 3600 * 8000, 8, vec![0xaa; 160]),
            ]),
        )
        .unwrap();
        let out = pcap_to_wav(&p, &[30000], &[30002], false, &w).unwrap();
        assert_eq!(out.samples, 160);
    }
}
