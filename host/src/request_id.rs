//! The id of the HTTP request being served, for code that has no request at hand:
//! error bodies, the events' metadata and a plugin's log lines.
//!
//! The HTTP layer sets it for the request's future ([`scope`], a task-local). A plugin
//! call runs on a blocking thread, outside that future, so the command bus and the
//! query path carry the id onto the thread for the call ([`carry`], a thread-local).
//! [`current`] reads whichever is set. This costs a clone of an `Arc<str>` per hop, and
//! no tracing span, which at the default log level cost more per request than the
//! rest of the HTTP layer's work together.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static TASK: Arc<str>;
}

thread_local! {
    static THREAD: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Runs `future` as the serving of request `id`.
pub async fn scope<F: Future>(id: Arc<str>, future: F) -> F::Output {
    TASK.scope(id, future).await
}

/// The id of the request being served here, if any.
pub fn current() -> Option<Arc<str>> {
    TASK.try_with(Arc::clone)
        .ok()
        .or_else(|| THREAD.with(|id| id.borrow().clone()))
}

/// Runs `call` on this thread as part of request `id` (none: of no request), and
/// restores what was there before.
pub fn carry<R>(id: Option<Arc<str>>, call: impl FnOnce() -> R) -> R {
    let before = THREAD.with(|slot| slot.replace(id));
    let result = call();
    THREAD.with(|slot| *slot.borrow_mut() = before);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_id_is_seen_in_its_scope_and_carried_onto_a_blocking_thread() {
        assert_eq!(current(), None);
        let seen = scope(Arc::from("r-1"), async {
            let id = current();
            tokio::task::spawn_blocking(move || carry(id, current))
                .await
                .expect("the blocking task")
        })
        .await;
        assert_eq!(seen.as_deref(), Some("r-1"));
        // Carried only for the call.
        assert_eq!(
            carry(Some(Arc::from("r-2")), current).as_deref(),
            Some("r-2")
        );
        assert_eq!(current(), None);
    }
}
