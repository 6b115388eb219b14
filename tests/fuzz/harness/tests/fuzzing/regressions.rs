//! Inputs the fuzzer found that once crashed a target, kept so that they never do again.

/// A stored `ConferenceCreated` recorded some 911,000 years after 1970: the decoder accepted the
/// instant and the agenda model's conversion to a date panicked ("No such local time"). The
/// decoder now refuses instants past 9999-12-31, so the event is skipped as corrupt.
#[test]
fn a_stored_event_recorded_beyond_any_date_is_refused_not_a_panic() {
    let data: &[u8] = &[
        10, 36, 48, 102, 48, 102, 48, 48, 48, 48, 45, 48, 48, 48, 48, 45, 52, 48, 48, 48, 45, 48,
        48, 56, 48, 45, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 49, 18, 26, 99, 111, 110, 102,
        101, 114, 101, 110, 99, 101, 47, 102, 117, 122, 122, 99, 111, 110, 102, 47, 97, 103, 101,
        110, 100, 97, 42, 27, 112, 111, 100, 105, 117, 109, 46, 118, 49, 46, 67, 111, 110, 102,
        101, 114, 101, 110, 99, 101, 67, 114, 101, 97, 116, 101, 100, 50, 74, 10, 8, 102, 117, 122,
        122, 99, 111, 110, 102, 18, 23, 10, 21, 10, 2, 101, 110, 18, 15, 70, 117, 122, 122, 32, 67,
        111, 110, 102, 101, 114, 101, 110, 99, 101, 26, 2, 101, 110, 34, 15, 65, 115, 105, 97, 47,
        80, 104, 110, 111, 109, 95, 80, 101, 110, 104, 42, 9, 70, 85, 90, 90, 45, 50, 48, 50, 52,
        50, 5, 97, 100, 109, 105, 110, 58, 12, 8, 245, 191, 168, 162, 252, 196, 6, 16, 216, 147, 3,
    ];
    assert!(podium_eventlog::decode_stored(0, data).is_err());
    podium_fuzz_harness::stored_event(data);
}
