//! The SDP filter of the B2BUA (docs/architecture.md §5): offers and answers pass between the
//! legs with audio restricted to PCMA, PCMU and telephone-event. Other media streams
//! are disabled (port 0), keeping the m-line order that RFC 3264 requires.

use bytes::Bytes;

use crate::sip::Message;

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

/// The session description `m` carries: its body, or, when the body is
/// `multipart/*` (RFC 5621; a SIP-I carrier's INVITE carries SDP and ISUP so), the
/// content of its first `application/sdp` part, as a slice of the body. A multipart
/// body without one gives an empty description.
pub fn body_of(m: &Message) -> Bytes {
    let Some(boundary) = m.content_type().and_then(multipart_boundary) else {
        return m.body.clone();
    };
    parts(&m.body, boundary)
        .find(|(headers, _)| part_is_sdp(headers))
        .map_or_else(Bytes::new, |(_, content)| m.body.slice_ref(content))
}

/// The boundary of a `multipart/*` content type (RFC 2046 §5.1.1), quoted or not.
pub fn multipart_boundary(content_type: &str) -> Option<&str> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind
        .get(..10)
        .is_some_and(|k| k.eq_ignore_ascii_case("multipart/"))
    {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

/// Whether a body part's headers say `application/sdp`.
fn part_is_sdp(headers: &[u8]) -> bool {
    headers.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        name.eq_ignore_ascii_case(b"content-type")
            && value
                .split(|&b| b == b';')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"application/sdp"))
    })
}

/// The parts of a multipart body (RFC 2046 §5.1.1): each part's header section and
/// content, between delimiter lines `--boundary` (the last one `--boundary--`).
fn parts<'a>(body: &'a [u8], boundary: &str) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    let delimiter = format!("--{boundary}");
    // Where each delimiter line starts: at the body's start or after a line break.
    let mut starts: Vec<usize> = memchr::memmem::find_iter(body, delimiter.as_bytes())
        .filter(|&at| at == 0 || body[at - 1] == b'\n')
        .collect();
    starts.dedup();
    let bounds: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    bounds.into_iter().filter_map(move |(from, to)| {
        let after = body[from + delimiter.len()..].strip_prefix(b"--");
        if after.is_some() {
            return None; // the close delimiter: no part follows
        }
        // The rest of the delimiter line (transport padding), then the part.
        let line_end = from + memchr::memchr(b'\n', &body[from..to])? + 1;
        // The line break before the next delimiter belongs to it.
        let mut end = to;
        if end > line_end && body[end - 1] == b'\n' {
            end -= 1;
            if end > line_end && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        let part = &body[line_end..end];
        // A part without headers starts with its blank line.
        let blank = if part.starts_with(b"\r\n") {
            Some((0, 2))
        } else if part.starts_with(b"\n") {
            Some((0, 1))
        } else {
            memchr::memmem::find(part, b"\r\n\r\n")
                .map(|i| (i, i + 4))
                .or_else(|| memchr::memmem::find(part, b"\n\n").map(|i| (i, i + 2)))
        };
        Some(match blank {
            Some((h, c)) => (&part[..h], &part[c..]),
            None => (part, &part[part.len()..]),
        })
    })
}

/// Filters an SDP body; the result keeps at least one audio stream with PCMA or PCMU.
pub fn filter(body: &[u8]) -> Result<String, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotSdp)?;
    // Lines found by memchr (`str::lines` searches for each '\n' with a `char`
    // searcher); the '\r' of each CRLF goes with the trimming.
    let lines: Few<&str, 24> = crate::sip::uri::split_byte(text, b'\n')
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

    /// A message with `content_type` and `body`.
    fn carrying(content_type: &str, body: &[u8]) -> Message {
        let mut m = Message::request(
            crate::sip::method::Method::Invite,
            crate::sip::Uri::parse("sip:+918047112233@example.com").unwrap(),
        );
        m.set_body(content_type, Bytes::copy_from_slice(body));
        m
    }

    /// The SDP of a SIP-I carrier's INVITE is found among its parts (RFC 5621), with
    /// the boundary quoted or not and lines ended by CRLF or LF; a plain body is
    /// itself; a multipart body without SDP has none.
    #[test]
    fn the_sdp_part_of_a_multipart_body_is_found() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n";
        let mut sip_i = format!(
            "--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n\
             --unique-boundary-1\r\nContent-Type: application/ISUP;version=itu-t92+\r\n\
             Content-Disposition: signal;handling=optional\r\n\r\n"
        )
        .into_bytes();
        sip_i.extend_from_slice(&[
            0x01, 0x00, 0x49, 0x00, 0x00, 0x03, 0x02, 0x00, 0x07, 0x04, 0x10, 0x00, 0x0d, 0x0a,
        ]);
        sip_i.extend_from_slice(b"\r\n--unique-boundary-1--\r\n");
        for ct in [
            "multipart/mixed;boundary=unique-boundary-1",
            "Multipart/Mixed; boundary=\"unique-boundary-1\"",
        ] {
            let m = carrying(ct, &sip_i);
            assert_eq!(body_of(&m), sdp.as_bytes(), "{ct}");
            assert!(filter(&body_of(&m)).is_ok());
        }
        // The ISUP first, a preamble, LF line ends.
        let lf = format!(
            "preamble\n--b\nContent-Type: application/isup\n\nxx\n--b\ncontent-type:application/sdp\n\n{}\n--b--\n",
            sdp.replace("\r\n", "\n")
        );
        let m = carrying("multipart/alternative; boundary=b", lf.as_bytes());
        assert_eq!(body_of(&m), sdp.replace("\r\n", "\n").as_bytes());
        // No SDP part; a plain body; a part without headers.
        let isup_only = "--b\r\nContent-Type: application/isup\r\n\r\nxx\r\n--b--\r\n";
        assert!(
            body_of(&carrying(
                "multipart/mixed;boundary=b",
                isup_only.as_bytes()
            ))
            .is_empty()
        );
        assert_eq!(
            body_of(&carrying("application/sdp", sdp.as_bytes())),
            sdp.as_bytes()
        );
        let bare = "--b\r\n\r\nv=0\r\n--b--";
        assert!(body_of(&carrying("multipart/mixed;boundary=b", bare.as_bytes())).is_empty());
        // Cut short or hostile: nothing found, nothing broken.
        for junk in [
            "--b",
            "--b\r\n",
            "--b\r\nContent-Type: application/sdp",
            "\n--b\n--b\n",
        ] {
            let _ = body_of(&carrying("multipart/mixed;boundary=b", junk.as_bytes()));
        }
    }
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
