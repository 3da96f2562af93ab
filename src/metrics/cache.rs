//! The tasks' series rendered off the request path, as cAdvisor's housekeeping does: while
//! someone scrapes, a refresher thread renders them every `metrics_refresh_ms`, and a scrape
//! answers with the newest rendering when it is fresh (no task has changed since it began, and
//! it is younger than two periods); otherwise the scrape renders them itself. Reading every
//! container's cgroup files moves from the scrape's answer to the refresher, which stops when
//! nobody has scraped for a while: an unwatched berthd reads no cgroup files at all.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Without a scrape for this long, the refresher sleeps until the next one.
const IDLE_AFTER_MS: u64 = 5 * 60 * 1000;

/// One rendering of the tasks' series.
#[derive(Clone)]
pub struct Rendered {
    pub text: Arc<Vec<u8>>,
    /// The engine's generation when the rendering began.
    pub generation: u64,
    /// When it began, on the cache's clock (ms).
    pub at_ms: u64,
    /// What it took (ms).
    pub took_ms: u64,
}

/// Whether a scrape at `now_ms`, with the engine at `generation`, may answer with `r`.
pub fn fresh(r: &Rendered, generation: u64, now_ms: u64, refresh_ms: u64) -> bool {
    r.generation == generation && now_ms.saturating_sub(r.at_ms) <= refresh_ms.saturating_mul(2)
}

/// What the refresher does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Render,
    SleepMs(u64),
    /// Nobody scrapes: sleep until a scrape wakes it.
    Idle,
}

/// The refresher's next step: idle without a recent scrape, else render one period after the
/// last rendering began, and never sooner than twice its length after: the thread reads at
/// most half the time, whatever the number of containers.
pub fn next(
    now_ms: u64,
    last_scrape_ms: Option<u64>,
    last: Option<&Rendered>,
    refresh_ms: u64,
) -> Next {
    match last_scrape_ms {
        Some(s) if now_ms.saturating_sub(s) <= IDLE_AFTER_MS => {}
        _ => return Next::Idle,
    }
    let Some(r) = last else {
        return Next::Render;
    };
    let due = r
        .at_ms
        .saturating_add(refresh_ms.max(r.took_ms.saturating_mul(2)));
    if now_ms >= due {
        Next::Render
    } else {
        Next::SleepMs(due - now_ms)
    }
}

#[derive(Default)]
struct State {
    rendered: Option<Rendered>,
    last_scrape_ms: Option<u64>,
}

/// The newest rendering and when someone last scraped, shared by the scrapes and the refresher.
#[derive(Clone)]
pub struct SeriesCache {
    state: Arc<(Mutex<State>, Condvar)>,
    epoch: Instant,
    refresh_ms: u64,
}

impl SeriesCache {
    /// A cache refreshed every `refresh`; zero turns it off (every scrape renders).
    pub fn new(refresh: Duration) -> SeriesCache {
        SeriesCache {
            state: Arc::default(),
            epoch: Instant::now(),
            refresh_ms: refresh.as_millis() as u64,
        }
    }

    pub fn enabled(&self) -> bool {
        self.refresh_ms > 0
    }

    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A scrape came: notes it (waking an idle refresher) and returns the rendering it may
    /// answer with, if one is fresh.
    pub fn scraped(&self, generation: u64) -> Option<Rendered> {
        let now = self.now_ms();
        let mut s = self.lock();
        let was_idle = s
            .last_scrape_ms
            .is_none_or(|t| now.saturating_sub(t) > IDLE_AFTER_MS);
        s.last_scrape_ms = Some(now);
        if was_idle {
            self.state.1.notify_all();
        }
        s.rendered
            .as_ref()
            .filter(|r| fresh(r, generation, now, self.refresh_ms))
            .cloned()
    }

    /// Keeps a rendering unless a newer one is already kept.
    pub fn store(&self, r: Rendered) {
        let mut s = self.lock();
        if s.rendered.as_ref().is_none_or(|old| old.at_ms <= r.at_ms) {
            s.rendered = Some(r);
        }
    }

    /// The refresher's loop: renders with `render(began_ms)` when due. Never returns.
    pub fn refresh_forever(&self, mut render: impl FnMut(u64) -> Rendered) -> ! {
        loop {
            let s = self.lock();
            let step = next(
                self.now_ms(),
                s.last_scrape_ms,
                s.rendered.as_ref(),
                self.refresh_ms,
            );
            // Decided and waited on under one hold of the lock: a scrape's wake-up between the
            // two would be lost, and the refresher idle for minutes.
            let wait = match step {
                Next::Render => {
                    drop(s);
                    let r = render(self.now_ms());
                    self.store(r);
                    continue;
                }
                Next::SleepMs(ms) => Duration::from_millis(ms),
                Next::Idle => Duration::from_millis(IDLE_AFTER_MS),
            };
            let _ = self.state.1.wait_timeout(s, wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(generation: u64, at_ms: u64) -> Rendered {
        Rendered {
            text: Arc::new(Vec::new()),
            generation,
            at_ms,
            took_ms: 10,
        }
    }

    #[test]
    fn a_rendering_serves_until_a_change_or_two_periods() {
        assert!(fresh(&r(7, 1_000), 7, 1_000, 5_000));
        assert!(fresh(&r(7, 1_000), 7, 11_000, 5_000));
        assert!(
            !fresh(&r(7, 1_000), 7, 11_001, 5_000),
            "older than two periods"
        );
        assert!(
            !fresh(&r(7, 1_000), 8, 1_001, 5_000),
            "a task changed since"
        );
    }

    #[test]
    fn the_refresher_renders_each_period_while_scraped_and_idles_without_scrapes() {
        assert_eq!(next(0, None, None, 1_000), Next::Idle, "never scraped");
        assert_eq!(next(10, Some(5), None, 1_000), Next::Render, "first scrape");
        let last = r(1, 1_000);
        assert_eq!(
            next(1_500, Some(1_400), Some(&last), 1_000),
            Next::SleepMs(500)
        );
        assert_eq!(next(2_000, Some(1_400), Some(&last), 1_000), Next::Render);
        let long_after = 1_400 + IDLE_AFTER_MS + 1;
        assert_eq!(
            next(long_after, Some(1_400), Some(&last), 1_000),
            Next::Idle
        );
        // A rendering that took 800 ms: the next waits till twice that after it began.
        let slow = Rendered {
            took_ms: 800,
            ..r(1, 1_000)
        };
        assert_eq!(
            next(2_000, Some(1_900), Some(&slow), 1_000),
            Next::SleepMs(600)
        );
    }

    #[test]
    fn a_scrape_gets_only_a_fresh_rendering_and_an_older_one_never_replaces_a_newer() {
        let c = SeriesCache::new(Duration::from_secs(3600));
        assert!(c.scraped(1).is_none(), "nothing rendered yet");
        c.store(r(1, 0));
        assert!(c.scraped(1).is_some());
        assert!(c.scraped(2).is_none(), "a task changed since");
        c.store(r(2, 10));
        c.store(r(1, 0));
        assert_eq!(c.lock().rendered.as_ref().map(|r| r.generation), Some(2));
    }
}
