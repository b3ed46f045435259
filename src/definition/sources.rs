//! The schema of a valid job's data set, for the API document only. `data` holds its data set's
//! fields flattened beside its own (`source` of [`ImageDataSpec`](super::ImageDataSpec) and
//! [`TextDataSpec`](super::TextDataSpec)); utoipa documents that as an `allOf` of the data set's
//! `oneOf` and the other fields, which client generators cannot turn into a type
//! (openapi-python-client drops both schemas, and every job with them). Here the data set is one
//! object instead: `dataset` names it and is required; the fields of a data set are optional,
//! each saying which data sets have it.

use utoipa::PartialSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::data::{DatasetSpec, TextSource};

/// The tag that names a data set.
const TAG: &str = "dataset";

/// `data` of a classifier: [`DatasetSpec`] as one object.
pub(super) fn images() -> RefOr<Schema> {
    one_object(DatasetSpec::schema())
}

/// `data` of a language model: [`TextSource`] as one object.
pub(super) fn text() -> RefOr<Schema> {
    one_object(TextSource::schema())
}

/// A `oneOf` of objects tagged by [`TAG`] (an internally tagged enum) as one object, as the
/// module doc says.
fn one_object(tagged: RefOr<Schema>) -> RefOr<Schema> {
    let RefOr::T(Schema::OneOf(one_of)) = tagged else { panic!("a tagged enum's schema is a oneOf") };
    let mut names = Vec::new();
    let mut kinds = Vec::new();
    // Each field with the data sets that have it, in the order first seen.
    let mut fields: Vec<(String, RefOr<Schema>, Vec<String>)> = Vec::new();
    for variant in one_of.items {
        let RefOr::T(Schema::Object(variant)) = variant else { panic!("a tagged variant is an object") };
        let tag = variant.properties.get(TAG).and_then(|tag| match tag {
            RefOr::T(Schema::Object(tag)) => tag.enum_values.as_ref()?.first()?.as_str().map(str::to_string),
            _ => None,
        });
        let name = tag.expect("a tagged variant names itself in its tag");
        kinds.push(format!(
            "`{name}`: {}",
            variant.description.as_deref().unwrap_or_default().replace('\n', " ")
        ));
        for (field, schema) in variant.properties.into_iter().filter(|(field, _)| field != TAG) {
            match fields.iter_mut().find(|(known, ..)| *known == field) {
                Some((.., owners)) => owners.push(name.clone()),
                None => fields.push((field, schema, vec![name.clone()])),
            }
        }
        names.push(name);
    }
    let tag = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .description(Some(kinds.join(" ")));
    let mut object = ObjectBuilder::new().schema_type(Type::Object).property(TAG, tag).required(TAG);
    for (field, schema, owners) in fields {
        let owners = owners.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ");
        object = object.property(field, described(schema, format!("Only for {owners}.")));
    }
    object.description(one_of.description).into()
}

/// `schema` with `description` where it has none.
fn described(schema: RefOr<Schema>, description: String) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Object(mut object)) => {
            object.description.get_or_insert(description);
            RefOr::T(Schema::Object(object))
        }
        other => other,
    }
}
