//! What the DynamoDB adapters share: building and reading item attributes, and conditional
//! writes.

use std::collections::HashMap;

use aws_sdk_dynamodb::{
    error::SdkError,
    operation::{put_item::PutItemError, update_item::UpdateItemError},
    types::AttributeValue,
};
use chrono::{DateTime, Utc};

use crate::ports::{BoxError, StoreError};

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(err))
}

pub(crate) fn text(item: &Item, name: &str) -> Result<String, BoxError> {
    optional_text(item, name).ok_or_else(|| format!("attribute {name} missing").into())
}

pub(crate) fn optional_text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn number(item: &Item, name: &str) -> Result<i64, BoxError> {
    Ok(item
        .get(name)
        .and_then(|v| v.as_n().ok())
        .ok_or_else(|| format!("attribute {name} missing"))?
        .parse()?)
}

/// A time stored as microseconds since the epoch.
pub(crate) fn micros(item: &Item, name: &str) -> Result<DateTime<Utc>, BoxError> {
    DateTime::from_timestamp_micros(number(item, name)?)
        .ok_or_else(|| "timestamp out of range".into())
}

/// An operation error that can say its write's condition did not hold.
pub(crate) trait ConditionFailed {
    fn condition_failed(&self) -> bool;
}

impl ConditionFailed for UpdateItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for PutItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for aws_sdk_dynamodb::operation::delete_item::DeleteItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

/// The outcome of a conditional write: `Ok(true)` written, `Ok(false)` when its condition did
/// not hold, an error otherwise.
pub(crate) fn written<T, E>(result: Result<T, SdkError<E>>) -> Result<bool, StoreError>
where
    E: ConditionFailed + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(err) if err.as_service_error().is_some_and(|e| e.condition_failed()) => Ok(false),
        Err(err) => Err(unavailable(err)),
    }
}
