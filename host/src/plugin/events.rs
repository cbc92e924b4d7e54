//! Handing the log's events to a guest: the WIT records they become, and how many fit
//! in one call.
//!
//! Shared by command handlers (folding a stream) and projections (applying a batch).
//! A list handed over in one call is copied into the instance's memory, so
//! [`slice_len`] keeps it to a given share of that memory; at least one event always
//! goes, so a call makes progress even past the share.

use crate::event_store::{Metadata, RecordedEvent};

use super::bindings::types as wit;

/// What an event costs in guest memory besides its data (stream, type, metadata and
/// the canonical ABI's record), roughly.
const EVENT_OVERHEAD: usize = 512;

/// How many of `events` (at least one) to hand over in one call: as many as fit in
/// `max_bytes` of event data.
pub(super) fn slice_len(events: &[RecordedEvent], max_bytes: usize) -> usize {
    let mut bytes = 0;
    events
        .iter()
        .position(|event| {
            bytes += event.data.get().len() + EVENT_OVERHEAD;
            bytes > max_bytes
        })
        .unwrap_or(events.len())
        .max(1)
}

/// A command's or an event's metadata as a guest sees it.
pub(super) fn to_wit_metadata(metadata: &Metadata) -> wit::Metadata {
    wit::Metadata {
        command_id: metadata.command_id.clone(),
        correlation_id: metadata.correlation_id.clone(),
        causation_id: metadata.causation_id.clone(),
        principal: metadata.principal.clone(),
        timestamp: metadata.timestamp.clone(),
        claims: metadata.claims.as_ref().map(|c| c.get().to_string()),
    }
}

/// An event as a guest sees it (the host's types, 0.2.0; a 0.1.0 guest gets it
/// converted).
pub(super) fn to_wit_event(event: &RecordedEvent) -> wit::Event {
    wit::Event {
        position: event.position,
        stream: event.stream.clone(),
        version: event.version,
        event_type: event.event_type.clone(),
        data: event.data.get().to_string(),
        metadata: to_wit_metadata(&event.metadata),
        timestamp: event.timestamp.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    /// An event whose data is `size` bytes of JSON.
    fn event(position: u64, size: usize) -> RecordedEvent {
        let data = format!("\"{}\"", "x".repeat(size - 2));
        RecordedEvent {
            position,
            stream: "account-1".into(),
            version: position,
            event_type: "deposited".into(),
            data: RawValue::from_string(data).unwrap(),
            metadata: Metadata {
                command_id: "c".into(),
                correlation_id: "c".into(),
                causation_id: "c".into(),
                principal: None,
                timestamp: "2026-01-01T00:00:00Z".into(),
                request_id: None,
                claims: None,
            },
            timestamp: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn as_many_events_as_fit_go_in_one_call() {
        let events: Vec<_> = (1..=10).map(|p| event(p, 488)).collect();
        // Each event costs 488 + 512 bytes.
        assert_eq!(slice_len(&events, 3000), 3);
        assert_eq!(slice_len(&events, 2999), 2);
        assert_eq!(slice_len(&events, 1 << 20), 10);
    }

    #[test]
    fn one_event_goes_even_past_the_share() {
        let events = [event(1, 10_000), event(2, 10)];
        assert_eq!(slice_len(&events, 100), 1);
    }

    #[test]
    fn a_guest_sees_the_claims_as_text() {
        let mut recorded = event(7, 10);
        recorded.metadata.claims =
            Some(crate::event_store::Claims::from_json(r#"{"sub":"ann"}"#.into()).unwrap());
        let seen = to_wit_event(&recorded);
        assert_eq!(seen.position, 7);
        assert_eq!(seen.metadata.claims.as_deref(), Some(r#"{"sub":"ann"}"#));
        assert_eq!(seen.data.len(), 10);
    }
}
