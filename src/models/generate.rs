//! The generation loop every autoregressive model shares: greedy decoding of many sequences
//! together, each stopping on its own, in one of three batching modes.
//!
//! - [`Batching::Single`]: one sequence at a time (the prototype's way; what `sequential` runs).
//! - [`Batching::Static`]: up to `max_sequences` start together and decode until the last of
//!   them ends; a finished sequence leaves the batch (the step gets cheaper) but its place
//!   stays empty until the whole group is done (what `staged-batch` runs).
//! - [`Batching::Continuous`]: a place freed by a finished sequence is given, before the next
//!   step, to the next waiting sequence of the call, and once those have all started, to a
//!   sequence from the stage's queue ([`generate_fed`]: the stage takes pages waiting behind
//!   its micro-batch; what `streaming-microbatch` runs).
//!
//! A model plugs in through [`Decode`]: prefill one sequence into a cache slot, run one step for
//! the sequences in slots `0..n`, move a sequence between slots. The loop keeps the live
//! sequences packed in `0..n` so a step reads the cache without copying it.
//!
//! A sequence's tokens do not depend on the mode or on its batch-mates: prefill always runs
//! alone and each row of a step attends only to its own cache (tested in
//! `tests/got_ocr2.rs` against transformers).
//!
//! Figures are named as serving benchmarks name them ([`GenerationStats`]): prefill and
//! decode time, tokens generated, decode steps and the sequences they carried (occupancy).
//! The loop reads the clock only around the prefill and step calls; the executor still times
//! the stage call as a whole.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How sequences share decode steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Batching {
    /// Chosen from the strategy when the plan is made (`plan.rs`): sequential and
    /// concurrent-render → single, staged-batch → static, streaming-microbatch → continuous.
    #[default]
    Auto,
    Single,
    Static,
    Continuous,
}

impl Batching {
    pub fn name(self) -> &'static str {
        match self {
            Batching::Auto => "auto",
            Batching::Single => "single",
            Batching::Static => "static",
            Batching::Continuous => "continuous",
        }
    }
}

/// The option key of generating models' batching mode (`auto` is resolved by the plan).
pub const BATCHING_KEY: &str = "batching";

/// The batching mode each strategy gets for `batching = "auto"`: one sequence at a time where
/// the strategy runs one page at a time, groups where it runs stages in batches, and slots
/// refilled as sequences end where it streams.
pub fn strategy_batching(kind: crate::config::StrategyKind) -> Batching {
    use crate::config::StrategyKind as K;
    match kind {
        K::Sequential | K::ConcurrentRender => Batching::Single,
        K::StagedBatch => Batching::Static,
        K::StreamingMicrobatch => Batching::Continuous,
    }
}

/// What the loop asks of a model.
pub trait Decode {
    type Error;
    /// Runs sequence `seq`'s prompt into the empty cache slot `slot`; the logits' greedy
    /// choice (its first generated token).
    fn prefill(&mut self, seq: usize, slot: usize) -> Result<u32, Self::Error>;
    /// One step for the sequences in slots `0..last.len()`, fed their last tokens: each one's
    /// next token.
    fn step(&mut self, last: &[u32]) -> Result<Vec<u32>, Self::Error>;
    /// Moves the sequence in slot `from` to the free slot `to`.
    fn move_slot(&mut self, from: usize, to: usize) -> Result<(), Self::Error>;
    /// Frees `slot` (its sequence ended).
    fn free(&mut self, slot: usize);
}

/// One sequence to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// At most this many new tokens.
    pub max_new_tokens: usize,
    /// Generate exactly this many (clamped to `max_new_tokens`), ignoring stop tokens: the
    /// length oracle of untrained weights, whose decoder never stops by itself.
    pub forced_len: Option<usize>,
}

/// Counts and times of a call (or, summed, of a run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    pub sequences: u64,
    pub tokens_generated: u64,
    /// Time in prefill calls.
    pub prefill_ns: u64,
    /// Time in decode steps.
    pub decode_ns: u64,
    /// Decode steps run.
    pub decode_steps: u64,
    /// Sum over steps of the sequences each carried (÷ steps = mean occupancy).
    pub step_sequences: u64,
    /// Sum over sequences of the time from the call's start to its first token.
    pub first_token_ns: u64,
    /// Largest KV cache held, in bytes.
    pub kv_cache_bytes: u64,
    /// Time encoding images (vision tower and projector), when the model has one.
    pub vision_ns: u64,
    /// Images (tiles) encoded.
    pub images: u64,
}

