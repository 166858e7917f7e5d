//! Just enough SRTP (RFC 3711) to prove packets are encrypted with the key offered in
//! `a=crypto`: AES_CM_128_HMAC_SHA1_80's key derivation and decryption of the first
//! packets (rollover counter 0, key derivation rate 0).

use aes::Aes128;
use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine as _;

type Ctr = ctr::Ctr128BE<Aes128>;

/// The AES-CM keystream of `key` from `iv`, `n` bytes.
fn keystream(key: &[u8; 16], iv: [u8; 16], n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    Ctr::new(key.into(), &iv.into()).apply_keystream(&mut out);
    out
}

/// The session key with `label` (RFC 3711 §4.3.1), `n` bytes.
fn derive(master_key: &[u8; 16], master_salt: &[u8], label: u8, n: usize) -> Vec<u8> {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    iv[7] ^= label;
    keystream(master_key, iv, n)
}

/// The payload of SRTP packet `packet` (12-byte header, 10-byte tag) under the
/// `inline:` key `inline`; `None` when the key is not 30 bytes of base64.
pub fn decrypt(inline: &str, packet: &[u8]) -> Option<Vec<u8>> {
    let b64 = inline.split('|').next()?.trim();
    let master = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let key: [u8; 16] = master.get(..16)?.try_into().ok()?;
    let salt = master.get(16..30)?;
    let session_key: [u8; 16] = derive(&key, salt, 0x00, 16).try_into().ok()?;
    let session_salt = derive(&key, salt, 0x02, 14);
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(&session_salt);
    for (i, b) in packet[8..12].iter().enumerate() {
        iv[4 + i] ^= b;
    }
    iv[12] ^= (seq >> 8) as u8;
    iv[13] ^= seq as u8;
    let payload = packet.get(12..packet.len().checked_sub(10)?)?;
    let ks = keystream(&session_key, iv, payload.len());
    Some(payload.iter().zip(ks).map(|(p, k)| p ^ k).collect())
}
