//! L4: schema interchange. `export_schema` writes a type's effective schema as JSON Schema
//! 2020-12 or Avro; `import_schema` reads one and registers it through the registry pipeline
//! (every check of `register_schema` applies). The mappings are evolve_core::interop's.

use evolve_core::interop;
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::access;
use crate::args::check_user_id;
use crate::error::{raise, required, OrRaise};
use crate::jsonb::Json;

/// The effective schema of a type (the global schema merged with the user's extension) as
/// JSON Schema 2020-12 (`jsonschema`) or an Avro record schema (`avro`).
#[pg_extern(stable, parallel_safe)]
fn export_schema(
    entity_type: Option<&str>,
    format: default!(Option<&str>, "'jsonschema'"),
    user_id: default!(Option<String>, "NULL"),
) -> JsonB {
    let entity_type = required(entity_type, "entity_type");
    let format = required(format, "format");
    check_user_id(user_id.as_deref());
    access::require_read(user_id.as_deref());
    let Some(effective) = crate::store::effective_definition(entity_type, user_id.as_deref())
    else {
        raise(
            SqlState::UndefinedObject,
            format!("entity type \"{entity_type}\" has no active schema"),
            None,
            Some("Register it with evolve.register_schema or evolve.import_schema first.".into()),
        );
    };
    JsonB(interop::export(&effective.definition, format).or_raise())
}

/// Registers a schema given as JSON Schema (`jsonschema`) or Avro (`avro`): its entity type is
/// `entity_type`, or else the document's title (JSON Schema) or name (Avro). Returns the new
/// version, as `register_schema` does.
#[pg_extern(volatile, parallel_unsafe)]
fn import_schema(
    doc: Json,
    format: default!(Option<&str>, "'jsonschema'"),
    entity_type: default!(Option<String>, "NULL"),
    user_id: default!(Option<String>, "NULL"),
) -> i32 {
    let format = required(format, "format");
    let definition = interop::import(&doc.0, format, entity_type.as_deref()).or_raise();
    crate::registry::register(&definition.to_json(), user_id.as_deref())
}
