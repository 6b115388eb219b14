//! Valid inputs for every target: each request type of each service, sent by a caller allowed
//! to make it and naming what the seeding created, and every event the seeding stored. They
//! make `tests/fuzz/targets/corpus/` (`cargo run -p podium-fuzz-harness --bin podium-fuzz-seeds`) and the starting
//! points the property tests mutate.

use prost::Message;

use crate::stack;

mod agenda;
mod feedback;
mod status;

/// `(target, input)` pairs.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let s = stack();
    let mut seeds: Vec<(&'static str, Vec<u8>)> = Vec::new();

    // The log as the seeding left it, each event re-encoded as if stored at position 0.
    let events = s
        .run(s.log.read_all(0, 1024))
        .expect("the seeded log reads back");
    for event in &events {
        let mut stored = event.to_proto();
        stored.position = 0;
        seeds.push(("stored_event", stored.encode_to_vec()));
    }
    // The same events packed into chunks as the log stores them (at most 16 to a chunk, fewer
    // where they are large), each chunk as if it began at position 0.
    for chunk in events.chunks(16).chain(events.chunks(3)) {
        let mut data = 0u64.to_be_bytes().to_vec();
        for (position, event) in (0..).zip(chunk) {
            let mut stored = event.to_proto();
            stored.position = position;
            stored
                .encode_length_delimited(&mut data)
                .expect("a Vec grows");
        }
        seeds.push(("stored_chunk", data));
    }
    agenda::access_and_agenda(s, &mut seeds);
    status::stage_and_recordings(s, &mut seeds);
    feedback::feedback_and_server(s, &mut seeds);
    seeds
}
