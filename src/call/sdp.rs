//! The SDP filter of the B2BUA (docs/architecture.md §5): offers and answers pass between the
//! legs with audio restricted to PCMA, PCMU and telephone-event. Other media streams
//! are disabled (port 0), keeping the m-line order that RFC 3264 requires.

/// Why an SDP body cannot be relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Not text, or no `m=` line at all.
    #[error("not an SDP session description")]
    NotSdp,
    /// No audio stream offers PCMA or PCMU.
    #[error("no common codec: callflow carries PCMA, PCMU and telephone-event")]
    NoCodec,
}

/// Codecs callflow lets through, by rtpmap encoding name.
const ALLOWED: [&str; 3] = ["PCMA", "PCMU", "telephone-event"];

/// Static payload types of the allowed codecs (RFC 3551).
fn static_allowed(pt: &str) -> bool {
    pt == "0" || pt == "8"
}

/// A short list kept on the stack: an SDP body's lines, a media line's formats, its
/// rtpmaps (a filter per offer and answer allocates only its output).
type Few<T, const N: usize> = smallvec::SmallVec<[T; N]>;

/// Filters an SDP body; the result keeps at least one audio stream with PCMA or PCMU.
pub fn filter(body: &[u8]) -> Result<String, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotSdp)?;
    let lines: Few<&str, 24> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let first_m = lines
        .iter()
        .position(|l| l.starts_with("m="))
        .ok_or(SdpError::NotSdp)?;
    let mut out = String::with_capacity(text.len() + 2);
    for line in &lines[..first_m] {
        push_line(&mut out, line);
    }
    let mut usable_audio = false;
    let mut i = first_m;
    while i < lines.len() {
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with("m="))
            .map_or(lines.len(), |p| i + 1 + p);
        usable_audio |= filter_media(&lines[i..end], &mut out);
        i = end;
    }
    if !usable_audio {
        return Err(SdpError::NoCodec);
    }
    Ok(out)
}

/// Appends `line` and its CRLF.
fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push_str("\r\n");
}

/// Restricts a filtered SDP body to the voice codecs named in `codecs` (encoding
/// names, any case; telephone-event stays): a trunk's codecs.
pub fn restrict(body: &[u8], codecs: &[String]) -> Result<String, SdpError> {
    let allowed = |name: &str| {
        name.eq_ignore_ascii_case("telephone-event")
            || codecs.iter().any(|c| c.eq_ignore_ascii_case(name))
    };
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotSdp)?;
    let mut out = String::with_capacity(text.len());
    let mut dropped: Vec<String> = Vec::new();
    let mut voice = false;
    let names_of = |section: &[&str]| -> Vec<(String, String)> {
        rtpmap_names(section)
            .into_iter()
            .map(|(p, n)| (p.to_string(), n.to_string()))
            .collect()
    };
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(m) = line.strip_prefix("m=audio ") {
            let end = lines[i + 1..]
                .iter()
                .position(|l| l.starts_with("m="))
                .map_or(lines.len(), |p| i + 1 + p);
            let names = names_of(&lines[i..end]);
            let name_of = |pt: &str| -> String {
                names.iter().find(|(p, _)| p == pt).map_or_else(
                    || match pt {
                        "0" => "PCMU".to_string(),
                        "8" => "PCMA".to_string(),
                        _ => String::new(),
                    },
                    |(_, n)| n.clone(),
                )
            };
            let parts: Vec<&str> = m.split_whitespace().collect();
            let (head, pts) = parts.split_at(parts.len().min(2));
            let keep: Vec<&str> = pts
                .iter()
                .copied()
                .filter(|pt| allowed(&name_of(pt)))
                .collect();
            dropped = pts
                .iter()
                .filter(|pt| !keep.contains(pt))
                .map(|pt| pt.to_string())
                .collect();
            voice |= keep
                .iter()
                .any(|pt| !name_of(pt).eq_ignore_ascii_case("telephone-event"));
            out.push_str(&format!(
                "m=audio {} {}\r\n",
                head.join(" "),
                keep.join(" ")
            ));
            continue;
        }
        if line.starts_with("m=") {
            dropped.clear();
        }
        let pt = line
            .strip_prefix("a=rtpmap:")
            .or_else(|| line.strip_prefix("a=fmtp:"))
            .and_then(|r| r.split_whitespace().next());
        if pt.is_some_and(|pt| dropped.iter().any(|d| d == pt)) || line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if voice {
        Ok(out)
    } else {
        Err(SdpError::NoCodec)
    }
}

