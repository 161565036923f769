//! The endpoint's codec: a stream of QoS 1 PUBLISH packets framed and decoded, and a PUBACK
//! encoded for each, in packets per second (MQTT 3.1.1 and 5).
//!
//!     cargo bench -p landport-ingest --bench mqtt_codec
//!
//! This is the per-message cost of the protocol layer (`landport_ingest::endpoint::codec`:
//! our framing over rumqttc's `mqttbytes` decoders, our encoders), without sockets, to set
//! beside the decode + validate + apply budget (`benches/decode.rs`) and the end-to-end rate
//! (`scripts/bench`). The figures and the choice of codec are in `docs/architecture.md`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use landport_ingest::endpoint::codec::{Frame, Framer, Incoming, Outgoing, Version};

/// The compact native reading firmware sends (119 bytes).
const READING: &[u8] = br#"{"ts":1794996930250,"seq":1042,"lat":41.1087,"lon":122.9946,"speed_kmh":63.2,"heading_deg":181,"battery_pct":87}"#;
const TOPIC: &str = "landport/acme/truck-17/telemetry";
/// Packets per iteration.
const N: usize = 10_000;

/// `N` QoS 1 PUBLISH packets back to back, as a socket would deliver them.
fn stream(version: Version) -> BytesMut {
    let mut b = BytesMut::new();
    for i in 0..N {
        Outgoing::Publish {
            topic: TOPIC,
            qos: 1,
            pkid: (i % 65_535) as u16 + 1,
            payload: READING,
        }
        .encode(version, &mut b);
    }
    b
}

fn publish_puback(c: &mut Criterion) {
    let mut g = c.benchmark_group("mqtt_codec");
    g.throughput(Throughput::Elements(N as u64));
    for (name, version) in [("v311", Version::V311), ("v5", Version::V5)] {
        let wire = stream(version);
        g.bench_function(format!("{name}_publish_decode_puback_encode"), |b| {
            let mut acks = BytesMut::with_capacity(N * 4);
            b.iter(|| {
                let mut framer = Framer::new(1 << 20);
                framer.set_version(version);
                let mut buf = wire.clone();
                acks.clear();
                let mut n = 0;
                while let Ok(Frame::Packet(Incoming::Publish(p))) = framer.next(&mut buf) {
                    Outgoing::PubAck {
                        pkid: p.pkid,
                        reason: 0,
                    }
                    .encode(version, &mut acks);
                    black_box(&p.payload);
                    n += 1;
                }
                assert_eq!(n, N);
                black_box(acks.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, publish_puback);
criterion_main!(benches);
