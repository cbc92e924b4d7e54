//! Extractors that turn axum's rejections into the JSON error contract.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body; malformed input is a 400 with the JSON error body.
#[derive(Debug)]
pub struct Json<T>(pub T);

/// Bodies declared larger than the limit, up to this size, are read and discarded
/// before the 413 goes out: a client still writing its body would otherwise see the
/// connection close under it and never read the error.
pub(super) const DRAIN_AT_MOST: usize = 16 << 20;

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let declared = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        if let Some(declared) = declared
            && declared > super::MAX_BODY
        {
            if declared <= DRAIN_AT_MOST {
                let _ = axum::body::to_bytes(request.into_body(), DRAIN_AT_MOST).await;
            }
            return Err(ApiError::payload_too_large());
        }
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Json(value))
    }
}

/// A raw body (a plugin upload); one over the route's limit is a 413 with the JSON
/// error body, like every other refusal.
#[derive(Debug)]
pub struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state).await?;
        Ok(Body(bytes))
    }
}

/// Query-string parameters; bad ones are a 400 with the JSON error body.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// Path parameters; bad ones are a 400 with the JSON error body.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}
