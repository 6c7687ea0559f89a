//! Reading `config.json` and `model.safetensors` into the weights of the encoder.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header naming each
//! tensor's dtype, shape and byte range, and the raw little-endian data. The header is parsed
//! and checked here, then each tensor is read straight from the file into its own `Vec<f32>`
//! through a small buffer, so loading never holds the whole 87 MiB file in memory next to the
//! weights. The linear layers' weights are stored transposed (`in × out`) for the products of
//! the forward pass, and the query, key and value projections are concatenated into one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use crate::{LoadError, DIMS, MAX_TOKENS};

/// The fields of `config.json` the forward pass depends on.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".to_owned()
}

impl Config {
    pub fn read(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::unreadable(path, e))?;
        let config: Config =
            serde_json::from_str(&text).map_err(|e| LoadError::corrupt(path, e.to_string()))?;
        let bad = |reason: String| Err(LoadError::corrupt(path, reason));
        if config.hidden_size != DIMS {
            return bad(format!(
                "hidden_size is {}, this embedder is for {DIMS}",
                config.hidden_size
            ));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return bad(format!(
                "{} attention heads do not divide hidden_size {}",
                config.num_attention_heads, config.hidden_size
            ));
        }
        if config.num_hidden_layers == 0 || config.num_hidden_layers > 64 {
            return bad(format!("num_hidden_layers is {}", config.num_hidden_layers));
        }
        if config.intermediate_size == 0 || config.intermediate_size > 1 << 16 {
            return bad(format!("intermediate_size is {}", config.intermediate_size));
        }
        if config.max_position_embeddings < MAX_TOKENS {
            return bad(format!(
                "max_position_embeddings is {}, below the {MAX_TOKENS} tokens embedded",
                config.max_position_embeddings
            ));
        }
        if config.vocab_size == 0 || config.type_vocab_size == 0 {
            return bad("empty vocabulary".to_owned());
        }
        // "gelu" in transformers' BERT is the exact, erf-based GELU.
        if config.hidden_act != "gelu" {
            return bad(format!(
                "hidden_act is {:?}, only \"gelu\" is implemented",
                config.hidden_act
            ));
        }
        if !(config.layer_norm_eps > 0.0 && config.layer_norm_eps < 1.0) {
            return bad(format!("layer_norm_eps is {}", config.layer_norm_eps));
        }
        Ok(config)
    }
}

/// One encoder layer. Matrices are row-major `in × out`.
pub struct Layer {
    /// Query, key and value projections side by side: `hidden × 3·hidden`.
    pub qkv_w: Vec<f32>,
    pub qkv_b: Vec<f32>,
    pub attn_out_w: Vec<f32>,
    pub attn_out_b: Vec<f32>,
    pub attn_ln_g: Vec<f32>,
    pub attn_ln_b: Vec<f32>,
    pub inter_w: Vec<f32>,
    pub inter_b: Vec<f32>,
    pub out_w: Vec<f32>,
    pub out_b: Vec<f32>,
    pub out_ln_g: Vec<f32>,
    pub out_ln_b: Vec<f32>,
}

/// All weights of the encoder (the pooler of the checkpoint is not used by the sentence model).
pub struct Weights {
    /// `vocab × hidden`.
    pub word_emb: Vec<f32>,
    /// Position embeddings of the first [`MAX_TOKENS`] positions with the embedding of token
    /// type 0 (the only type used) already added: `MAX_TOKENS × hidden`.
    pub pos_type_emb: Vec<f32>,
    pub emb_ln_g: Vec<f32>,
    pub emb_ln_b: Vec<f32>,
    pub layers: Vec<Layer>,
}

impl Weights {
    /// Bytes held by the weights.
    pub fn bytes(&self) -> usize {
        let layer = |l: &Layer| {
            [
                &l.qkv_w,
                &l.qkv_b,
                &l.attn_out_w,
                &l.attn_out_b,
                &l.attn_ln_g,
                &l.attn_ln_b,
                &l.inter_w,
                &l.inter_b,
                &l.out_w,
                &l.out_b,
                &l.out_ln_g,
                &l.out_ln_b,
            ]
            .iter()
            .map(|v| v.len())
            .sum::<usize>()
        };
        4 * (self.word_emb.len()
            + self.pos_type_emb.len()
            + self.emb_ln_g.len()
            + self.emb_ln_b.len()
            + self.layers.iter().map(layer).sum::<usize>())
    }
}

#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// An open safetensors file: its parsed header and a reader positioned anywhere.
struct SafeTensors<'p> {
    path: &'p Path,
    reader: BufReader<File>,
    data_start: u64,
    data_len: u64,
    tensors: HashMap<String, TensorInfo>,
}

