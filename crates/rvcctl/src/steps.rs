//! The pipeline order as the operator commands need it (the rules live in
//! `rvc_domain::OutboxKind`; these adapt them for sorting and replays).
use rvc_domain::{OutboxKind, ProductStatus};

/// The status a product had before `kind` ran (what it goes back to when `kind` runs again);
/// `None` for a kind outside the pipeline (`embed` never moved the product).
pub(crate) fn status_before(kind: OutboxKind) -> Option<ProductStatus> {
    kind.status_before()
}

/// The position of `kind` in the pipeline (earlier steps are smaller); kinds outside the
/// pipeline sort after every step.
pub(crate) fn step_index(kind: OutboxKind) -> usize {
    kind.step_index().unwrap_or(usize::MAX)
}
