//! Streaming STT / LLM / TTS provider traits and implementations.
