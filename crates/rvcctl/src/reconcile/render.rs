//! The table output of `rvcctl reconcile`.
use crate::json::{ReconcileOutput, RepairState};
use crate::output::{or_dash, Table};

pub(super) fn render(out: &ReconcileOutput) {
    println!("checks run: {}", out.checks_run.join(", "));
    for s in &out.checks_skipped {
        println!("skipped:    {} ({})", s.check, s.reason);
    }
    if out.findings.is_empty() {
        println!("\nno drift found");
        return;
    }
    println!();
    let mut t =
        Table::new(&["CHECK", "SKU", "VER", "STATUS", "FIX", "REPAIR", "DETAIL"]).right(&[2]);
    for f in &out.findings {
        let repair = match f.repair {
            RepairState::None => "none".to_owned(),
            RepairState::NotRepaired => "not repaired".to_owned(),
            RepairState::Enqueued => format!(
                "enqueued {}",
                f.repair_event_id.map(|e| e.to_string()).unwrap_or_default()
            ),
            RepairState::AlreadyQueued => format!(
                "already queued {}",
                f.repair_event_id.map(|e| e.to_string()).unwrap_or_default()
            ),
        };
        t.row(vec![
            f.check.clone(),
            or_dash(f.sku.as_deref()),
            f.product_version
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            f.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            f.fix_step.map_or_else(|| "-".to_owned(), |k| k.to_string()),
            repair,
            f.detail.clone(),
        ]);
    }
    print!("{}", t.render());
    if out.repair {
        println!("\nenqueued {} new row(s)", out.enqueued.len());
    }
}
