//! L1: how texts become vectors: the embedding profiles (`evolve.embedding_profiles`) and
//! their embedders — the built-in feature hashing (or the function `evolve.embedding_function`
//! names), all-MiniLM-L6-v2 in the backend (`crate::model`), or a batched SQL function a
//! profile names (`text[] → vector[]`, resolved to its OID when the profile is created and run
//! with the rights of the role that created it, see `crate::userfn`).

use evolve_core::embed::{self, DEFAULT_DIM};
use evolve_core::SqlState;
use pgrx::prelude::*;

use crate::error::{raise, OrRaise};
use crate::gucs;
use crate::plans::{evolve_relation, Row};
use crate::userfn::UserFn;

/// The built-in deterministic embedder: feature hashing of words, word pairs and character
/// trigrams, L2-normalized, 256 dimensions, as `real[]` (`evolve.embed` casts it to a vector;
/// no text round trip).
#[pg_extern(immutable, strict, parallel_safe, name = "_embed_builtin")]
fn embed_builtin(text: &str) -> Vec<f32> {
    embed::embed(text, DEFAULT_DIM)
}

/// Embeds one text with the configured embedder: the built-in one, or the function named by
/// `evolve.embedding_function` (its vector read as `real[]`, checked to have the column's
/// dimension so one bad result fails its entity, not the batch).
pub fn embed_text(text: &str) -> Result<Vec<f32>, String> {
    match gucs::embedding_function() {
        None => Ok(embed::embed(text, DEFAULT_DIM)),
        Some(f) => {
            let (vector, _) = vector_types();
            let (datum, returned) = crate::userfn::call_setting_with_text(
                "evolve.embedding_function",
                &f,
                &[vector, pg_sys::FLOAT4ARRAYOID],
                text,
            )?;
            // SAFETY: the datum is of the type the catalog says the function returns (by OID).
            let v = unsafe {
                if returned == vector {
                    read_vector(datum)
                } else {
                    Vec::<f32>::from_datum(datum, false).unwrap_or_default()
                }
            };
            if v.len() != DEFAULT_DIM {
                return Err(format!(
                    "embedding function {f} returned {} dimensions, expected {DEFAULT_DIM}",
                    v.len()
                ));
            }
            Ok(v)
        }
    }
}

/// A pgvector datum's elements (layout: varlena header, int16 dim, int16 unused, float4[dim]).
///
/// # Safety
/// `datum` must be a valid, possibly toasted, vector datum.
unsafe fn read_vector(datum: pg_sys::Datum) -> Vec<f32> {
    // SAFETY: per the contract; the detoasted copy is read within its bounds (the dimension
    // it states is capped by its size).
    unsafe {
        let p = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<u8>();
        let size = pgrx::varlena::varsize_any(p.cast());
        let room = size.saturating_sub(8) / 4;
        let dim = (std::ptr::read_unaligned(p.add(4).cast::<i16>()).max(0) as usize).min(room);
        let data = p.add(8).cast::<f32>();
        (0..dim)
            .map(|i| std::ptr::read_unaligned(data.add(i)))
            .collect()
    }
}

/// pgvector's `vector` type and its array type, by OID: those of the embedding column (an
/// extension created again gets new ones), from the syscache.
pub fn vector_types() -> (pg_sys::Oid, pg_sys::Oid) {
    let rel = evolve_relation(c"entity_embeddings");
    // SAFETY: syscache lookups by oid and attribute name; every oid is checked before use.
    let (elem, array) = unsafe {
        let attnum = pg_sys::get_attnum(rel, c"embedding".as_ptr());
        let elem = pg_sys::get_atttype(rel, attnum);
        (elem, pg_sys::get_array_type(elem))
    };
    if elem == pg_sys::InvalidOid || array == pg_sys::InvalidOid {
        raise(
            SqlState::UndefinedObject,
            "evolve.entity_embeddings.embedding has no vector type",
            None,
            Some("Reinstall pg_evolve (its table definition is damaged).".into()),
        );
    }
    (elem, array)
}

/// The identity of the embedder, part of every content hash: changing the embedder changes
/// every hash, so nothing is skipped as unchanged.
pub fn embedder_id() -> String {
    gucs::embedding_function().unwrap_or_else(|| format!("builtin-fh-{DEFAULT_DIM}"))
}

/// What an embedding profile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// The built-in feature-hashing embedder, or the function `evolve.embedding_function` names.
    Hashing,
    /// all-MiniLM-L6-v2 in the backend (`crate::model`).
    MiniLm,
    /// A batched SQL function `text[] → vector[]`, with the role it runs as.
    Function(UserFn),
}

/// An embedding profile (`evolve.embedding_profiles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub dims: i32,
    pub model: Model,
    pub max_batch: usize,
}

impl Profile {
    /// The profile of every type that has not chosen one, and of generation 0.
    pub fn hashing() -> Profile {
        Profile {
            name: "hashing".into(),
            dims: DEFAULT_DIM as i32,
            model: Model::Hashing,
            max_batch: 100,
        }
    }