impl<'p> SafeTensors<'p> {
    fn open(path: &'p Path) -> Result<Self, LoadError> {
        let file = File::open(path).map_err(|e| LoadError::unreadable(path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| LoadError::unreadable(path, e))?
            .len();
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut len_bytes = [0u8; 8];
        reader
            .read_exact(&mut len_bytes)
            .map_err(|e| LoadError::read_failed(path, e))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > 100 << 20 || header_len + 8 > file_len {
            return Err(LoadError::corrupt(
                path,
                format!("header length {header_len} does not fit a file of {file_len} bytes"),
            ));
        }
        let mut header = vec![0u8; header_len as usize];
        reader
            .read_exact(&mut header)
            .map_err(|e| LoadError::read_failed(path, e))?;
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| LoadError::corrupt(path, format!("header: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, value) in raw {
            if name == "__metadata__" {
                continue;
            }
            let info: TensorInfo = serde_json::from_value(value)
                .map_err(|e| LoadError::corrupt(path, format!("header entry {name}: {e}")))?;
            tensors.insert(name, info);
        }
        Ok(SafeTensors {
            path,
            reader,
            data_start: 8 + header_len,
            data_len: file_len - 8 - header_len,
            tensors,
        })
    }

    /// Reads the float32 tensor `name`, checking that its shape is `shape`.
    fn read(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        let path = self.path;
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| LoadError::corrupt(path, format!("no tensor {name}")))?;
        if info.dtype != "F32" {
            return Err(LoadError::corrupt(
                path,
                format!("{name} is {}, expected F32", info.dtype),
            ));
        }
        if info.shape != shape {
            return Err(LoadError::corrupt(
                path,
                format!("{name} has shape {:?}, expected {shape:?}", info.shape),
            ));
        }
        let count: usize = shape.iter().product();
        let [begin, end] = info.data_offsets;
        if begin > end || end > self.data_len || end - begin != 4 * count as u64 {
            return Err(LoadError::corrupt(
                path,
                format!("{name} has byte range {begin}..{end}, expected {count} floats inside {} bytes of data", self.data_len),
            ));
        }
        self.reader
            .seek(SeekFrom::Start(self.data_start + begin))
            .map_err(|e| LoadError::read_failed(path, e))?;
        let mut out = Vec::with_capacity(count);
        let mut buf = vec![0u8; 1 << 16];
        let mut left = 4 * count;
        while left > 0 {
            let chunk = &mut buf[..left.min(1 << 16)];
            self.reader
                .read_exact(chunk)
                .map_err(|e| LoadError::read_failed(path, e))?;
            out.extend(
                chunk
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            left -= chunk.len();
        }
        if let Some(pos) = out.iter().position(|v| !v.is_finite()) {
            return Err(LoadError::corrupt(
                path,
                format!("{name} holds a non-finite value at index {pos}"),
            ));
        }
        Ok(out)
    }

    /// Reads the weight of a linear layer (`out × in` in the file) transposed to `in × out`.
    fn read_linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Vec<f32>, LoadError> {
        let w = self.read(name, &[out, inp])?;
        Ok(transpose(&w, out, inp))
    }
}

/// Transposes a row-major `rows × cols` matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for (r, row) in m.chunks_exact(cols).enumerate() {
        for (c, v) in row.iter().enumerate() {
            t[c * rows + r] = *v;
        }
    }
    t
}

/// Reads the encoder's weights from `path` (a `model.safetensors` of a BERT model, with or
/// without the `bert.` prefix on its tensor names).
pub fn read_weights(path: &Path, config: &Config) -> Result<Weights, LoadError> {
    let mut st = SafeTensors::open(path)?;
    let prefix = if st.tensors.contains_key("embeddings.word_embeddings.weight") {
        ""
    } else {
        "bert."
    };
    let h = config.hidden_size;
    let inter = config.intermediate_size;
    let name = |n: &str| format!("{prefix}{n}");

    let word_emb = st.read(
        &name("embeddings.word_embeddings.weight"),
        &[config.vocab_size, h],
    )?;
    let pos = st.read(
        &name("embeddings.position_embeddings.weight"),
        &[config.max_position_embeddings, h],
    )?;
    let types = st.read(
        &name("embeddings.token_type_embeddings.weight"),
        &[config.type_vocab_size, h],
    )?;
    let mut pos_type_emb = pos[..MAX_TOKENS * h].to_vec();
    for row in pos_type_emb.chunks_exact_mut(h) {
        for (p, t) in row.iter_mut().zip(&types[..h]) {
            *p += t;
        }
    }
    drop(pos);
    let emb_ln_g = st.read(&name("embeddings.LayerNorm.weight"), &[h])?;
    let emb_ln_b = st.read(&name("embeddings.LayerNorm.bias"), &[h])?;

    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let l = |n: &str| name(&format!("encoder.layer.{i}.{n}"));
        let q = st.read_linear(&l("attention.self.query.weight"), h, h)?;
        let k = st.read_linear(&l("attention.self.key.weight"), h, h)?;
        let v = st.read_linear(&l("attention.self.value.weight"), h, h)?;
        let mut qkv_w = Vec::with_capacity(3 * h * h);
        for r in 0..h {
            for m in [&q, &k, &v] {
                qkv_w.extend_from_slice(&m[r * h..(r + 1) * h]);
            }
        }
        let mut qkv_b = st.read(&l("attention.self.query.bias"), &[h])?;
        qkv_b.extend(st.read(&l("attention.self.key.bias"), &[h])?);
        qkv_b.extend(st.read(&l("attention.self.value.bias"), &[h])?);
        layers.push(Layer {
            qkv_w,
            qkv_b,
            attn_out_w: st.read_linear(&l("attention.output.dense.weight"), h, h)?,
            attn_out_b: st.read(&l("attention.output.dense.bias"), &[h])?,
            attn_ln_g: st.read(&l("attention.output.LayerNorm.weight"), &[h])?,
            attn_ln_b: st.read(&l("attention.output.LayerNorm.bias"), &[h])?,
            inter_w: st.read_linear(&l("intermediate.dense.weight"), inter, h)?,
            inter_b: st.read(&l("intermediate.dense.bias"), &[inter])?,
            out_w: st.read_linear(&l("output.dense.weight"), h, inter)?,
            out_b: st.read(&l("output.dense.bias"), &[h])?,
            out_ln_g: st.read(&l("output.LayerNorm.weight"), &[h])?,
            out_ln_b: st.read(&l("output.LayerNorm.bias"), &[h])?,
        });
    }
    Ok(Weights {
        word_emb,
        pos_type_emb,
        emb_ln_g,
        emb_ln_b,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_axes() {
        let m = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
        assert_eq!(transpose(&m, 2, 3), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
