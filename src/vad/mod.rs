//! Voice activity detection (webrtc-vad + hysteresis) and the barge-in policy.