impl GenerationStats {
    pub fn add(&mut self, o: &GenerationStats) {
        self.sequences += o.sequences;
        self.tokens_generated += o.tokens_generated;
        self.prefill_ns += o.prefill_ns;
        self.decode_ns += o.decode_ns;
        self.decode_steps += o.decode_steps;
        self.step_sequences += o.step_sequences;
        self.first_token_ns += o.first_token_ns;
        self.kv_cache_bytes = self.kv_cache_bytes.max(o.kv_cache_bytes);
        self.vision_ns += o.vision_ns;
        self.images += o.images;
    }

    /// Mean sequences per decode step.
    pub fn occupancy(&self) -> f64 {
        if self.decode_steps == 0 {
            0.0
        } else {
            self.step_sequences as f64 / self.decode_steps as f64
        }
    }
}

/// The generated tokens of each request (stop token excluded), and the call's figures.
pub struct Generated {
    pub tokens: Vec<Vec<u32>>,
    pub stats: GenerationStats,
}

/// A live sequence.
struct Live {
    seq: usize,
    last: u32,
}

/// Greedy generation of `requests` with `model`, at most `max_sequences` at a time (the
/// model's cache must have that many slots), stopping a sequence at one of `stop` (unless
/// forced) or at its length limit.
pub fn generate<M: Decode>(
    model: &mut M,
    requests: &[Request],
    batching: Batching,
    max_sequences: usize,
    stop: &[u32],
) -> Result<Generated, M::Error> {
    generate_fed(
        model,
        requests,
        batching,
        max_sequences,
        stop,
        &mut |_, _| Ok(Vec::new()),
    )
}

/// More sequences for a running generation: called with the model and the number of free
/// places; returns the new requests, whose prompts the model now holds as the sequences after
/// the last ones (numbered on from them). None: nothing waits.
pub type Refill<'r, M> =
    dyn FnMut(&mut M, usize) -> Result<Vec<Request>, <M as Decode>::Error> + 'r;