    /// The identity of its embedder in content hashes (the hashing profile's is the one of
    /// earlier versions, so their embeddings stay valid).
    pub fn embedder_id(&self) -> String {
        match self.model {
            Model::Hashing => embedder_id(),
            Model::MiniLm => crate::model::MINILM_ID.into(),
            Model::Function(f) => format!("function-{}-{}", f.oid.to_u32(), self.dims),
        }
    }
}

/// The profile of this name; raises 42704 when there is none. (Before 0.7.0 only hashing;
/// before 0.8.0 no function profiles.)
pub fn profile(name: &str) -> Profile {
    let rel = evolve_relation(c"embedding_profiles");
    if name == "hashing" || rel == pg_sys::InvalidOid {
        return Profile::hashing();
    }
    // SAFETY: a syscache lookup of an existing relation's attribute by name.
    let functions = unsafe { pg_sys::get_attnum(rel, c"function".as_ptr()) } > 0;
    // The function by its OID while that still names the signature it was created with, else
    // by the signature (after pg_upgrade or a restore: a scan of pg_proc, which needs no
    // privilege on the function's schema, as the caller may have none); InvalidOid when
    // neither exists.
    let sql = if functions {
        "SELECT e.dims, e.model, e.max_batch, \
                coalesce((SELECT p.oid FROM pg_catalog.pg_proc p \
                          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                          WHERE p.oid = e.function_oid \
                            AND pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, \
                                pg_catalog.oidvectortypes(p.proargtypes)) = e.function), \
                         (SELECT p.oid FROM pg_catalog.pg_proc p \
                          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                          WHERE pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, \
                                pg_catalog.oidvectortypes(p.proargtypes)) = e.function LIMIT 1), \
                         0::pg_catalog.oid), \
                e.run_as::pg_catalog.oid \
         FROM evolve.embedding_profiles e WHERE e.name = $1"
    } else {
        "SELECT dims, model, max_batch, NULL::pg_catalog.oid, NULL::pg_catalog.oid \
         FROM evolve.embedding_profiles WHERE name = $1"
    };
    type Found = (i32, String, i32, Option<pg_sys::Oid>, Option<pg_sys::Oid>);
    let row: Option<Found> = Spi::connect(|client| {
        client
            .select(sql, Some(1), &[name.into()])
            .or_raise()
            .map(|r| {
                (
                    r.value::<i32>(1).unwrap_or(0),
                    r.value::<String>(2).unwrap_or_default(),
                    r.value::<i32>(3).unwrap_or(1),
                    r.value::<pg_sys::Oid>(4),
                    r.value::<pg_sys::Oid>(5),
                )
            })
            .next()
    });
    let Some((dims, model, max_batch, function, run_as)) = row else {
        raise(
            SqlState::UndefinedObject,
            format!("embedding profile \"{name}\" does not exist"),
            None,
            Some("See evolve.embedding_profiles.".into()),
        );
    };
    let model = match (model.as_str(), function, run_as) {
        ("minilm", _, _) => Model::MiniLm,
        // A function that no longer exists fails each call with its own message.
        ("function", oid, Some(run_as)) => Model::Function(UserFn {
            oid: oid.unwrap_or(pg_sys::InvalidOid),
            run_as,
        }),
        _ => Model::Hashing,
    };
    Profile {
        name: name.into(),
        dims,
        model,
        max_batch: max_batch.max(1) as usize,
    }
}

/// Embeds texts with a profile, one result per text. The model runs a batch of up to the
/// profile's `max_batch` texts per forward pass; a batch that fails is embedded text by text,
/// so one bad text fails alone (and the worker retries and parks it). Hashing with a user
/// function: each call in a subtransaction. A function profile: each batch is one call, in a
/// subtransaction.
pub fn embed_with(profile: &Profile, texts: &[&str]) -> Vec<Result<Vec<f32>, String>> {
    match profile.model {
        Model::Hashing => texts
            .iter()
            .map(|t| {
                if gucs::embedding_function().is_some() {
                    let t = t.to_string();
                    match crate::error::in_subtransaction(move || embed_text(&t)) {
                        Ok(r) => r,
                        Err((_, message)) => Err(message),
                    }
                } else {
                    embed_text(t)
                }
            })
            .collect(),
        Model::MiniLm => crate::model::with_minilm(|model| {
            in_batches(texts, profile.max_batch, |chunk| {
                model.embed_batch(chunk).map_err(|e| e.to_string())
            })
        }),
        Model::Function(f) => in_batches(texts, profile.max_batch, |chunk| {
            call_function(f, profile, chunk)
        }),
    }
}

