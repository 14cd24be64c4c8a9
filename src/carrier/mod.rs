//! Carrier wire formats ⇄ carrier-neutral [`CallEvent`] / [`CarrierCommand`].
//!
//! Each carrier is one module implementing [`CarrierCodec`]: it turns the
//! carrier's WebSocket messages into [`CallEvent`]s (decoding audio to 8 kHz
//! PCM into a buffer it owns and reuses) and renders [`CarrierCommand`] commands as
//! the carrier's messages. Adding Telnyx or Vonage means writing one such
//! module; nothing else changes. Codecs never panic on input: every problem
//! is a [`CarrierError`] that the driver logs, counts, and survives.
//!
//! [`playout`] emulates what a carrier does with the audio we send (its
//! playout buffer, mark echoes, `clear`): the simulator, the load generator
//! and the tests all use it.

pub mod playout;
pub mod twilio;
pub mod ws;

use std::collections::BTreeMap;

use crate::pii::Pii;

/// What the carrier told us, independent of its wire format.
#[derive(Debug, PartialEq)]
pub enum CallEvent<'a> {
    /// The socket is up; nothing to do yet.
    Connected,
    /// The stream started: identifiers and custom parameters.
    Start(Box<StreamStart>),
    /// Caller audio, decoded to 8 kHz linear PCM.
    Media {
        /// Milliseconds since stream start, when the carrier says.
        timestamp_ms: Option<u64>,
        /// The samples (any length; the core re-frames them).
        pcm: &'a [i16],
    },
    /// A keypad digit.
    Dtmf(char),
    /// The carrier echoed a mark we sent: played, or discarded by a clear.
    Mark(String),
    /// The stream ended (hang-up or stream stopped).
    Stop,
    /// A message we recognise but ignore (e.g. a non-inbound track).
    Ignored,
}

/// The `start` of a stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamStart {
    /// The carrier's stream id (Twilio `streamSid`), echoed on every outbound message.
    pub stream_sid: String,
    /// The carrier's call id (Twilio `callSid`).
    pub call_sid: String,
    /// The account (Twilio `accountSid`).
    pub account_sid: String,
    /// `<Parameter>` values from the TwiML (may hold phone numbers: masked in logs).
    pub custom_parameters: BTreeMap<String, Pii<String>>,
}

/// What we tell the carrier.
#[derive(Debug, Clone, PartialEq)]
pub enum CarrierCommand {
    /// Bot audio, 8 kHz PCM; the codec encodes it for the carrier.
    Media(Vec<i16>),
    /// A playback marker, echoed by the carrier when the audio before it has played.
    Mark(String),
    /// Drop all queued bot audio now (barge-in).
    Clear,
}

/// Why a carrier message was rejected. The call goes on.
///
/// These messages are logged, so they quote at most a short, plain excerpt
/// of carrier text (never a phone number or free text: those are masked by
/// [`crate::pii::mask`]) and never serde's message, which quotes values.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CarrierError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// An event name we do not know (quoted or masked by the codec).
    #[error("unknown event {0}")]
    UnknownEvent(String),
    /// The audio payload is not valid base64 / not whole samples / empty.
    #[error("bad media payload: {0}")]
    BadPayload(String),
    /// Larger than the configured bound.
    #[error("message of {0} bytes is over the size bound")]
    Oversize(usize),
    /// A binary frame where the carrier only sends text (or vice versa).
    #[error("unexpected {0} frame")]
    UnexpectedFrame(&'static str),
    /// A message for another stream, or before `start`.
    #[error("message out of place: {0}")]
    OutOfPlace(String),
}

/// One carrier's wire format.
pub trait CarrierCodec: Send + 'static {
    /// Short name for logs and metrics (`twilio`).
    fn name(&self) -> &'static str;
    /// Parse a text frame. The returned event may borrow the codec's audio buffer.
    fn parse_text(&mut self, text: &str) -> Result<CallEvent<'_>, CarrierError>;
    /// Parse a binary frame.
    fn parse_binary(&mut self, data: &[u8]) -> Result<CallEvent<'_>, CarrierError>;
    /// Render one outbound command as a text frame, appended to `out` (cleared by the caller).
    fn encode(&mut self, cmd: &CarrierCommand, out: &mut String);
}
