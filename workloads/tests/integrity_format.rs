//! Property tests of the block format: every block round-trips, and any single-bit flip
//! anywhere in a block is detected and classified as damage (never clean).

use proptest::prelude::*;

use pvcheck_workloads::integrity::block::{self, BlockId};
use pvcheck_workloads::integrity::classify::{Context, classify};
use pvcheck_workloads::integrity::ledger::Generation;
use pvcheck_workloads::integrity::report::DamageKind;
use pvcheck_workloads::integrity::schedule::Schedule;

fn arb_id() -> impl Strategy<Value = BlockId> {
    (
        any::<u64>(),
        0u64..1 << 20,
        0u64..1 << 30,
        1u64..4,
        any::<u64>(),
    )
        .prop_map(|(v, f, o, g, s)| BlockId {
            volume_id: v,
            file_id: f,
            offset: o * 512,
            generation: g,
            seed: s,
        })
}

fn arb_block_size() -> impl Strategy<Value = usize> {
    (1usize..=32).prop_map(|n| n * 512)
}

fn gens() -> Vec<Generation> {
    vec![
        Generation {
            generation: 1,
            seed: 1,
            fraction: 1.0,
        },
        Generation {
            generation: 2,
            seed: 2,
            fraction: 0.5,
        },
        Generation {
            generation: 3,
            seed: 3,
            fraction: 0.5,
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_block_round_trips(id in arb_id(), bs in arb_block_size()) {
        let mut b = vec![0u8; bs];
        block::encode(&id, &mut b);
        prop_assert!(block::is_exactly(&id, &b, false));
        prop_assert!(block::is_exactly(&id, &b, true));
        let h = block::parse_valid(&b).expect("valid");
        prop_assert_eq!(h.id, id);
        prop_assert_eq!(h.block_size as usize, bs);
    }

    #[test]
    fn any_single_bit_flip_is_detected_and_never_clean(id in arb_id(), bs in arb_block_size(), bit in any::<prop::sample::Index>()) {
        let mut b = vec![0u8; bs];
        block::encode(&id, &mut b);
        let bit = bit.index(bs * 8);
        b[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(!block::is_exactly(&id, &b, false), "fast path missed bit {}", bit);
        prop_assert!(!block::is_exactly(&id, &b, true), "full hash missed bit {}", bit);
        prop_assert!(block::parse_valid(&b).is_none(), "bit {} left a valid block", bit);
        let schedule = Schedule::new(&gens());
        let ctx = Context { volume_id: id.volume_id, seed: id.seed, schedule: &schedule, names: &[] };
        let d = classify(&ctx, "f", &id, &b);
        // A flip leaves most of our block in place: it is bit rot, i.e. corrupt.
        prop_assert_eq!(d.kind, DamageKind::Corrupt, "bit {}: {:?}", bit, d);
        prop_assert_eq!(d.offset, id.offset);
    }

    #[test]
    fn blocks_differ_when_any_identity_field_differs(id in arb_id(), which in 0usize..5) {
        let mut other = id;
        match which {
            0 => other.volume_id ^= 1,
            1 => other.file_id ^= 1,
            2 => other.offset ^= 512,
            3 => other.generation += 1,
            _ => other.seed ^= 1,
        }
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        block::encode(&id, &mut a);
        block::encode(&other, &mut b);
        prop_assert!(!block::is_exactly(&id, &b, false));
        // Payloads are unique per block, not only headers (identical payloads could hide a misdirected write).
        prop_assert_ne!(&a[block::HEADER_LEN..], &b[block::HEADER_LEN..]);
    }
}

#[test]
fn a_block_of_another_offset_is_misdirected_and_names_where_it_belongs() {
    let id = BlockId {
        volume_id: 1,
        file_id: 2,
        offset: 8192,
        generation: 1,
        seed: 9,
    };
    let mut b = vec![0u8; 4096];
    block::encode(&BlockId { offset: 4096, ..id }, &mut b);
    let schedule = Schedule::new(&gens()[..1]);
    let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let ctx = Context {
        volume_id: 1,
        seed: 9,
        schedule: &schedule,
        names: &names,
    };
    let d = classify(&ctx, "c", &id, &b);
    assert_eq!(d.kind, DamageKind::Misdirected);
    let f = d.found.unwrap();
    assert_eq!((f.offset, f.file.as_deref()), (4096, Some("c")));
}

#[test]
fn payload_is_incompressible_enough_that_no_two_sectors_repeat() {
    let mut b = vec![0u8; 64 << 10];
    for (i, c) in b.chunks_exact_mut(4096).enumerate() {
        block::encode(
            &BlockId {
                volume_id: 1,
                file_id: 0,
                offset: i as u64 * 4096,
                generation: 1,
                seed: 3,
            },
            c,
        );
    }
    let mut seen = std::collections::HashSet::new();
    for s in b.chunks(512).filter(|s| s[..8] != block::MAGIC) {
        assert!(seen.insert(s.to_vec()), "a payload sector repeats");
    }
}

#[test]
fn a_block_of_a_dataset_with_another_block_size_is_foreign_not_corrupt() {
    let mut big = vec![0u8; 8192];
    block::encode(
        &BlockId {
            volume_id: 3,
            file_id: 0,
            offset: 0,
            generation: 1,
            seed: 4,
        },
        &mut big,
    );
    let id = BlockId {
        volume_id: 1,
        file_id: 0,
        offset: 0,
        generation: 1,
        seed: 9,
    };
    let schedule = Schedule::new(&gens()[..1]);
    let ctx = Context {
        volume_id: 1,
        seed: 9,
        schedule: &schedule,
        names: &[],
    };
    let d = classify(&ctx, "f", &id, &big[..4096]);
    assert_eq!(d.kind, DamageKind::Foreign, "{d:?}");
    assert!(d.detail.contains("block size 8192"), "{}", d.detail);
}
