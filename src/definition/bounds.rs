//! The bounds of a job definition's list fields, for the API document only: utoipa's field
//! attributes bound a number but not the items of a list, so `model.widths`, `model.blocks`,
//! `model.hidden` and `model.layers` take their schemas from here, which state the ranges
//! validation enforces.

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::validate::{
    MAX_BLOCKS, MAX_CHANNELS, MAX_HIDDEN_LAYERS, MAX_SEQUENTIAL_LAYERS, MAX_STAGES, MAX_WIDTH,
};

/// An integer from 1 to `max`.
fn count(max: usize) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(max))
}

/// A list of 1 to `max_len` integers from 1 to `max`, or null.
fn list(max: usize, max_len: usize, description: &str) -> RefOr<Schema> {
    let array = ArrayBuilder::new().items(count(max)).min_items(Some(1)).max_items(Some(max_len));
    array.schema_type(SchemaType::from_iter([Type::Array, Type::Null])).description(Some(description)).into()
}

/// `model.widths`.
pub(super) fn widths() -> RefOr<Schema> {
    list(
        MAX_CHANNELS,
        MAX_STAGES,
        "`resnet` only: channels of each stage, 1 to 4096, for 1 to 8 stages (default `[64, 128, 256, 512]`).",
    )
}

/// `model.blocks`.
pub(super) fn blocks() -> RefOr<Schema> {
    list(
        MAX_BLOCKS,
        MAX_STAGES,
        "`resnet`: residual blocks per stage (default by depth); `densenet`: conv blocks per dense \
         block (default `[4, 4, 4, 4]`); 1 to 64 each, for 1 to 8 stages.",
    )
}

impl PartialSchema for super::Hidden {
    fn schema() -> RefOr<Schema> {
        let many = ArrayBuilder::new().items(count(MAX_WIDTH)).min_items(Some(1));
        let many = many.max_items(Some(MAX_HIDDEN_LAYERS));
        let one_of = OneOfBuilder::new().item(count(MAX_WIDTH)).item(many);
        let description = "`model.hidden`: one width (`rnn_lm`) or a list of 1 to 16 widths \
                           (`mlp_bn`), each 1 to 16384.";
        one_of.description(Some(description)).into()
    }
}

impl ToSchema for super::Hidden {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Hidden")
    }
}

impl PartialSchema for super::RawLayers {
    fn schema() -> RefOr<Schema> {
        let count = count(MAX_HIDDEN_LAYERS);
        let list = ArrayBuilder::new()
            .items(Ref::from_schema_name(crate::models::LayerSpec::name()))
            .min_items(Some(1))
            .max_items(Some(MAX_SEQUENTIAL_LAYERS));
        let one_of = OneOfBuilder::new().item(count).item(list);
        let description = "`model.layers`: `rnn_lm`: stacked recurrent layers, 1 to 16 (default 1); \
                           `sequential`: 1 to 256 layers, each an object with one key, its kind.";
        one_of.description(Some(description)).into()
    }
}

impl ToSchema for super::RawLayers {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Layers")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((crate::models::LayerSpec::name().into(), crate::models::LayerSpec::schema()));
        crate::models::LayerSpec::schemas(schemas);
    }
}
