//! Decoding throughput on a realistic upstream event mix: every event Asterisk 22 sent in
//! the captured transcripts (`fixtures/transcripts/*.s2c.raw`), repeated to ~2 MiB, decoded
//! in one buffer by an upstream-role decoder with `skip_banner()`.
//!
//! `cargo bench -p ami-proto --bench decode -- --warm-up-time 1 --measurement-time 3`

use ami_proto::{AmiDecoder, Decoded, Kind, Role};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

const TARGET_BYTES: usize = 2 << 20;

/// The event mix and how many messages it holds.
fn event_mix() -> (Vec<u8>, u64) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/transcripts");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("fixtures/transcripts")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".s2c.raw")))
        .collect();
    paths.sort();
    let mut events = Vec::new();
    let mut count = 0u64;
    for p in paths {
        let mut buf = BytesMut::from(&std::fs::read(&p).expect("read")[..]);
        let mut d = AmiDecoder::new(Role::Upstream);
        while let Some(item) = d.decode_eof(&mut buf).expect("fixture decodes") {
            if let Decoded::Message(m) = item {
                if m.kind() == Kind::Event {
                    events.extend_from_slice(m.as_bytes());
                    count += 1;
                }
            }
        }
    }
    assert!(count > 100, "only {count} events in the fixtures");
    let reps = TARGET_BYTES.div_ceil(events.len());
    (events.repeat(reps), count * reps as u64)
}

fn decode_all(input: BytesMut) -> u64 {
    let mut buf = input;
    let mut d = AmiDecoder::new(Role::Upstream).skip_banner();
    let mut n = 0u64;
    while let Some(item) = d.decode(&mut buf).expect("decodes") {
        black_box(&item);
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let (mix, messages) = event_mix();
    assert_eq!(decode_all(BytesMut::from(&mix[..])), messages);
    eprintln!("event mix: {} bytes, {messages} events", mix.len());

    let mut g = c.benchmark_group("decode_upstream_events");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(mix.len() as u64));
    g.bench_function("bytes", |b| {
        b.iter_batched(|| BytesMut::from(&mix[..]), decode_all, BatchSize::LargeInput)
    });
    g.throughput(Throughput::Elements(messages));
    g.bench_function("messages", |b| {
        b.iter_batched(|| BytesMut::from(&mix[..]), decode_all, BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
