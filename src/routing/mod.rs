//! Inbound call routing (stages 1–3 of the seed guide), TwiML rendering, IVR
//! menus, on-call rotation and warm transfer. Owned by a later issue.
