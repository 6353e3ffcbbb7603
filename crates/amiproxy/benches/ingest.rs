//! How many events one upstream link ingests per second: decode (upstream role), the
//! ownership index, the Server tag, classes, and the publish into the hub, with one client
//! subscribed. The events are an Asterisk 22 queue call's, byte for byte
//! (`fixtures/transcripts/05_queue_call_events.s2c.raw`), repeated.
//!
//! `cargo bench -p amiproxy --bench ingest`

use ami_proto::{AmiDecoder, Decoded, Role};
use amiproxy::core::Core;
use amiproxy::upstream::Outbox;
use amiproxy::Config;
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::path::Path;

/// The binary's allocator (`src/main.rs`), so the figure is the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG: &str = r#"
[[listener]]
address = "127.0.0.1:0"
[[upstream]]
name = "pbx1"
kind = "simulated"
[[user]]
name = "admin"
secret = "x"
read = "all"
write = "all"
"#;

/// The transcript's events only (no responses), as one upstream stream, and their count.
fn events() -> (Vec<u8>, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/transcripts/05_queue_call_events.s2c.raw");
    let raw = std::fs::read(&path).expect("the transcript fixture");
    let mut d = AmiDecoder::new(Role::Upstream);
    let mut buf = BytesMut::from(&raw[..]);
    let mut out = Vec::new();
    let mut n = 0;
    while let Ok(Some(f)) = d.decode(&mut buf) {
        if let Decoded::Message(m) = f {
            if m.get("Event").is_some() && m.action_id().is_none() {
                out.extend_from_slice(m.as_bytes());
                n += 1;
            }
        }
    }
    assert!(n > 10, "only {n} events in the fixture");
    // About 10,000 events per iteration.
    let copies = 10_000 / n + 1;
    (out.repeat(copies), n * copies)
}

/// A link's read size (its read buffer's capacity).
const READ_BYTES: usize = 64 * 1024;

/// Events a link reads in one go at a flood: a 64 KiB read of ~370-byte events.
const READ_EVENTS: usize = 176;

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let _guard = rt.enter();
    let config = Config::from_toml(CONFIG, Path::new(".")).expect("the bench config");
    let core = Core::new(config);
    let up = core.state().upstreams[0].clone();
    let mut client = core.hub.subscribe();
    let (stream, n) = events();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("queue-call events, one subscriber", |b| {
        // The bytes arrive in a buffer made outside the measurement, as a socket read fills
        // the link's read buffer.
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut d = AmiDecoder::new(Role::Upstream)
                    .skip_banner()
                    .tagging_events("Server", "pbx1");
                // Published a read's worth at a time, as a link does.
                let mut out = Outbox::default();
                let mut read = 0;
                while let Ok(Some(f)) = d.decode(&mut buf) {
                    if let Decoded::Message(m) = f {
                        let _ = up.dispatch(&core.links, m, &mut out);
                    }
                    read += 1;
                    if read % READ_EVENTS == 0 {
                        up.flush(&core.links, std::mem::take(&mut out));
                        // The subscriber keeps up, as a client taking every event would.
                        while client.try_next().is_some() {}
                    }
                }
                up.flush(&core.links, out);
                while client.try_next().is_some() {}
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("queue-call events, one subscriber, 64 KiB reads", |b| {
        // As a link reads: a 64 KiB read at a time into the read buffer (the copy counted,
        // as the kernel's copy to the proxy is), each read decoded and published in turn.
        b.iter(|| {
            let mut d = AmiDecoder::new(Role::Upstream)
                .skip_banner()
                .tagging_events("Server", "pbx1");
            let mut buf = BytesMut::with_capacity(READ_BYTES);
            for read in stream.chunks(READ_BYTES) {
                buf.extend_from_slice(read);
                let mut out = Outbox::default();
                while let Ok(Some(f)) = d.decode(&mut buf) {
                    if let Decoded::Message(m) = f {
                        let _ = up.dispatch(&core.links, m, &mut out);
                    }
                }
                up.flush(&core.links, out);
                while client.try_next().is_some() {}
            }
        })
    });
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
