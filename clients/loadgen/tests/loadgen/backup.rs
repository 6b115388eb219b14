//! The backup scenario on a small log: the backup is taken while appends go on, restored, and
//! the restored log is the original's up to the backup's head.

use std::time::Duration;

use podium_loadgen::backup::{Config, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_appends_restores_the_same_events() {
    let binary = crate::podiumd().unwrap();
    let report = run(
        &binary,
        &Config {
            events: 5_000,
            baseline: Duration::from_millis(300),
        },
        |_| {},
    )
    .await
    .unwrap();
    // The backup holds the written log and the conference the appends went to, at least.
    assert!(report.compared > report.events, "{report}");
    assert!(report.bytes > 0 && !report.idle.is_empty(), "{report}");
    let shown = report.to_string();
    for line in ["backup ", "appends during", "restore "] {
        assert!(shown.contains(line), "{shown}");
    }
}
