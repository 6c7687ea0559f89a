//! Exported schemas checked by real validators: the JSON Schema export of an earthquake
//! definition validates every feature of a week of USGS data (and rejects a wrong nested type
//! at the right path) with the `jsonschema` crate; the exported schema agrees with pg_evolve's
//! own payload semantics on a table of values; the Avro export parses with `apache-avro`, and
//! the USGS features resolve against it and encode.

use evolve_core::interop::{from_avro, from_json_schema, to_avro, to_json_schema};
use evolve_core::payload::conforms_to;
use evolve_core::schema::{AttrType, Attribute, Definition};
use serde_json::{json, Value};

fn earthquake() -> Definition {
    Definition::parse_input(&json!({"entity_type": "earthquake", "description": "A seismic event", "attributes": {
      "properties": {"type": "object", "properties": {
        "mag": {"type": "number", "merge_policy": "max", "description": "Magnitude"},
        "place": {"type": "string"}, "time": {"type": "timestamp", "required": true},
        "tsunami": {"type": "integer", "default": 0}, "felt": {"type": "integer"}}},
      "geometry": {"type": "object", "properties": {"coordinates": {"type": "array", "items": "number"}}},
      "id": {"type": "string", "required": true}}}))
    .unwrap()
}

fn features() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/usgs-earthquakes-week.geojson"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let collection: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(collection["type"], "FeatureCollection");
    let features = collection["features"].as_array().unwrap().clone();
    assert!(features.len() > 1000, "{} features", features.len());
    features
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(schema).expect("the exported schema is a valid 2020-12 schema")
}

#[test]
fn json_schema_validates_every_usgs_feature() {
    let def = earthquake();
    let schema = to_json_schema(&def);
    assert!(jsonschema::meta::is_valid(&schema));
    let v = validator(&schema);
    let features = features();
    for f in &features {
        let errors: Vec<String> = v
            .iter_errors(f)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "feature {}: {errors:?}", f["id"]);
    }
    // Nulls in the data (felt, mag…) are accepted: null fits every attribute.
    assert!(features.iter().any(|f| f["properties"]["felt"].is_null()));
    // The export reads back as the definition.
    assert_eq!(from_json_schema(&schema, None), Ok(def));
}

#[test]
fn json_schema_rejects_a_wrong_nested_type_at_its_path() {
    let v = validator(&to_json_schema(&earthquake()));
    let mut f = features()[0].clone();
    f["properties"]["mag"] = json!("2.0");
    let paths: Vec<String> = v
        .iter_errors(&f)
        .map(|e| e.instance_path().to_string())
        .collect();
    assert_eq!(paths, ["/properties/mag"]);

    let cases = [
        ("/properties/time", json!({"time": "yesterday"})),
        ("/properties/time", json!({"time": 1.5})),
        ("/properties/tsunami", json!({"tsunami": 0.5})),
        ("/geometry/coordinates/1", json!(null)),
        ("/geometry", json!(null)),
        ("/id", json!(null)),
    ];
    for (path, change) in cases {
        let mut f = features()[0].clone();
        match path {
            "/geometry/coordinates/1" => f["geometry"]["coordinates"][1] = json!("34.5"),
            "/geometry" => f["geometry"] = json!([1]),
            "/id" => f["id"] = json!(7),
            _ => {
                for (k, val) in change.as_object().unwrap() {
                    f["properties"][k] = val.clone();
                }
            }
        }
        let paths: Vec<String> = v
            .iter_errors(&f)
            .map(|e| e.instance_path().to_string())
            .collect();
        assert_eq!(paths, [path], "{change}");
    }
    // A required attribute must be present (null is accepted).
    let mut f = features()[0].clone();
    f["properties"].as_object_mut().unwrap().remove("time");
    let errors: Vec<String> = v.iter_errors(&f).map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("time"), "{errors:?}");
    f["properties"]["time"] = Value::Null;
    assert!(v.is_valid(&f));
}

