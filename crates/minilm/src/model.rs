//! The BERT encoder forward pass over a batch of token sequences, packed without padding.
//!
//! The texts of a batch are laid end to end as the rows of one `tokens × hidden` matrix. Every
//! step of BERT except attention treats each token on its own (embeddings, the linear layers,
//! GELU, layer normalisation), so those steps run over all rows of the batch at once, in one
//! matrix product per weight. Attention is computed per text and head over that text's rows
//! only. This gives exactly what a padded batch with an attention mask gives for the real tokens
//! (masked positions get zero attention weight there), without computing anything for padding;
//! mean pooling over a text's rows is then the mean over its attention mask.

use crate::kernels::{self, View, ViewMut};
use crate::threads::Par;
use crate::weights::{Config, Weights};

pub struct Encoder {
    pub config: Config,
    pub weights: Weights,
}

/// Where a row of the packed batch comes from.
#[derive(Clone, Copy)]
struct Row {
    /// Token id.
    id: u32,
    /// Position in its sequence.
    pos: u32,
    /// First row of its sequence.
    start: u32,
    /// Length of its sequence.
    len: u32,
}

/// Working memory of one pass. It is allocated by the caller before the pass goes to the
/// thread pool, so that it comes from (and returns to) the caller's allocator arena rather than
/// a worker thread's, which would keep it after the pass.
pub struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    heads: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    mid: Vec<f32>,
}

impl Scratch {
    /// Working memory for `tokens` rows.
    pub fn new(config: &Config, tokens: usize) -> Scratch {
        let rows = |width: usize| vec![0f32; tokens * width];
        let h = config.hidden_size;
        Scratch {
            x: rows(h),
            qkv: rows(3 * h),
            heads: rows(h),
            ctx: rows(h),
            tmp: rows(h),
            mid: rows(config.intermediate_size),
        }
    }
}

impl Encoder {
    /// Embeds the token sequences `seqs` (each 1..=MAX_TOKENS ids below the vocabulary size,
    /// which the caller checks) and returns one L2-normalised vector per sequence, in order.
    /// `scratch` must have been made for the total number of tokens in `seqs`.
    pub fn forward(&self, seqs: &[Vec<u32>], scratch: &mut Scratch, par: Par) -> Vec<Vec<f32>> {
        let h = self.config.hidden_size;
        let inter = self.config.intermediate_size;
        let eps = self.config.layer_norm_eps as f32;
        let w = &self.weights;

        // What each row of the packed batch is, and each sequence's first row.
        let mut rows = Vec::new();
        let mut starts = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let start = rows.len();
            starts.push(start);
            rows.extend(seq.iter().enumerate().map(|(pos, id)| Row {
                id: *id,
                pos: pos as u32,
                start: start as u32,
                len: seq.len() as u32,
            }));
        }
        let t = rows.len();
        let Scratch {
            x,
            qkv,
            heads,
            ctx,
            tmp,
            mid,
        } = scratch;
        assert!(x.len() == t * h && mid.len() == t * inter, "scratch size");

        // Embeddings: word + (position + token type 0), then layer normalisation.
        par.rows_mut(x, h, |first, block| {
            for (i, row) in block.chunks_exact_mut(h).enumerate() {
                let (id, pos) = (rows[first + i].id as usize, rows[first + i].pos as usize);
                let word = &w.word_emb[id * h..(id + 1) * h];
                let pos = &w.pos_type_emb[pos * h..(pos + 1) * h];
                for ((r, a), b) in row.iter_mut().zip(word).zip(pos) {
                    *r = a + b;
                }
            }
            kernels::layer_norm(block, &w.emb_ln_g, &w.emb_ln_b, eps);
        });

