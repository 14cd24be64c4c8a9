//! Slack lead cards, SMS, the overnight queue with escalation, and signed
//! call-back links. Owned by a later issue; it drains the store's outbox.
