//! Recording the calls frontdesk answers itself: both sides mixed to mono,
//! Opus in an Ogg file, one per call, under `[recording] dir`.
//!
//! The call loop only mixes: each inbound 20 ms caller frame is summed with
//! the next 20 ms of the bot's audio as the carrier plays it (bot audio is
//! queued as sent and consumed at the caller's pace; a `clear` drops what
//! the caller never heard). Encoding and file writes run on a blocking
//! thread fed by a bounded queue, so a slow disk never stalls the media
//! loop: a frame that does not fit is dropped and counted.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::audio::ogg::OggOpusWriter;
use crate::audio::opus::OpusEncoder;
use crate::audio::{AudioError, FRAME_SAMPLES, PHONE_RATE};
use crate::metrics::Metrics;

/// Mixed frames queued for the writer at most (10 s).
const QUEUE_FRAMES: usize = 500;

/// Bot audio held for mixing at most (the carrier holds little more: send-ahead is bounded).
const MAX_BOT_QUEUE: usize = PHONE_RATE as usize * 10;

/// One call's recording. Dropping it finishes the file.
pub struct CallRecording {
    tx: Option<mpsc::SyncSender<Vec<i16>>>,
    bot: VecDeque<i16>,
    metrics: Arc<Metrics>,
    path: PathBuf,
}

impl std::fmt::Debug for CallRecording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecording")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl CallRecording {
    /// Record into `{dir}/{call_sid}.ogg` through a writer thread (tracked by
    /// `tracker`, so a draining server waits for the file to be finished).
    /// `call_sid` is the carrier's validated id (`[A-Za-z0-9_-]`).
    pub fn start(
        dir: &Path,
        call_sid: &str,
        metrics: Arc<Metrics>,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Result<CallRecording, AudioError> {
        if call_sid.is_empty()
            || !call_sid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(AudioError::Io(
                "call id is not usable as a file name".into(),
            ));
        }
        let path = dir.join(format!("{call_sid}.ogg"));
        let mut enc = OpusEncoder::new(PHONE_RATE)?;
        let pre_skip = (enc.lookahead()? * 6).min(u16::MAX as usize) as u16;
        let serial = call_sid
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31) ^ u32::from(b));
        let (tx, rx) = mpsc::sync_channel::<Vec<i16>>(QUEUE_FRAMES);
        let span = tracing::Span::current();
        let (dir, file_path) = (dir.to_path_buf(), path.clone());
        // All file work (directory, create, headers, pages) on the blocking
        // thread: the call task never waits on the disk.
        tracker.spawn_blocking(move || {
            let _g = span.enter();
            let opened = std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::File::create(&file_path))
                .map_err(|e| AudioError::Io(e.to_string()))
                .and_then(|f| {
                    OggOpusWriter::new(
                        std::io::BufWriter::new(f),
                        serial,
                        PHONE_RATE,
                        pre_skip,
                        crate::audio::FRAME_MS,
                    )
                });
            let mut w = match opened {
                Ok(w) => w,
                Err(e) => {
                    // Dropping the receiver tells the call to stop sending.
                    tracing::warn!(error = %e, "recording: cannot create the file");
                    return;
                }
            };
            let mut packet = Vec::with_capacity(256);
            while let Ok(frame) = rx.recv() {
                packet.clear();
                if let Err(e) = enc.encode(&frame, &mut packet) {
                    tracing::warn!(error = %e, "recording: frame not encoded");
                    continue;
                }
                if let Err(e) = w.push(packet.clone()) {
                    tracing::warn!(error = %e, "recording: write failed; recording stops");
                    return;
                }
            }
            if let Err(e) = w.finish() {
                tracing::warn!(error = %e, "recording: could not finish the file");
            }
        });
        Ok(CallRecording {
            tx: Some(tx),
            bot: VecDeque::new(),
            metrics,
            path,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One caller frame arrived: mix it with the bot audio playing now.
    pub fn caller(&mut self, pcm: &[i16]) {
        let mut frame = Vec::with_capacity(FRAME_SAMPLES);
        for &s in pcm {
            let b = self.bot.pop_front().unwrap_or(0);
            frame.push(s.saturating_add(b));
        }
        // Frames are 20 ms; the carrier sends whole ones. Pad a short one.
        frame.resize(FRAME_SAMPLES, 0);
        if let Some(tx) = &self.tx {
            match tx.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(_)) => {
                    self.metrics.record_writes_dropped.fetch_add(1, Relaxed);
                }
                // The writer stopped (the file could not be written): stop.
                Err(mpsc::TrySendError::Disconnected(_)) => self.tx = None,
            }
        }
    }

    /// Bot audio was sent to the carrier.
    pub fn bot(&mut self, pcm: &[i16]) {
        let room = MAX_BOT_QUEUE.saturating_sub(self.bot.len());
        self.bot.extend(pcm.iter().take(room));
    }

    /// The carrier dropped its queued bot audio (barge-in).
    pub fn clear(&mut self) {
        self.bot.clear();
    }
}

impl Drop for CallRecording {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish the file.
        self.tx.take();
    }
}

/// Delete recordings in `dir` older than `retention`; returns how many.
pub fn sweep(dir: &Path, retention: Duration, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("ogg") {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > retention);
        if old && std::fs::remove_file(&p).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::ogg::read_ogg_opus;
    use crate::audio::opus::OpusDecoder;

    #[tokio::test]
    async fn both_sides_are_mixed_into_a_playable_file_and_a_clear_drops_unheard_bot_audio() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tracker = tokio_util::task::TaskTracker::new();
        let metrics = Arc::new(Metrics::default());
        let mut rec = CallRecording::start(dir.path(), "CArec1", metrics, &tracker).expect("start");
        let path = rec.path().to_path_buf();
        // 1 s: caller silent, bot talking (a loud tone); then a clear with 1 s
        // of bot audio still queued; then 1 s of caller tone alone.
        let tone = |n: usize, amp: f64| -> Vec<i16> {
            (0..n)
                .map(|i| {
                    ((i as f64 * 2.0 * std::f64::consts::PI * 300.0 / 8000.0).sin() * amp) as i16
                })
                .collect()
        };
        rec.bot(&tone(16000, 9000.0));
        for _ in 0..50 {
            rec.caller(&[0; FRAME_SAMPLES]);
        }
        rec.clear();
        for f in tone(8000, 3000.0).chunks(FRAME_SAMPLES) {
            rec.caller(f);
        }
        drop(rec);
        tracker.close();
        tracker.wait().await;
        let bytes = std::fs::read(&path).expect("file");
        let packets = read_ogg_opus(&bytes)
            .expect("a valid Ogg Opus file")
            .packets;
        assert_eq!(packets.len(), 100, "2 s of 20 ms packets");
        let mut dec = OpusDecoder::new(8000).expect("decoder");
        let mut pcm = Vec::new();
        for p in &packets {
            dec.decode(p, &mut pcm).expect("decode");
        }
        let rms = |s: &[i16]| {
            (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let first = rms(&pcm[800..8000]);
        let second = rms(&pcm[8800..16000]);
        assert!(first > 4000.0, "the bot side is in: {first}");
        assert!(
            (1000.0..3500.0).contains(&second),
            "after the clear only the caller: {second}"
        );
    }

    #[test]
    fn old_recordings_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("CA1.ogg"), b"x").expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        let now = SystemTime::now();
        assert_eq!(sweep(dir.path(), Duration::from_secs(3600), now), 0);
        let later = now + Duration::from_secs(7200);
        assert_eq!(sweep(dir.path(), Duration::from_secs(3600), later), 1);
        assert!(dir.path().join("notes.txt").exists());
    }
}
