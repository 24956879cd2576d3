//! The RFC 9293 state machine. PLACEHOLDER: being written.
