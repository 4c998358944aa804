//! Decoding of script replies: `{"STATUS", field, ...}` arrays.

use redis::Value;

use crate::stock::StockError;

pub struct Reply {
    script: &'static str,
    pub status: String,
    fields: Vec<Value>,
}

impl Reply {
    pub fn parse(script: &'static str, value: Value) -> Result<Self, StockError> {
        let Value::Array(mut items) = value else {
            return Err(unexpected(script, format!("not an array: {value:?}")));
        };
        if items.is_empty() {
            return Err(unexpected(script, "empty array".into()));
        }
        let status = as_string(script, items.remove(0))?;
        Ok(Self {
            script,
            status,
            fields: items,
        })
    }

    pub fn int(&self, index: usize) -> Result<i64, StockError> {
        match self.fields.get(index) {
            Some(Value::Int(n)) => Ok(*n),
            Some(Value::BulkString(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| self.unexpected(index)),
            _ => Err(self.unexpected(index)),
        }
    }

    pub fn string(&self, index: usize) -> Result<String, StockError> {
        match self.fields.get(index) {
            Some(v) => as_string(self.script, v.clone()),
            None => Err(self.unexpected(index)),
        }
    }

    pub fn unknown_status(&self) -> StockError {
        unexpected(self.script, format!("unknown status {}", self.status))
    }

    fn unexpected(&self, index: usize) -> StockError {
        unexpected(
            self.script,
            format!(
                "field {index} of {} is {:?}",
                self.status,
                self.fields.get(index)
            ),
        )
    }
}

fn as_string(script: &'static str, value: Value) -> Result<String, StockError> {
    match value {
        Value::BulkString(b) => {
            String::from_utf8(b).map_err(|_| unexpected(script, "non-UTF-8 string".into()))
        }
        Value::SimpleString(s) => Ok(s),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(unexpected(
            script,
            format!("expected a string, got {other:?}"),
        )),
    }
}

pub fn unexpected(script: &'static str, detail: String) -> StockError {
    StockError::UnexpectedReply { script, detail }
}
