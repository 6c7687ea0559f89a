//! L2: what entities are embedded from and into: the enriched text, the embedders (built-in
//! or `evolve.embedding_function`), pgvector datums, and semantic search.

use evolve_core::embed;
use evolve_core::schema::Definition;
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

use crate::error::{raise, OrRaise};
use crate::gucs::{self, SearchDuringReembed};
use crate::plans::evolve_relation;
use crate::plans::Row;
use crate::store::effective_definition;

/// The text an entity is embedded from (see docs: snapshot + semantic descriptions).
#[pg_extern(stable, parallel_safe)]
fn enriched_text(entity_id: i64) -> Option<String> {
    let row = Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT entity_type, user_id, snapshot FROM evolve.entities WHERE entity_id = $1",
                Some(1),
                &[entity_id.into()],
            )
            .or_raise();
        if rows.is_empty() {
            return None;
        }
        let r = rows.first();
        Some((
            r.value::<String>(1).unwrap_or_default(),
            r.value::<String>(2),
            r.value::<JsonB>(3).map(|j| j.0).unwrap_or(Value::Null),
        ))
    })?;
    let def = effective_definition(&row.0, row.1.as_deref())
        .map(|e| e.definition)
        .unwrap_or_else(|| {
            Definition::parse(&serde_json::json!({"entity_type": row.0})).expect("valid")
        });
    Some(embed::enriched_text(
        &def,
        row.2.as_object().unwrap_or(&Map::new()),
    ))
}

/// The `vector[]` argument of a batch's write: each element built in place in pgvector's
/// documented layout (varlena header, int16 dim, int16 unused, float4[dim]), so no vector goes
/// through text, a `real[]` slice or a cast. The element type is the embedding column's own,
/// looked up in the syscache at every batch (a recreated extension gets a new type oid).
pub fn vector_array(vectors: &[&[f32]]) -> pgrx::datum::DatumWithOid<'static> {
    let (elem, array) = crate::embedders::vector_types();
    let mut elems: Vec<pg_sys::Datum> = vectors
        .iter()
        .map(|v| {
            let size = pg_sys::VARHDRSZ + 4 + 4 * v.len();
            // SAFETY: palloc0 returns a MAXALIGNed, zeroed block of `size` bytes in the current
            // memory context; the header, the dimension (int16 at offset 4; offset 6 stays 0)
            // and the floats (from offset 8) are written inside it.
            unsafe {
                let p = pg_sys::palloc0(size).cast::<u8>();
                pgrx::set_varsize_4b(p.cast(), size as i32);
                p.add(4).cast::<i16>().write(v.len() as i16);
                std::ptr::copy_nonoverlapping(v.as_ptr(), p.add(8).cast::<f32>(), v.len());
                pg_sys::Datum::from(p)
            }
        })
        .collect();
    let (mut typlen, mut typbyval, mut typalign) = (0i16, false, 0 as std::ffi::c_char);
    // SAFETY: `elems` holds `vectors.len()` varlena datums of type `elem`, whose storage
    // properties are read from the catalog; construct_array copies them into a new array
    // palloc'd in the current memory context, which outlives the statement.
    let datum = unsafe {
        pg_sys::get_typlenbyvalalign(elem, &mut typlen, &mut typbyval, &mut typalign);
        pg_sys::construct_array(
            elems.as_mut_ptr(),
            elems.len() as i32,
            elem,
            typlen.into(),
            typbyval,
            typalign,
        )
    };
    // SAFETY: the datum is a valid array of the array type given.
    unsafe { pgrx::datum::DatumWithOid::new(pg_sys::Datum::from(datum), array) }
}

thread_local! {
    static VECTOR_SCHEMA: std::cell::OnceCell<String> = const { std::cell::OnceCell::new() };
}

/// The schema of the vector extension's type, quoted; resolved once per backend. Queries name
/// its type and operator through it, so they never depend on the caller's search_path.
fn vector_schema() -> String {
    VECTOR_SCHEMA.with(|s| {
        s.get_or_init(|| {
            crate::plans::one::<String>(
                "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
                 WHERE a.attrelid = 'evolve.entity_embeddings'::pg_catalog.regclass AND a.attname = 'embedding'",
                &[],
            )
            .unwrap_or_else(|| "public".into())
        })
        .clone()
    })
}

/// Nearest entities of a type to a query text, by cosine distance of their embeddings in the
/// type's current generation (returned with each row). A type being re-embedded whole is
/// answered from its complete current generation, with its index, until the new one replaces
/// it in one commit. While a job re-embeds part of a type in place,
/// `evolve.search_during_reembed` decides: allow, warn (default) or block (SQLSTATE 55000).
#[pg_extern(volatile, parallel_unsafe)]
fn semantic_search(
    entity_type: &str,
    query: &str,
    k: default!(i32, 10),
) -> TableIterator<
    'static,
    (
        name!(entity_id, i64),
        name!(entity_key, String),
        name!(distance, f64),
        name!(snapshot, JsonB),
        name!(generation, i64),
    ),
