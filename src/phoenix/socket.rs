//! The per-socket state machine: joins, leaves, refs, heartbeats, idle timeout.
//! CONTRACT STUB: the phoenix helper fills this in.