        for layer in &w.layers {
            // Self-attention.
            kernels::matmul_bias(
                qkv,
                x,
                &layer.qkv_w,
                &layer.qkv_b,
                (t, h, 3 * h),
                par.threads,
            );
            self.attention(qkv, heads, ctx, &rows, seqs, par);
            kernels::matmul_bias(
                tmp,
                ctx,
                &layer.attn_out_w,
                &layer.attn_out_b,
                (t, h, h),
                par.threads,
            );
            par.rows_mut(x, h, |first, block| {
                let res = &tmp[first * h..first * h + block.len()];
                kernels::add_layer_norm(block, res, &layer.attn_ln_g, &layer.attn_ln_b, eps);
            });
            // Feed-forward.
            kernels::matmul_bias(
                mid,
                x,
                &layer.inter_w,
                &layer.inter_b,
                (t, h, inter),
                par.threads,
            );
            par.rows_mut(mid, inter, |_, block| kernels::gelu(block));
            kernels::matmul_bias(
                tmp,
                mid,
                &layer.out_w,
                &layer.out_b,
                (t, inter, h),
                par.threads,
            );
            par.rows_mut(x, h, |first, block| {
                let res = &tmp[first * h..first * h + block.len()];
                kernels::add_layer_norm(block, res, &layer.out_ln_g, &layer.out_ln_b, eps);
            });
        }

        // Mean pooling over each sequence's rows, then L2 normalisation.
        seqs.iter()
            .zip(&starts)
            .map(|(seq, start)| {
                let mut v = vec![0f32; h];
                kernels::mean_pool_normalise(&x[start * h..(start + seq.len()) * h], &mut v);
                v
            })
            .collect()
    }

    /// Multi-head self-attention of every sequence over its own rows: reads the fused
    /// query/key/value rows (`tokens × 3·hidden`), writes the context rows (`tokens × hidden`).
    /// Each (sequence, head) pair is a task of its own, writing its `len × head_dim` output into
    /// its own block of `heads`; the blocks are then interleaved into the rows of `ctx`.
    fn attention(
        &self,
        qkv: &[f32],
        heads_out: &mut [f32],
        ctx: &mut [f32],
        rows: &[Row],
        seqs: &[Vec<u32>],
        par: Par,
    ) {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let hd = h / heads;
        let scale = 1.0 / (hd as f32).sqrt();

        // The block of sequence s starts at start·hidden, like its rows in ctx, and holds
        // its heads one after the other, each len × head_dim.
        let mut jobs = Vec::with_capacity(seqs.len() * heads);
        let mut rest = &mut *heads_out;
        let mut start = 0;
        for seq in seqs {
            let len = seq.len();
            for head in 0..heads {
                let (block, tail) = rest.split_at_mut(len * hd);
                jobs.push((start, len, head, block));
                rest = tail;
            }
            start += len;
        }
        par.each(jobs, |(start, len, head, out)| {
            let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
            let (q, k, v) = (head * hd, h + head * hd, 2 * h + head * hd);
            let mut scores = vec![0f32; len * len];
            // scores = scale · Q Kᵀ, with Q and K read in place from the fused rows.
            kernels::matmul(
                ViewMut::dense(&mut scores, len, len),
                View::new(&rows[q..], (len, hd), (3 * h, 1)),
                View::new(&rows[k..], (hd, len), (1, 3 * h)),
                scale,
                false,
                1,
            );
            for row in scores.chunks_exact_mut(len) {
                kernels::softmax(row);
            }
            kernels::matmul(
                ViewMut::dense(out, len, hd),
                View::dense(&scores, len, len),
                View::new(&rows[v..], (len, hd), (3 * h, 1)),
                1.0,
                false,
                1,
            );
        });
        let heads_src: &[f32] = heads_out;
        par.rows_mut(ctx, h, |first, block| {
            for (i, out) in block.chunks_exact_mut(h).enumerate() {
                let Row {
                    start, len, pos, ..
                } = rows[first + i];
                let (start, len, pos) = (start as usize, len as usize, pos as usize);
                for head in 0..heads {
                    let at = start * h + head * len * hd + pos * hd;
                    out[head * hd..(head + 1) * hd].copy_from_slice(&heads_src[at..at + hd]);
                }
            }
        });
    }
}
