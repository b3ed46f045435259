//! Weights as kiln named them before every image classifier became a layer list, and their names
//! now, so a checkpoint written by an older kiln still loads: a job interrupted across an
//! upgrade resumes, momentum and all.
//!
//! The built-in kinds used to be modules of their own, their weights named by field
//! (`LenetBn.conv1.weight`, `ResNet.blocks.3.bn2.gamma`, `DenseNet.transitions.0.conv.weight`);
//! a layer list wrapped in the classifier enum was `Sequential.layers.0.Conv2d.weight`. Now every
//! classifier is a [`super::Sequential`] built from the kind's preset list, and a weight is named
//! by its layer: `layers.0.Conv2d.weight`, `layers.5.Residual.bn2.gamma`. Each old part (a
//! convolution, a BatchNorm, a block) is, in the old module's order of use, the next layer with
//! parameters of the preset list; inside a layer the names did not change.

use super::ClassifierSpec;
use super::sequential::LayerSpec;

/// Regular expressions and their replacements that turn an older kiln's weight names for a
/// model of `spec` into today's (burn-store's key remapping applies them in order). A name
/// written by today's kiln matches none of them.
pub fn renames(spec: &ClassifierSpec) -> Vec<(String, String)> {
    let (module, parts) = match old_parts(spec) {
        Some(old) => old,
        None => return vec![(r"^Sequential\.(.+)$".into(), "$1".into())],
    };
    // The order of the layers, not their widths, matters here: any class count gives it.
    let layers = spec.as_layers(1);
    let trained = layers.iter().enumerate().filter_map(|(i, layer)| Some((i, variant(layer)?)));
    let renames: Vec<_> = parts
        .iter()
        .zip(trained)
        .map(|(part, (index, variant))| {
            (
                format!(r"^{module}\.{}\.(.+)$", part.replace('.', r"\.")),
                format!("layers.{index}.{variant}.$1"),
            )
        })
        .collect();
    debug_assert_eq!(renames.len(), parts.len(), "{spec:?}: one layer with parameters per old part");
    renames
}

/// The old module's variant name and its parts with parameters, in the order it used them;
/// `None` for a layer list.
fn old_parts(spec: &ClassifierSpec) -> Option<(&'static str, Vec<String>)> {
    let parts = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    Some(match spec {
        ClassifierSpec::LenetBn { batch_norm } => {
            let all = ["conv1", "bn1", "conv2", "bn2", "fc1", "bn3", "fc2", "bn4", "fc3"];
            let kept: Vec<&str> = all.into_iter().filter(|p| *batch_norm || !p.starts_with("bn")).collect();
            ("LenetBn", parts(&kept))
        }
        ClassifierSpec::MlpBn { hidden, batch_norm, .. } => {
            let mut names = Vec::new();
            for i in 0..hidden.len() {
                names.push(format!("hidden.{i}.linear"));
                if *batch_norm {
                    names.push(format!("hidden.{i}.bn"));
                }
            }
            names.push("output".into());
            ("MlpBn", names)
        }
        ClassifierSpec::Resnet { blocks, .. } => {
            let mut names = parts(&["stem.conv", "stem.bn"]);
            names.extend((0..blocks.iter().sum()).map(|b| format!("blocks.{b}")));
            names.push("fc".into());
            ("ResNet", names)
        }
        ClassifierSpec::Densenet { blocks, .. } => {
            let mut names = parts(&["stem.conv", "stem.bn"]);
            for i in 0..blocks.len() {
                names.push(format!("dense.{i}"));
                if i + 1 < blocks.len() {
                    names.push(format!("transitions.{i}"));
                }
            }
            names.extend(parts(&["bn", "fc"]));
            ("DenseNet", names)
        }
        ClassifierSpec::Sequential { .. } => return None,
    })
}

/// The name a layer with parameters has in the built module (its `Layer` variant); `None` for
/// one without.
fn variant(layer: &LayerSpec) -> Option<&'static str> {
    Some(match layer {
        LayerSpec::Conv2d(_) => "Conv2d",
        LayerSpec::BatchNorm(_) => "BatchNorm",
        LayerSpec::Linear(_) => "Linear",
        LayerSpec::Residual(_) => "Residual",
        LayerSpec::DenseBlock(_) => "DenseBlock",
        LayerSpec::Transition(_) => "Transition",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Activation;

    #[test]
    fn every_old_part_has_its_layer_and_no_index_is_a_prefix_of_another() {
        let specs = [
            ClassifierSpec::LenetBn { batch_norm: false },
            ClassifierSpec::MlpBn { hidden: vec![], activation: Activation::Relu, batch_norm: true },
            ClassifierSpec::MlpBn {
                hidden: vec![8, 8, 8],
                activation: Activation::Sigmoid,
                batch_norm: false,
            },
            ClassifierSpec::Resnet { depth: 34, widths: vec![4, 8, 16, 32], blocks: vec![3, 4, 6, 3] },
            ClassifierSpec::Densenet { growth_rate: 4, blocks: vec![3], stem_channels: 8 },
        ];
        for spec in specs {
            let (module, parts) = old_parts(&spec).unwrap();
            let trained = spec.as_layers(10).iter().filter(|l| variant(l).is_some()).count();
            assert_eq!(parts.len(), trained, "{spec:?}");
            let renames = renames(&spec);
            // ResNet-34's sixteen blocks: blocks.1 must not take blocks.10's weights.
            let rename = |name: &str| {
                let matching: Vec<_> = renames
                    .iter()
                    .filter(|(from, _)| matches_as_the_regex_would(from, name))
                    .map(|(_, to)| to.clone())
                    .collect();
                assert!(matching.len() <= 1, "{name}: {matching:?}");
                matching.into_iter().next()
            };
            for part in &parts {
                assert!(rename(&format!("{module}.{part}.weight")).is_some(), "{spec:?}: {part}");
            }
        }
    }

    /// Whether `pattern` (`^Module\.part\.(.+)$`, the only form [`renames`] makes) matches
    /// `name`.
    fn matches_as_the_regex_would(pattern: &str, name: &str) -> bool {
        let prefix = pattern.trim_start_matches('^').trim_end_matches(r"(.+)$").replace(r"\.", ".");
        name.strip_prefix(&prefix).is_some_and(|rest| !rest.is_empty())
    }
}