/// [`generate`], where continuous batching, once the call's own sequences have all started,
/// asks `refill` for more before each step that has free places (while sequences still run:
/// a call that has finished everything ends). Their tokens follow the call's in
/// [`Generated::tokens`]. The other modes never refill.
pub fn generate_fed<M: Decode>(
    model: &mut M,
    requests: &[Request],
    batching: Batching,
    max_sequences: usize,
    stop: &[u32],
    refill: &mut Refill<'_, M>,
) -> Result<Generated, M::Error> {
    let slots = match batching {
        Batching::Single => 1,
        _ => max_sequences.max(1),
    };
    let t0 = Instant::now();
    let mut requests: Vec<Request> = requests.to_vec();
    let mut stats = GenerationStats::default();
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); requests.len()];
    let limit = |r: &Request| {
        r.forced_len
            .map_or(r.max_new_tokens, |f| f.min(r.max_new_tokens))
    };
    // Records `tok` for `seq`; true when the sequence is done.
    let push = |requests: &[Request], tokens: &mut Vec<Vec<u32>>, seq: usize, tok: u32| -> bool {
        let forced = requests[seq].forced_len.is_some();
        if !forced && stop.contains(&tok) {
            return true;
        }
        tokens[seq].push(tok);
        tokens[seq].len() >= limit(&requests[seq])
    };
    let mut next = 0usize;
    let mut live: Vec<Live> = Vec::with_capacity(slots);
    loop {
        // Admit: continuous refills every free place; static and single only when empty.
        let admit = match batching {
            Batching::Continuous => true,
            _ => live.is_empty(),
        };
        if admit {
            if batching == Batching::Continuous
                && next >= requests.len()
                && !live.is_empty()
                && live.len() < slots
            {
                let more = refill(model, slots - live.len())?;
                tokens.extend(more.iter().map(|_| Vec::new()));
                requests.extend(more);
            }
            while live.len() < slots && next < requests.len() {
                let seq = next;
                next += 1;
                if limit(&requests[seq]) == 0 {
                    continue;
                }
                let slot = live.len();
                let t = Instant::now();
                let tok = model.prefill(seq, slot)?;
                stats.prefill_ns += t.elapsed().as_nanos() as u64;
                stats.first_token_ns += t0.elapsed().as_nanos() as u64;
                stats.tokens_generated += 1;
                if push(&requests, &mut tokens, seq, tok) {
                    model.free(slot);
                } else {
                    live.push(Live { seq, last: tok });
                }
            }
        }
        if live.is_empty() {
            if next >= requests.len() {
                break;
            }
            continue;
        }
        let last: Vec<u32> = live.iter().map(|l| l.last).collect();
        let t = Instant::now();
        let out = model.step(&last)?;
        stats.decode_ns += t.elapsed().as_nanos() as u64;
        stats.decode_steps += 1;
        stats.step_sequences += live.len() as u64;
        // Record, then drop the finished ones, keeping the live ones packed in 0..n: the last
        // slot's sequence moves into each freed place (scan from the end so moves stay valid).
        let mut done = Vec::new();
        for (i, (l, tok)) in live.iter_mut().zip(out).enumerate() {
            stats.tokens_generated += 1;
            if push(&requests, &mut tokens, l.seq, tok) {
                done.push(i);
            } else {
                l.last = tok;
            }
        }
        for &i in done.iter().rev() {
            let end = live.len() - 1;
            model.free(i);
            if i != end {
                model.move_slot(end, i)?;
            }
            live.swap_remove(i);
        }
    }
    stats.sequences = requests.len() as u64;
    // A stop token counts as generated (it was computed) but is not part of the text.
    Ok(Generated { tokens, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose sequence `s` emits s*100+1, s*100+2, … and stop token 0 after `len[s]`
    /// tokens; it checks that slots hold what the loop says.
    struct Counting {
        len: Vec<usize>,
        slot_seq: Vec<Option<(usize, usize)>>,
        step_sizes: Vec<usize>,
    }

    impl Decode for Counting {
        type Error = String;
        fn prefill(&mut self, seq: usize, slot: usize) -> Result<u32, String> {
            if self.slot_seq[slot].is_some() {
                return Err(format!("slot {slot} busy"));
            }
            self.slot_seq[slot] = Some((seq, 1));
            Ok(self.tok(seq, 1))
        }
        fn step(&mut self, last: &[u32]) -> Result<Vec<u32>, String> {
            self.step_sizes.push(last.len());
            let mut out = Vec::new();
            for (slot, l) in last.iter().enumerate() {
                let (seq, n) = self.slot_seq[slot].ok_or(format!("slot {slot} empty"))?;
                if *l != self.tok(seq, n) {
                    return Err(format!(
                        "slot {slot}: fed {l}, expected {}",
                        self.tok(seq, n)
                    ));
                }
                self.slot_seq[slot] = Some((seq, n + 1));
                out.push(self.tok(seq, n + 1));
            }
            Ok(out)
        }
        fn move_slot(&mut self, from: usize, to: usize) -> Result<(), String> {
            if self.slot_seq[to].is_some() {
                return Err(format!("slot {to} busy"));
            }
            self.slot_seq[to] = self.slot_seq[from].take();
            Ok(())
        }
        fn free(&mut self, slot: usize) {
            self.slot_seq[slot] = None;
        }
    }

    impl Counting {
        fn new(len: &[usize], slots: usize) -> Self {
            Self {
                len: len.to_vec(),
                slot_seq: vec![None; slots],
                step_sizes: Vec::new(),
            }
        }
        fn tok(&self, seq: usize, n: usize) -> u32 {
            if n > self.len[seq] {
                0
            } else {
                (seq * 100 + n) as u32
            }
        }
    }

    fn run(
        len: &[usize],
        b: Batching,
        slots: usize,
    ) -> (Vec<Vec<u32>>, GenerationStats, Vec<usize>) {
        let mut m = Counting::new(len, slots);
        let reqs: Vec<Request> = len
            .iter()
            .map(|_| Request {
                max_new_tokens: 50,
                forced_len: None,
            })
            .collect();
        let g = generate(&mut m, &reqs, b, slots, &[0]).expect("generate");
        (g.tokens, g.stats, m.step_sizes)
    }

    #[test]
    fn every_mode_gives_every_sequence_its_own_tokens() {
        let len = [3, 9, 1, 5, 2, 7];
        let (single, s1, _) = run(&len, Batching::Single, 1);
        for (seq, t) in single.iter().enumerate() {
            let want: Vec<u32> = (1..=len[seq]).map(|n| (seq * 100 + n) as u32).collect();
            assert_eq!(t, &want);
        }
        for mode in [Batching::Static, Batching::Continuous] {
            let (toks, _, _) = run(&len, mode, 3);
            assert_eq!(toks, single, "{mode:?}");
        }
        // Each sequence: one prefill token + one step per further token (the stop included).
        assert_eq!(
            s1.tokens_generated,
            len.iter().map(|l| *l as u64 + 1).sum::<u64>()
        );
        assert_eq!(s1.decode_steps, len.iter().map(|l| *l as u64).sum::<u64>());
        assert_eq!(s1.occupancy(), 1.0);
    }

    #[test]
    fn continuous_batching_refills_and_static_waits_for_the_longest() {
        let len = [8, 1, 1, 1, 8, 1];
        let (_, st, st_sizes) = run(&len, Batching::Static, 2);
        let (_, ct, ct_sizes) = run(&len, Batching::Continuous, 2);
        // Static: groups {0,1} {2,3} {4,5}: 8 + 1 + 8 steps.
        assert_eq!(st.decode_steps, 17);
        assert_eq!(st_sizes.iter().filter(|&&s| s == 2).count(), 3);
        // Continuous: sequence 0 runs alongside 1, 2, 3, then 4 joins: fewer steps, fuller.
        assert!(ct.decode_steps < st.decode_steps, "{ct_sizes:?}");
        assert!(ct.occupancy() > st.occupancy());
        assert_eq!(ct.tokens_generated, st.tokens_generated);
    }

    #[test]
    fn continuous_batching_refills_from_the_queue_once_the_calls_own_sequences_started() {
        let req = Request {
            max_new_tokens: 50,
            forced_len: None,
        };
        for mode in [Batching::Single, Batching::Static, Batching::Continuous] {
            // Pages waiting in the queue, each with its sequences' lengths (one has none).
            let mut queue: std::collections::VecDeque<Vec<usize>> =
                [vec![4], vec![], vec![3, 1]].into_iter().collect();
            let mut asked = Vec::new();
            let mut m = Counting::new(&[6, 2], 3);
            let mut refill = |m: &mut Counting, n: usize| -> Result<Vec<Request>, String> {
                asked.push(n);
                let page = queue.pop_front().unwrap_or_default();
                m.len.extend(&page);
                Ok(page.iter().map(|_| req).collect())
            };
            let g =
                generate_fed(&mut m, &[req, req], mode, 3, &[0], &mut refill).expect("generate");
            for (seq, t) in g.tokens.iter().enumerate() {
                let want: Vec<u32> = (1..=m.len[seq]).map(|n| (seq * 100 + n) as u32).collect();
                assert_eq!(t, &want, "{mode:?}: sequence {seq}");
            }
            assert_eq!(g.stats.sequences, g.tokens.len() as u64);
            if mode == Batching::Continuous {
                // Every page joined while sequence 0 (6 tokens) still ran, each asked with
                // the free places.
                assert_eq!(g.tokens.len(), 5, "{asked:?}");
                assert!(asked.iter().all(|&n| (1..=3).contains(&n)), "{asked:?}");
                assert!(queue.is_empty());
                assert!(m.step_sizes.iter().all(|&s| s <= 3));
            } else {
                assert!(asked.is_empty(), "{mode:?} never refills");
                assert_eq!(g.tokens.len(), 2);
            }
        }
    }

    #[test]
    fn forced_lengths_ignore_stop_tokens_and_limits_cap_them() {
        let mut m = Counting::new(&[2, 2], 2);
        let reqs = [
            Request {
                max_new_tokens: 10,
                forced_len: Some(4),
            },
            Request {
                max_new_tokens: 3,
                forced_len: Some(9),
            },
        ];
        let g = generate(&mut m, &reqs, Batching::Continuous, 2, &[0]).expect("generate");
        assert_eq!(g.tokens[0].len(), 4);
        assert_eq!(g.tokens[1].len(), 3);
        assert_eq!(
            g.tokens[0][2], 0,
            "the stop token is kept when the length is forced"
        );
    }
}
