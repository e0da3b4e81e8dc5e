//! Argon2 password hashes for local sign-in (`LOCAL_LOGIN_USERS`, `mmt hash-password`).

use std::sync::OnceLock;

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};

/// An argon2id PHC string for `LOCAL_LOGIN_USERS` (`mmt hash-password` prints one).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks `password` against `hash`; with no hash (unknown user) it still spends the same
/// work on a dummy hash, so response time does not reveal which user names exist.
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("mmt-dummy-password").expect("argon2 hash"));
    let (phc, known) = match hash {
        Some(h) => (h, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    known && matches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_password() {
        let hash = hash_password("s3cret-pass").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(Some(&hash), "s3cret-pass"));
        assert!(!verify_password(Some(&hash), "wrong"));
        assert!(
            !verify_password(None, "mmt-dummy-password"),
            "unknown users never pass"
        );
    }
}
