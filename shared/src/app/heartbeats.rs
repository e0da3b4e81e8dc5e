//! Each in-process consumer says it is alive: when it polls its queue, and every few seconds
//! while it works on a job. A consumer that has not said so for `WORKER_STALE_AFTER_SECS`
//! (blocked, or its task gone) makes `/health/ready` answer not ready, so an orchestrator
//! restarts the process instead of letting jobs wait behind it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};

use crate::ports::{Clock, SystemClock};

/// How often a consumer busy with a job says it is alive.
pub const BEAT_WHILE_WORKING: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
enum Beat {
    Alive(DateTime<Utc>),
    Stopped,
}

pub struct WorkerHeartbeats {
    beats: Mutex<BTreeMap<String, Beat>>,
    clock: Arc<dyn Clock>,
}

impl Default for WorkerHeartbeats {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for WorkerHeartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHeartbeats").finish_non_exhaustive()
    }
}

/// What `/health/ready` reports about the consumers of this process.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerHealth {
    pub workers: usize,
    /// Consumers that stopped or have not beaten within the limit.
    pub stuck: Vec<String>,
    /// Seconds since the least recent beat.
    pub oldest_beat_s: f64,
}

impl WorkerHeartbeats {
    /// Beats are timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            beats: Mutex::default(),
            clock,
        }
    }

    pub fn beat(&self, worker: &str) {
        self.set(worker, Beat::Alive(self.clock.now()));
    }

    pub fn stopped(&self, worker: &str) {
        self.set(worker, Beat::Stopped);
    }

    fn set(&self, worker: &str, beat: Beat) {
        self.beats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(worker.to_owned(), beat);
    }

    /// `None` when this process runs no consumers (an HTTP-only Lambda function).
    pub fn health(&self, stale_after: Duration) -> Option<WorkerHealth> {
        let beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        if beats.is_empty() {
            return None;
        }
        let now = self.clock.now();
        let mut stuck = Vec::new();
        let mut oldest = Duration::ZERO;
        for (worker, beat) in beats.iter() {
            match beat {
                Beat::Alive(at) => {
                    let age = (now - *at).to_std().unwrap_or_default();
                    oldest = oldest.max(age);
                    if age > stale_after {
                        stuck.push(worker.clone());
                    }
                }
                Beat::Stopped => stuck.push(worker.clone()),
            }
        }
        Some(WorkerHealth {
            workers: beats.len(),
            stuck,
            oldest_beat_s: oldest.as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_or_stopped_worker_is_reported() {
        let clock = Arc::new(crate::ports::ManualClock::new(Utc::now()));
        let beats = WorkerHeartbeats::new(clock.clone());
        assert_eq!(beats.health(Duration::from_secs(1)), None);
        beats.beat("transcribe-0");
        beats.beat("ehr-0");
        let fresh = beats.health(Duration::from_secs(60)).unwrap();
        assert_eq!((fresh.workers, fresh.stuck.len()), (2, 0));
        clock.advance(chrono::Duration::milliseconds(30));
        beats.beat("ehr-0");
        let late = beats.health(Duration::from_millis(20)).unwrap();
        assert_eq!(late.stuck, vec!["transcribe-0".to_owned()]);
        assert_eq!(late.oldest_beat_s, 0.03);
        beats.stopped("ehr-0");
        assert_eq!(
            beats.health(Duration::from_secs(60)).unwrap().stuck,
            vec!["ehr-0".to_owned()]
        );
    }
}
