//! Text generation from a trained character model: the prompt is fed through the recurrence,
//! then each next character is drawn from softmax(o_t) and fed back in (seeded, so the same
//! model and seed give the same text).

use rand::Rng;

use super::text::Corpus;
use super::weights::Weights;
use crate::cpu::reference::phi;
use crate::model::Activation;

/// N characters sampled after `prompt` (given as ids, at least one). Linear in N: each
/// character costs one step of the recurrence.
pub fn sample(w: &Weights, act: Activation, corpus: &Corpus, prompt: &[u32], n: usize, r: &mut impl Rng) -> String {
    let v = corpus.vocab_size();
    let h = w.b_h.len();
    let mut state = vec![0.0f64; h];
    let mut out = String::new();
    let mut drawn = 0;
    let mut next = prompt[0];
    let mut fed = 0;
    while drawn < n {
        // h_t = φ(w_hx[:, c] + w_hh·h_{t−1} + b_h): the one-hot input selects a column.
        let new: Vec<f64> = (0..h)
            .map(|i| {
                let rec: f64 = (0..h).map(|j| w.w_hh[i * h + j] as f64 * state[j]).sum();
                phi(act, w.w_hx[i * v + next as usize] as f64 + rec + w.b_h[i] as f64)
            })
            .collect();
        state = new;
        fed += 1;
        if fed < prompt.len() {
            next = prompt[fed];
            continue;
        }
        let o: Vec<f64> = (0..v)
            .map(|k| w.b_q[k] as f64 + (0..h).map(|i| w.w_qh[k * h + i] as f64 * state[i]).sum::<f64>())
            .collect();
        let m = o.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = o.iter().map(|x| (x - m).exp()).collect();
        let mut u = r.random::<f64>() * p.iter().sum::<f64>();
        next = (v - 1) as u32;
        for (k, pk) in p.iter().enumerate() {
            if u < *pk {
                next = k as u32;
                break;
            }
            u -= pk;
        }
        out.push(corpus.vocab[next as usize]);
        drawn += 1;
    }
    out
}
