//! `GET|PUT /v1/vocabulary`: the caller's own medical vocabulary (drug names, clinician
//! names, ...), given to the engine with every recording they upload, after the deployment's.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    auth::{Principal, Scope},
    domain::{
        AuditAction, AuditEvent, AuditOutcome, MAX_TERM_CHARS, MAX_TERMS, PROMPT_TOKEN_BUDGET,
        Vocabulary, compose_prompt, estimated_tokens,
    },
    http::{ApiError, ErrorBody, extract::ApiJson, extract::Caller},
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_vocabulary, put_vocabulary))
}

/// The caller's vocabulary and what it adds up to.
#[derive(Debug, Serialize, ToSchema)]
pub struct VocabularyView {
    /// The caller's own terms, in order.
    terms: Vec<String>,
    /// The deployment's terms (`VOCABULARY`), given before the caller's.
    deployment_terms: Vec<String>,
    /// Whisper reads at most this many prompt tokens.
    prompt_token_budget: usize,
    /// About how many tokens both lists make as a prompt (before an upload's own prompt). Over
    /// the budget, the earliest terms — the deployment's first — are left out.
    estimated_prompt_tokens: usize,
}

/// A new vocabulary: replaces the old one; `[]` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VocabularyUpdate {
    /// At most 200 terms of at most 64 characters, without commas. Put the terms that matter
    /// most last. Never patient names: a vocabulary is a setting, not a record.
    terms: Vec<String>,
}

fn view(state: &AppState, own: Vocabulary) -> VocabularyView {
    let deployment = &state.config.engines.vocabulary;
    let prompt = compose_prompt(deployment, &own, None, &|_| 0);
    VocabularyView {
        estimated_prompt_tokens: prompt.text.as_deref().map_or(0, estimated_tokens),
        terms: own.into(),
        deployment_terms: deployment.terms().to_vec(),
        prompt_token_budget: PROMPT_TOKEN_BUDGET,
    }
}

/// The caller's vocabulary.
#[utoipa::path(
    get,
    path = "/v1/vocabulary",
    tag = "vocabulary",
    security(("bearer" = [])),
    responses(
        (status = 200, body = VocabularyView),
        (status = 401, body = ErrorBody)
    )
)]
async fn get_vocabulary(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VocabularyView>, ApiError> {
    let principal = caller.require(Scope::Read)?;
    let own = state.vocabularies.get(&principal.owner).await?;
    Ok(Json(view(&state, own.unwrap_or_default())))
}

/// Replace the caller's vocabulary.
#[utoipa::path(
    put,
    path = "/v1/vocabulary",
    tag = "vocabulary",
    security(("bearer" = [])),
    request_body = VocabularyUpdate,
    responses(
        (status = 200, description = "Saved, tidied (trimmed, repeats removed)", body = VocabularyView),
        (status = 400, description = "Too many terms, a term too long, or one with a comma", body = ErrorBody),
        (status = 401, body = ErrorBody)
    )
)]
async fn put_vocabulary(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(update): ApiJson<VocabularyUpdate>,
) -> Result<Json<VocabularyView>, ApiError> {
    let principal = caller.require(Scope::Write)?;
    let vocabulary = Vocabulary::new(&update.terms).map_err(|e| {
        ApiError::bad_request(
            "invalid_vocabulary",
            format!("{e} (at most {MAX_TERMS} terms of {MAX_TERM_CHARS} characters)"),
        )
    })?;
    state
        .vocabularies
        .put(&principal.owner, &vocabulary, state.clock.now())
        .await?;
    audit_change(&state, principal, vocabulary.terms().len()).await;
    Ok(Json(view(&state, vocabulary)))
}

async fn audit_change(state: &AppState, principal: &Principal, terms: usize) {
    let event = AuditEvent::now(
        AuditAction::VocabularyChange,
        AuditOutcome::Success,
        principal.owner.as_str(),
    )
    .detail(format!("{terms} terms"));
    state.audit_trail().record(event).await;
}
