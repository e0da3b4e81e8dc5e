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

/// Password checks on a fixed set of threads. argon2id takes 19 MiB and a core per check: a
/// burst of sign-ins must neither run hundreds at once nor leave 19 MiB behind in the
/// allocator arena of every blocking thread that ever ran one (which is what checks spread
/// over tokio's blocking pool did: 686 MB under `make bench`'s brute force). Here memory is
/// `workers` × 19 MiB whatever the load. A caller first takes a [`CheckSlot`] (waiting a
/// bounded time), so it can look at the account's lockout at the last moment before its
/// check runs: at most `workers` checks are ever past that look at once.
pub struct PasswordChecker {
    checks: tokio::sync::mpsc::Sender<Check>,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

struct Check {
    hash: Option<String>,
    password: String,
    verdict: tokio::sync::oneshot::Sender<bool>,
}

/// No checker was free in time: the caller is asked to retry.
#[derive(Debug, thiserror::Error)]
#[error("every password checker is busy")]
pub struct CheckersBusy;

/// The right to run one check now, on a free checker thread.
pub struct CheckSlot<'a> {
    checker: &'a PasswordChecker,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl PasswordChecker {
    pub fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        let (checks, queue) = tokio::sync::mpsc::channel::<Check>(workers);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for n in 0..workers {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next check.
                        let next = match queue.lock() {
                            Ok(mut queue) => queue.blocking_recv(),
                            Err(_) => None,
                        };
                        let Some(check) = next else { break };
                        let verdict = verify_password(check.hash.as_deref(), &check.password);
                        let _ = check.verdict.send(verdict);
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "a password-check thread could not start");
            }
        }
        Self {
            checks,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(workers)),
        }
    }

    /// Waits at most `wait` for a free checker.
    pub async fn slot(&self, wait: std::time::Duration) -> Result<CheckSlot<'_>, CheckersBusy> {
        let permit = tokio::time::timeout(wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| CheckersBusy)?
            .map_err(|_| CheckersBusy)?;
        Ok(CheckSlot {
            checker: self,
            _permit: permit,
        })
    }
}

impl CheckSlot<'_> {
    /// [`verify_password`] on the checker thread this slot holds. The slot stays taken until
    /// it is dropped, so a failure can be counted before the next check looks at the lockout.
    pub async fn verify(
        &self,
        hash: Option<String>,
        password: String,
    ) -> Result<bool, CheckersBusy> {
        let (verdict, answer) = tokio::sync::oneshot::channel();
        let check = Check {
            hash,
            password,
            verdict,
        };
        self.checker
            .checks
            .send(check)
            .await
            .map_err(|_| CheckersBusy)?;
        answer.await.map_err(|_| CheckersBusy)
    }
}
