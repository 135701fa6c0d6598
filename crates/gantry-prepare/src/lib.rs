/*!
prepare: a derived model (quantized, converted, distilled) as a gated,
traceable stage between register and deploy.

gantry does not convert anything itself: the user's command does, as
train runs the user's trainer (the CLI runs it through train's launch loop,
pulls the parent and registers the variant). What lives here is what the
stage records and shows: the transformation record stored in the variant's
lineage ([`Transformation`]), the footprint of a model from its manifest and
of a served model from a smoke run ([`Footprint`]), and `prepare.json` with
its Markdown ([`PrepareReport`]). It depends on `gantry-core` only.
*/

mod footprint;
mod report;
mod transformation;

pub use crate::footprint::{FileFacts, Footprint, Serving};
pub use crate::report::{PrepareReport, Quality, QualityRow, Variant, markdown, report_schema};
pub use crate::transformation::{
    REPORTED_FILE, TRANSFORMATION_FILE, Transformation, TransformationParent, transformation_schema,
};

/// The JSON Schemas this crate's files follow: `(file name, schema)`.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "prepare.schema.json",
            serde_json::to_value(report_schema()).unwrap_or_default(),
        ),
        (
            "transformation.schema.json",
            serde_json::to_value(transformation_schema()).unwrap_or_default(),
        ),
    ]
}
