//! Ogg Opus files (RFC 3533 pages carrying RFC 7845 Opus packets): the
//! writer call recordings use, and a reader for checking what was written.
//!
//! One logical stream per file: an `OpusHead` page, an `OpusTags` page, then
//! audio pages of up to ~1 s of 20 ms packets each, the last one flagged
//! end-of-stream. Granule positions count 48 kHz samples, as RFC 7845 says,
//! whatever the input rate.

use std::io::Write;

use super::AudioError;

/// CRC-32 of Ogg (polynomial 0x04C11DB7, no reflection, initial 0).
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04C1_1DB7
                } else {
                    r << 1
                };
            }
            *e = r;
        }
        t
    });
    data.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ t[((crc >> 24) as u8 ^ b) as usize]
    })
}

/// Packets per audio page: 50 × 20 ms = 1 s.
const PACKETS_PER_PAGE: usize = 50;

/// Writes one Opus stream into an Ogg file.
#[derive(Debug)]
pub struct OggOpusWriter<W: Write> {
    out: W,
    serial: u32,
    seq: u32,
    granule: u64,
    /// 48 kHz samples per packet.
    per_packet: u64,
    packets: Vec<Vec<u8>>,
}

impl<W: Write> OggOpusWriter<W> {
    /// Start a stream: writes the two header pages. `input_rate` is the
    /// rate the audio was encoded from, `pre_skip` the encoder's look-ahead
    /// in 48 kHz samples, `frame_ms` the packet duration.
    pub fn new(
        mut out: W,
        serial: u32,
        input_rate: u32,
        pre_skip: u16,
        frame_ms: u32,
    ) -> Result<Self, AudioError> {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&pre_skip.to_le_bytes());
        head.extend_from_slice(&input_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        let vendor = b"frontdesk";
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes()); // no comments
        out.write_all(&page(serial, 0, &[head], 0, 0x02))
            .map_err(io)?;
        out.write_all(&page(serial, 1, &[tags], 0, 0x00))
            .map_err(io)?;
        Ok(OggOpusWriter {
            out,
            serial,
            seq: 2,
            granule: 0,
            per_packet: u64::from(frame_ms) * 48,
            packets: Vec::with_capacity(PACKETS_PER_PAGE),
        })
    }

    /// Add one encoded packet (a frame of `frame_ms`).
    pub fn push(&mut self, packet: Vec<u8>) -> Result<(), AudioError> {
        // A full page is written only when more audio follows, so the last
        // page (flagged end-of-stream by `finish`) always carries packets.
        if self.packets.len() >= PACKETS_PER_PAGE {
            self.flush_page(false)?;
        }
        self.packets.push(packet);
        self.granule += self.per_packet;
        Ok(())
    }

    /// Write the last page (end of stream) and hand back the writer.
    pub fn finish(mut self) -> Result<W, AudioError> {
        self.flush_page(true)?;
        self.out.flush().map_err(io)?;
        Ok(self.out)
    }

    fn flush_page(&mut self, last: bool) -> Result<(), AudioError> {
        if self.packets.is_empty() && !last {
            return Ok(());
        }
        let packets = std::mem::take(&mut self.packets);
        let p = page(
            self.serial,
            self.seq,
            &packets,
            self.granule,
            if last { 0x04 } else { 0 },
        );
        self.seq += 1;
        self.out.write_all(&p).map_err(io)
    }
}

/// One page holding `packets` whole.
fn page(serial: u32, seq: u32, packets: &[Vec<u8>], granule: u64, flags: u8) -> Vec<u8> {
    {
        let mut lacing = Vec::new();
        for p in packets {
            let mut n = p.len();
            while n >= 255 {
                lacing.push(255u8);
                n -= 255;
            }
            lacing.push(n as u8);
        }
        let body: usize = packets.iter().map(Vec::len).sum();
        let mut page = Vec::with_capacity(27 + lacing.len() + body);
        page.extend_from_slice(b"OggS");
        page.push(0); // version
        page.push(flags);
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&serial.to_le_bytes());
        page.extend_from_slice(&seq.to_le_bytes());
        page.extend_from_slice(&0u32.to_le_bytes()); // CRC, filled below
        page.push(lacing.len() as u8);
        page.extend_from_slice(&lacing);
        for p in packets {
            page.extend_from_slice(p);
        }
        let crc = crc32(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        page
    }
}

fn io(e: std::io::Error) -> AudioError {
    AudioError::Io(e.to_string())
}

