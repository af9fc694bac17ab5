//! The event decoder (prost) on arbitrary bytes: never panics; encoded events round-trip.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use prost::Message;
use rvc_proto::events::ProductChangeEvent;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(ev) = ProductChangeEvent::decode(bytes.as_slice()) {
            // whatever decoded re-encodes and decodes to the same value
            let again = ProductChangeEvent::decode(ev.encode_to_vec().as_slice()).unwrap();
            prop_assert_eq!(again, ev);
        }
    }

    #[test]
    fn events_round_trip(id in "\\PC{0,40}", ts in any::<i64>()) {
        let ev = ProductChangeEvent {
            event_id: id,
            event_timestamp: Some(prost_types::Timestamp { seconds: ts, nanos: 0 }),
            ..Default::default()
        };
        let bytes = ev.encode_to_vec();
        prop_assert_eq!(ProductChangeEvent::decode(bytes.as_slice()).unwrap(), ev);
    }
}
