//! A generate request: what a client sends to `POST /jobs/{id}/generate`, checked once into a
//! [`ValidGenerate`] that generation reads without checking again.

use serde::Deserialize;
use utoipa::ToSchema;

use super::FieldError;
use crate::config::Config;

/// `POST /jobs/{id}/generate` as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// Text the continuation starts from; normalised and tokenised as the corpus was.
    pub prefix: Option<String>,
    /// Tokens to generate (default 50), at least 1 and at most `--max-generate-tokens`.
    #[schema(minimum = 1)]
    pub max_tokens: Option<usize>,
    /// 0 (default) picks the likeliest token each time, as the book does; above 0 samples from
    /// softmax(logits / temperature); at most 100.
    #[schema(minimum = 0.0, maximum = 100.0)]
    pub temperature: Option<f64>,
    /// Sample from the k likeliest tokens only (needs temperature > 0); at least 1.
    #[schema(minimum = 1)]
    pub top_k: Option<usize>,
    /// Seed of the sampling (default 0).
    pub seed: Option<u64>,
    /// Id of the checkpoint to use (default: the newest).
    pub checkpoint: Option<i64>,
}

/// A generate request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidGenerate {
    pub prefix: String,
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub seed: u64,
    pub checkpoint: Option<i64>,
}

const MAX_TEMPERATURE: f64 = 100.0;

impl GenerateRequest {
    /// Fills defaults and checks every field against the server's caps.
    pub fn validate(self, config: &Config) -> Result<ValidGenerate, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut add = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
        let prefix = self.prefix.unwrap_or_default();
        let chars = prefix.chars().count();
        if chars == 0 {
            add("prefix", "is required: the text the continuation starts from".into());
        } else if chars > config.max_prefix_chars {
            add("prefix", format!("must be at most {} characters (got {chars})", config.max_prefix_chars));
        }
        let max_tokens = self.max_tokens.unwrap_or(50);
        if max_tokens == 0 || max_tokens > config.max_generate_tokens {
            add(
                "max_tokens",
                format!("must be between 1 and {} (got {max_tokens})", config.max_generate_tokens),
            );
        }
        let temperature = self.temperature.unwrap_or(0.0);
        if !temperature.is_finite() || !(0.0..=MAX_TEMPERATURE).contains(&temperature) {
            add("temperature", format!("must be a number in [0, {MAX_TEMPERATURE}] (got {temperature})"));
        }
        match self.top_k {
            Some(0) => add("top_k", "must be at least 1".into()),
            Some(_) if temperature == 0.0 => {
                add("top_k", "needs temperature > 0: temperature 0 always takes the likeliest token".into())
            }
            _ => {}
        }
        if errors.is_empty() {
            Ok(ValidGenerate {
                prefix,
                max_tokens,
                temperature,
                top_k: self.top_k,
                seed: self.seed.unwrap_or(0),
                checkpoint: self.checkpoint,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_validated_field_by_field() {
        let config = Config::with_data_dir("/nonexistent");
        let errors = GenerateRequest {
            prefix: None,
            max_tokens: Some(0),
            temperature: Some(-1.0),
            top_k: Some(0),
            ..Default::default()
        }
        .validate(&config)
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["prefix", "max_tokens", "temperature", "top_k"]);
        let ok =
            GenerateRequest { prefix: Some("the".into()), ..Default::default() }.validate(&config).unwrap();
        assert_eq!((ok.max_tokens, ok.temperature, ok.seed), (50, 0.0, 0));
    }
}
