//! Reading and writing DynamoDB item attributes with clear errors for malformed items.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(item: &Item, name: &str) -> Result<String, String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(format!("attribute {name} missing or not a string")),
    }
}

pub fn opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

pub fn n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, String> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| format!("attribute {name} is not a valid number")),
        _ => Err(format!("attribute {name} missing or not a number")),
    }
}

pub fn num(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn str(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