/// What [`read_ogg_opus`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggOpus {
    /// `OpusHead` input sample rate.
    pub input_rate: u32,
    /// `OpusHead` pre-skip, 48 kHz samples.
    pub pre_skip: u16,
    /// The audio packets, in order.
    pub packets: Vec<Vec<u8>>,
    /// Granule position of the last page.
    pub last_granule: u64,
}

/// The packets of an Ogg Opus file, checked: page CRCs, header packets, an
/// end-of-stream page.
pub fn read_ogg_opus(data: &[u8]) -> Result<OggOpus, AudioError> {
    let bad = |m: &str| AudioError::Format(m.to_string());
    let mut pos = 0;
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut last_granule = 0;
    let mut eos = false;
    while pos < data.len() {
        let h = data
            .get(pos..pos + 27)
            .ok_or_else(|| bad("truncated page header"))?;
        if &h[..4] != b"OggS" {
            return Err(bad("missing OggS capture pattern"));
        }
        let nseg = h[26] as usize;
        let lacing = data
            .get(pos + 27..pos + 27 + nseg)
            .ok_or_else(|| bad("truncated lacing"))?;
        let body_len: usize = lacing.iter().map(|&l| l as usize).sum();
        let end = pos + 27 + nseg + body_len;
        let page = data
            .get(pos..end)
            .ok_or_else(|| bad("truncated page body"))?;
        let mut check = page.to_vec();
        check[22..26].copy_from_slice(&[0; 4]);
        let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
        if crc32(&check) != stored {
            return Err(bad("page CRC mismatch"));
        }
        let mut granule = [0u8; 8];
        granule.copy_from_slice(&h[6..14]);
        last_granule = u64::from_le_bytes(granule);
        eos = h[5] & 0x04 != 0;
        let mut at = pos + 27 + nseg;
        for &l in lacing {
            partial.extend_from_slice(&data[at..at + l as usize]);
            at += l as usize;
            if l < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        pos = end;
    }
    if !eos {
        return Err(bad("no end-of-stream page"));
    }
    if packets.len() < 2
        || !packets[0].starts_with(b"OpusHead")
        || !packets[1].starts_with(b"OpusTags")
    {
        return Err(bad("not an Ogg Opus stream"));
    }
    let head = &packets[0];
    if head.len() < 19 {
        return Err(bad("short OpusHead"));
    }
    let pre_skip = u16::from_le_bytes([head[10], head[11]]);
    let rate = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    Ok(OggOpus {
        input_rate: rate,
        pre_skip,
        packets: packets.split_off(2),
        last_granule,
    })
}

#[cfg(test)]
mod tests {
    use super::super::opus::{OpusDecoder, OpusEncoder};
    use super::*;

    #[test]
    fn the_crc_is_ogg_s() {
        // The CRC of "OggS" with Ogg's parameters (no reflection, init 0).
        assert_eq!(crc32(b""), 0);
        assert_ne!(crc32(b"OggS"), crc32(b"OggT"));
    }

    #[test]
    fn an_encoded_tone_reads_back_and_decodes() {
        let mut enc = OpusEncoder::new(8000).expect("encoder");
        let pre_skip = (enc.lookahead().expect("lookahead") * 6) as u16;
        let mut w = OggOpusWriter::new(Vec::new(), 7, 8000, pre_skip, 20).expect("writer");
        let tone: Vec<i16> = (0..8000 * 3)
            .map(|i| {
                ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 8000.0).sin() * 8000.0) as i16
            })
            .collect();
        let mut n = 0;
        for f in tone.chunks_exact(160) {
            let mut p = Vec::new();
            enc.encode(f, &mut p).expect("encode");
            w.push(p).expect("push");
            n += 1;
        }
        let bytes = w.finish().expect("finish");
        let OggOpus {
            input_rate: rate,
            pre_skip: skip,
            packets,
            last_granule: granule,
        } = read_ogg_opus(&bytes).expect("valid Ogg Opus");
        assert_eq!((rate, skip), (8000, pre_skip));
        assert_eq!(packets.len(), n);
        assert_eq!(granule, n as u64 * 960, "48 kHz granules");
        let mut dec = OpusDecoder::new(8000).expect("decoder");
        let mut pcm = Vec::new();
        for p in &packets {
            dec.decode(p, &mut pcm).expect("decode");
        }
        let energy: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
        assert!(
            energy.sqrt() > 2000.0,
            "the tone survived: rms {}",
            energy.sqrt()
        );
        // A flipped byte fails the page CRC.
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x55;
        assert!(read_ogg_opus(&bad).is_err());
    }
}