/// The exported schema accepts every value pg_evolve accepts as conforming; where it also
/// accepts a value pg_evolve refuses, that laxness is one the module documents.
#[test]
fn json_schema_agrees_with_payload_semantics() {
    let huge: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
    let exp: Value = serde_json::from_str("1e3").unwrap();
    let one_point_zero: Value = serde_json::from_str("1.0").unwrap();
    let values = vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-5),
        json!(1_706_702_400_000_i64),
        json!(1.5),
        exp.clone(),
        one_point_zero.clone(),
        huge.clone(),
        json!("x"),
        json!(""),
        json!("2024-01-31"),
        json!("2023-02-29"),
        json!("2024-01-31T12:00:00Z"),
        json!("2024-01-31 12:00"),
        json!("2024-01-31t12:00:00.123+02:00"),
        json!("2024-02-30T00:00:00Z"),
        json!("2024-01-31T25:00:00Z"),
        json!("2024-01-31T12:00:00+02"),
        json!({}),
        json!({"k": 1, "s": "x"}),
        json!({"k": "1"}),
        json!([]),
        json!([1, "a", null]),
        json!([1.5, 2]),
    ];
    let mut attributes: Vec<(String, Value)> = AttrType::ALL
        .iter()
        .map(|t| (t.as_str().to_string(), json!({"type": t.as_str()})))
        .collect();
    attributes.extend([
        (
            "record".into(),
            json!({"type": "object", "properties": {"k": {"type": "integer"}}}),
        ),
        (
            "map".into(),
            json!({"type": "object", "values": {"type": "integer"}}),
        ),
        (
            "numbers".into(),
            json!({"type": "array", "items": {"type": "number"}}),
        ),
        (
            "dates".into(),
            json!({"type": "array", "items": {"type": "date"}}),
        ),
    ]);
    let mut lax = Vec::new();
    for (name, attr) in &attributes {
        let def = Definition::parse_input(&json!({"entity_type": "e", "attributes": {"a": attr}}))
            .unwrap();
        let a: &Attribute = &def.attributes["a"];
        let v = validator(&to_json_schema(&def));
        for value in &values {
            let payload = json!({ "a": value });
            let valid = v.is_valid(&payload);
            let conforms = conforms_to(a, value);
            assert!(
                valid || !conforms,
                "{name}: {value} conforms but the schema rejects it"
            );
            if valid && !conforms {
                lax.push(format!("{name} {value}"));
            }
        }
    }
    // JSON Schema's integer takes 1e3, 1.0 and integers past 64 bits; the patterns do not
    // check calendars.
    let mut documented = Vec::new();
    for t in ["integer", "timestamp"] {
        for v in [&exp, &one_point_zero, &huge] {
            documented.push(format!("{t} {v}"));
        }
    }
    documented.extend([
        "timestamp \"2024-02-30T00:00:00Z\"".to_string(),
        "timestamp \"2024-01-31T25:00:00Z\"".to_string(),
        "date \"2023-02-29\"".to_string(),
    ]);
    for l in &lax {
        assert!(
            documented.contains(l),
            "undocumented laxness: {l} (all: {lax:?})"
        );
    }
    assert_eq!(lax.len(), documented.len(), "{lax:?}");
}

#[test]
fn avro_export_parses_and_encodes_usgs_features() {
    let def = earthquake();
    let doc = to_avro(&def, "org.usgs");
    let schema = apache_avro::Schema::parse(&doc).expect("the Avro export parses");
    let apache_avro::Schema::Record(record) = &schema else {
        panic!("{schema:?}")
    };
    assert_eq!(record.name.fullname(None), "org.usgs.earthquake");
    assert_eq!(from_avro(&doc, None), Ok(def));
    // Every feature resolves against the schema (undeclared members are dropped), encodes and
    // decodes.
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .unwrap();
    for f in features() {
        let value = apache_avro::types::Value::try_from(f.clone()).unwrap();
        let resolved = value
            .resolve(&schema)
            .unwrap_or_else(|e| panic!("feature {}: {e}", f["id"]));
        let bytes = writer.write_value_to_vec(resolved.clone()).unwrap();
        let back = reader.read_value(&mut bytes.as_slice()).unwrap();
        assert_eq!(back, resolved);
    }
}

#[test]
fn avro_export_of_every_feature_parses() {
    let def = Definition::parse_input(&json!({
        "entity_type": "order", "description": "An order",
        "attributes": {
            "s": {"type": "string", "default": "x", "aliases": ["S", "Beak Length (mm)"]},
            "n": {"type": "number", "default": 1.5},
            "i": {"type": "integer", "required": true, "default": 0},
            "t": {"type": "timestamp", "default": "2024-01-31T12:00:00Z"},
            "d": {"type": "date", "default": "2024-02-29"},
            "o": {"type": "object", "default": {"k": 1}},
            "a": {"type": "array"},
            "customer": {"type": "object", "properties": {
                "address": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            "customer_address": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "tags": {"type": "object", "values": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
            "matrix": {"type": "array", "items": {"type": "array", "items": "number"}}
        },
        "relationships": {"buyer": {"target": "person", "key": "id"}}
    }))
    .unwrap();
    let doc = to_avro(&def, "shop");
    apache_avro::Schema::parse(&doc).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
    assert_eq!(from_avro(&doc, None), Ok(def));
}
