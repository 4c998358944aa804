use crate::domain::{IdempotencyKey, SaleId, UserId};

/// The Redis keys of one shard of one sale. All share the hash tag `{<sale>:<shard>}`, so a
/// script given only these keys stays in one cluster slot. (Sale ids cannot contain braces.)
#[derive(Debug, Clone)]
pub struct ShardKeys {
    prefix: String,
}

impl ShardKeys {
    pub fn new(sale: &SaleId, shard: u16) -> Self {
        Self {
            prefix: format!("fs:{{{sale}:{shard}}}"),
        }
    }

    pub fn stock(&self) -> String {
        format!("{}:stock", self.prefix)
    }

    pub fn holds(&self) -> String {
        format!("{}:holds", self.prefix)
    }

    pub fn hold_times(&self) -> String {
        format!("{}:hold-times", self.prefix)
    }

    /// Fallback-path claims not yet confirmed (for the reconciler).
    pub fn pending_claims(&self) -> String {
        format!("{}:pending-claims", self.prefix)
    }

    /// The lock a stock rebuild holds (by convention on shard 0 of the sale).
    pub fn rebuild_lock(&self) -> String {
        format!("{}:rebuild-lock", self.prefix)
    }

    /// The claims of a buyer whose home shard this is.
    pub fn user(&self, user: &UserId) -> String {
        format!("{}:user:{user}", self.prefix)
    }

    /// The idempotency record of one (buyer, key) pair. The user id is length-prefixed so
    /// ("a:b", "c") and ("a", "b:c") cannot share a record.
    pub fn idempotency(&self, user: &UserId, key: &IdempotencyKey) -> String {
        format!("{}:idem:{}:{user}:{key}", self.prefix, user.as_str().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_shard_carries_the_same_hash_tag() {
        let keys = ShardKeys::new(&SaleId::parse("drop").unwrap(), 7);
        let user = UserId::parse("u{1}").unwrap();
        let key = IdempotencyKey::parse("k").unwrap();
        for k in [
            keys.stock(),
            keys.holds(),
            keys.hold_times(),
            keys.pending_claims(),
            keys.rebuild_lock(),
            keys.user(&user),
            keys.idempotency(&user, &key),
        ] {
            assert!(k.starts_with("fs:{drop:7}:"), "{k}");
        }
    }

    #[test]
    fn idempotency_keys_of_different_users_cannot_collide() {
        let keys = ShardKeys::new(&SaleId::parse("s").unwrap(), 0);
        let a = keys.idempotency(
            &UserId::parse("a:b").unwrap(),
            &IdempotencyKey::parse("c").unwrap(),
        );
        let b = keys.idempotency(
            &UserId::parse("a").unwrap(),
            &IdempotencyKey::parse("b:c").unwrap(),
        );
        assert_ne!(a, b);
    }
}