/// An answer that refuses every stream of `offer` (RFC 3264 §6: each m-line kept,
/// its port 0). It completes an offer/answer exchange that must end, such as a
/// 2xx's offer when the call is given up before its ACK (RFC 3261 §13.2.2.4).
pub fn refuse(offer: &[u8]) -> String {
    let text = String::from_utf8_lossy(offer);
    let mut out = format!(
        "v=0\r\no=callflow {} 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n",
        rand::random::<u32>()
    );
    for m in text.lines().filter_map(|l| l.trim_end().strip_prefix("m=")) {
        let parts: Vec<&str> = m.split_whitespace().collect();
        if let [media, _port, proto, fmt, ..] = parts.as_slice() {
            out.push_str(&format!("m={media} 0 {proto} {fmt}\r\n"));
        }
    }
    out
}

/// Filters one media section; true when it is an audio stream with PCMA or PCMU left.
fn filter_media(section: &[&str], out: &mut String) -> bool {
    let m = section[0];
    let parts: Few<&str, 16> = m[2..].split_whitespace().collect();
    if parts.len() < 4 || parts[0] != "audio" {
        // Not audio: disable the stream, keep its place.
        out.push_str("m=");
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(if i == 1 { "0" } else { part });
        }
        out.push_str("\r\n");
        return false;
    }
    let names = rtpmap_names(section);
    let keep: Few<&str, 16> = parts[3..]
        .iter()
        .copied()
        .filter(|pt| match names.iter().find(|(p, _)| p == pt) {
            Some((_, name)) => ALLOWED.iter().any(|a| a.eq_ignore_ascii_case(name)),
            None => static_allowed(pt),
        })
        .collect();
    let has_voice = keep.iter().any(|pt| {
        names
            .iter()
            .find(|(p, _)| p == pt)
            .map_or(static_allowed(pt), |(_, n)| {
                !n.eq_ignore_ascii_case("telephone-event")
            })
    });
    let (port, formats) = if has_voice {
        (parts[1], &keep[..])
    } else {
        ("0", &parts[3..])
    };
    for piece in ["m=", parts[0], " ", port, " ", parts[2]] {
        out.push_str(piece);
    }
    for format in formats {
        out.push(' ');
        out.push_str(format);
    }
    out.push_str("\r\n");
    if !has_voice {
        return false;
    }
    for line in &section[1..] {
        let pt = line
            .strip_prefix("a=rtpmap:")
            .or_else(|| line.strip_prefix("a=fmtp:"))
            .or_else(|| line.strip_prefix("a=rtcp-fb:"))
            .and_then(|r| r.split_whitespace().next());
        match pt {
            Some(pt) if !keep.contains(&pt) => {}
            _ => push_line(out, line),
        }
    }
    true
}

/// `(payload type, encoding name)` from the section's rtpmap lines.
fn rtpmap_names<'a>(section: &[&'a str]) -> Few<(&'a str, &'a str), 16> {
    section
        .iter()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|r| {
            let (pt, rest) = r.split_once(' ')?;
            Some((pt, rest.split('/').next()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9 8 0 96 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\nm=video 5000 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n";

    #[test]
    fn keeps_g711_and_dtmf_only() {
        let out = filter(OFFER.as_bytes()).unwrap();
        assert!(out.contains("m=audio 4000 RTP/AVP 8 0 101\r\n"), "{out}");
        assert!(!out.contains("opus") && !out.contains("G722") && !out.contains("useinbandfec"));
        assert!(out.contains("a=fmtp:101 0-15\r\n") && out.contains("a=sendrecv\r\n"));
        assert!(out.contains("m=video 0 RTP/AVP 97\r\n"));
    }

    #[test]
    fn nothing_left_is_an_error() {
        let only_opus = "v=0\r\nm=audio 4000 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(filter(only_opus.as_bytes()), Err(SdpError::NoCodec));
        assert_eq!(filter(b"hello"), Err(SdpError::NotSdp));
    }

    #[test]
    fn a_trunk_restricts_its_codecs() {
        let filtered = filter(OFFER.as_bytes()).unwrap();
        let out = restrict(filtered.as_bytes(), &["pcma".into()]).unwrap();
        assert!(out.contains("m=audio 4000 RTP/AVP 8 101\r\n"), "{out}");
        assert!(!out.contains("a=rtpmap:0") && out.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(out.contains("m=video 0 RTP/AVP 97\r\n"));
        let only_pcmu =
            "v=0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(
            restrict(only_pcmu.as_bytes(), &["PCMA".into()]),
            Err(SdpError::NoCodec)
        );
    }

    #[test]
    fn refusal_keeps_every_m_line_with_port_zero() {
        let out = refuse(OFFER.as_bytes());
        assert!(out.contains("m=audio 0 RTP/AVP 9\r\n"), "{out}");
        assert!(out.contains("m=video 0 RTP/AVP 97\r\n"), "{out}");
        assert_eq!(out.matches("m=").count(), 2);
    }
}