/// Embeds `texts` in batches of `max_batch` with `batch`; a batch that fails is embedded
/// again text by text, so one bad text fails alone.
fn in_batches(
    texts: &[&str],
    max_batch: usize,
    mut batch: impl FnMut(&[&str]) -> Result<Vec<Vec<f32>>, String>,
) -> Vec<Result<Vec<f32>, String>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(max_batch) {
        match batch(chunk) {
            Ok(vectors) => out.extend(vectors.into_iter().map(Ok)),
            Err(e) if chunk.len() == 1 => out.push(Err(e)),
            Err(_) => out.extend(
                chunk
                    .iter()
                    .map(|t| batch(&[t]).map(|mut v| v.pop().unwrap_or_default())),
            ),
        }
    }
    out
}

/// One text's embedding with a profile, or 22000 naming `what` was embedded.
pub fn embed_one(profile: &Profile, text: &str, what: &str) -> Vec<f32> {
    match embed_with(profile, &[text]).pop() {
        Some(Ok(v)) => v,
        Some(Err(e)) => raise(
            SqlState::DataException,
            format!("cannot embed {what}: {e}"),
            None,
            None,
        ),
        None => Vec::new(),
    }
}

/// One call of a profile's function with `texts` (as `text[]`), in a subtransaction: its
/// errors, a NULL, a result of another length or a vector of other dimensions fail the call.
fn call_function(f: UserFn, profile: &Profile, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
    let what = format!("embedding function of profile {}", profile.name);
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    let dims = profile.dims as usize;
    let attempt = move || -> Result<Vec<Vec<f32>>, String> {
        let n = texts.len();
        let arg = texts.into_datum().expect("an array is never NULL");
        let (vector, vectors) = vector_types();
        let Some(result) = crate::userfn::call(f, arg, &[vectors], &what)? else {
            return Err(format!("the {what} returned NULL"));
        };
        // SAFETY: the function returns vector[] (checked by `call`, by OID, from the catalog).
        let vectors = unsafe { read_vector_array(result, vector) };
        if vectors.len() != n {
            return Err(format!(
                "the {what} returned {} vectors for {n} texts",
                vectors.len()
            ));
        }
        vectors
            .into_iter()
            .map(|v| match v {
                Some(v) if v.len() == dims => Ok(v),
                Some(v) => Err(format!(
                    "the {what} returned {} dimensions, expected {dims}",
                    v.len()
                )),
                None => Err(format!("the {what} returned a NULL vector")),
            })
            .collect()
    };
    match crate::error::in_subtransaction(attempt) {
        Ok(result) => result,
        Err((_, message)) => Err(message),
    }
}

/// The elements of a `vector[]` datum (NULL elements as `None`), in order; nothing when its
/// elements are not of the type `vector` (by OID).
///
/// # Safety
/// `datum` must be a valid, possibly toasted, array.
unsafe fn read_vector_array(datum: pg_sys::Datum, vector: pg_sys::Oid) -> Vec<Option<Vec<f32>>> {
    // SAFETY: per the contract; deconstruct_array returns `n` datums and `n` null flags in
    // palloc'd arrays of the current memory context, read within their bounds.
    unsafe {
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        let elem = (*array).elemtype;
        if elem != vector {
            return Vec::new();
        }
        let (mut typlen, mut typbyval, mut typalign) = (0i16, false, 0 as std::ffi::c_char);
        pg_sys::get_typlenbyvalalign(elem, &mut typlen, &mut typbyval, &mut typalign);
        let mut values: *mut pg_sys::Datum = std::ptr::null_mut();
        let mut nulls: *mut bool = std::ptr::null_mut();
        let mut n = 0;
        pg_sys::deconstruct_array(
            array,
            elem,
            typlen.into(),
            typbyval,
            typalign,
            &mut values,
            &mut nulls,
            &mut n,
        );
        (0..n.max(0) as usize)
            .map(|i| (!*nulls.add(i)).then(|| read_vector(*values.add(i))))
            .collect()
    }
}

/// Resolves the function a profile names: `schema.fn(text[])` returning `vector[]`, without
/// any search_path, to run as the calling role (who must be allowed to execute it, and whose
/// privileges its owner must hold); `evolve.create_embedding_profile` stores the OID and the
/// role. Raises 22023, 42883, 42501 or 42P13 with a hint.
#[pg_extern(
    volatile,
    strict,
    parallel_unsafe,
    name = "_resolve_embedding_function"
)]
fn resolve_embedding_function(name: &str) -> pg_sys::Oid {
    if !evolve_core::ident::is_valid_function_name(name) {
        raise(
            SqlState::InvalidParameterValue,
            format!("invalid function name: {name}"),
            None,
            Some("Name the function as schema.function (letters, digits and underscores).".into()),
        );
    }
    crate::userfn::resolve(
        name,
        "text[]",
        &[vector_types().1],
        crate::access::caller(),
        "embedding function",
    )
    .oid
}

/// A text's embedding with the named profile, as `real[]` (`evolve.embed(text, profile)` casts
/// it to a vector).
#[pg_extern(stable, strict, parallel_restricted, name = "_embed_profile")]
fn embed_profile(text: &str, profile: &str) -> Vec<f32> {
    embed_one(
        &self::profile(profile),
        text,
        &format!("the text with profile \"{profile}\""),
    )
}