> {
    if k < 1 {
        raise(
            SqlState::InvalidParameterValue,
            "k must be positive",
            None,
            None,
        );
    }
    let generations = evolve_relation(c"embedding_generations") != pg_sys::InvalidOid;
    let active = crate::plans::one::<i64>(
        if generations {
            "SELECT count(*) FROM evolve.schema_migration_jobs j \
             WHERE $1 = ANY(j.entity_types) AND j.status IN ('queued', 'running') \
               AND NOT EXISTS (SELECT FROM evolve.embedding_generations g \
                               WHERE g.job_id = j.id AND g.entity_type = $1 AND g.state = 'building')"
        } else {
            "SELECT count(*) FROM evolve.schema_migration_jobs WHERE $1 = ANY(entity_types) AND status IN ('queued', 'running')"
        },
        &[entity_type.into()],
    )
    .unwrap_or(0);
    if active > 0 {
        match gucs::search_during_reembed() {
            SearchDuringReembed::Allow => {}
            SearchDuringReembed::Warn => pgrx::warning!(
                "\"{entity_type}\" is being re-embedded in place ({active} active job(s)): results may mix old and new embeddings"
            ),
            SearchDuringReembed::Block => raise(
                SqlState::ObjectNotInPrerequisiteState,
                format!("\"{entity_type}\" is being re-embedded in place ({active} active job(s))"),
                None,
                Some("Wait for evolve.migration_progress to reach 100 %, or SET evolve.search_during_reembed = 'warn'.".into()),
            ),
        }
    }
    let v = vector_schema();
    let generation = if generations {
        // The table first, then which generation is current: a replaced generation (its
        // partition, or its rows of generation 0) goes only while no search holds the table,
        // so the generation read here stays whole until the search below has read it.
        // SAFETY: an ordinary lock on an existing relation, held to the end of the transaction.
        unsafe {
            pg_sys::LockRelationOid(
                evolve_relation(c"entity_embeddings"),
                pg_sys::AccessShareLock as pg_sys::LOCKMODE,
            )
        };
        Spi::connect(|client| {
            client
                .select(
                    "SELECT generation, profile FROM evolve.embedding_generations \
                     WHERE entity_type = $1 AND state = 'current'",
                    Some(1),
                    &[entity_type.into()],
                )
                .or_raise()
                .map(|r| {
                    (
                        r.value::<i64>(1).unwrap_or(0),
                        r.value::<String>(2).unwrap_or_default(),
                    )
                })
                .next()
        })
        .unwrap_or((0, "hashing".into()))
    } else {
        (0, "hashing".into())
    };
    let (generation, profile) = (generation.0, crate::embedders::profile(&generation.1));
    // The query is embedded as the generation's vectors were.
    let q = crate::embedders::embed_one(&profile, query, "the query");
    let dims = profile.dims;
    // The generation as a value known when planning: the plan reads that one partition.
    let sql = if generations {
        format!(
            "SELECT e.entity_id, e.entity_key, (x.embedding::{v}.vector({dims}) OPERATOR({v}.<=>) $1::{v}.vector({dims}))::float8, \
                    e.snapshot, x.generation \
             FROM evolve.entity_embeddings x JOIN evolve.entities e USING (entity_id) \
             WHERE x.generation = $4 AND e.entity_type = $2 \
             ORDER BY x.embedding::{v}.vector({dims}) OPERATOR({v}.<=>) $1::{v}.vector({dims}) LIMIT $3"
        )
    } else {
        format!(
            "SELECT e.entity_id, e.entity_key, (x.embedding OPERATOR({v}.<=>) $1::{v}.vector)::float8, e.snapshot, 0::int8 \
             FROM evolve.entity_embeddings x JOIN evolve.entities e USING (entity_id) \
             WHERE e.entity_type = $2 ORDER BY x.embedding OPERATOR({v}.<=>) $1::{v}.vector LIMIT $3"
        )
    };
    let rows: Vec<(i64, String, f64, JsonB, i64)> = Spi::connect(|client| {
        client
            .select(
                &sql,
                None,
                &[
                    q.into(),
                    entity_type.into(),
                    (k as i64).into(),
                    generation.into(),
                ],
            )
            .or_raise()
            .map(|r| {
                (
                    r.value::<i64>(1).unwrap_or(0),
                    r.value::<String>(2).unwrap_or_default(),
                    r.value::<f64>(3).unwrap_or(0.0),
                    r.value::<JsonB>(4).unwrap_or(JsonB(Value::Null)),
                    r.value::<i64>(5).unwrap_or(0),
                )
            })
            .collect()
    });
    TableIterator::new(rows)
}
