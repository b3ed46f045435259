//! Resuming past damaged checkpoints: each file of a checkpoint is checked before it is trusted,
//! a damaged one is skipped for the newest intact one, and with none left the job starts over.

use super::*;

/// Rewrites the model file of the kept checkpoint at `step` with `damage`; returns its id.
fn damage(log: &Memory, step: u64, damage: impl FnOnce(&mut Vec<u8>)) -> i64 {
    let kept = log.kept.borrow();
    let checkpoint = kept.iter().find(|k| k.step == step).expect("a checkpoint at that step");
    let path = checkpoint::model_path(&checkpoint.dir);
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    checkpoint.id
}

#[test]
fn a_resume_skips_damaged_checkpoints_for_the_newest_intact_one() {
    let setup = setup(3, 3);
    let log = Memory::default();
    // Four steps an epoch: checkpoints at steps 4 and 8, and at 10 for the stop.
    log.stop_after.set(Some((10, false)));
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Interrupted);
    let flipped = damage(&log, 10, |b| {
        let middle = b.len() / 2;
        b[middle] ^= 0x01;
    });
    let truncated = damage(&log, 8, |b| b.truncate(b.len() - 100));
    let intact = log.kept.borrow().iter().find(|k| k.step == 4).unwrap().clone();
    log.shutdown.store(false, Ordering::SeqCst);
    log.stop_after.set(None);
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Completed);

    assert_eq!(*log.dropped.borrow(), [flipped, truncated], "both damaged ones are dropped, newest first");
    let warnings = log.warnings.borrow();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let resumed = format!("resumed from checkpoint {} (step 4)", intact.id);
    assert!(
        warnings[0]
            .starts_with(&format!("checkpoint {flipped} (step 10) is damaged (model.bpk: its SHA-256"))
    );
    assert!(warnings[1].starts_with(&format!("checkpoint {truncated} (step 8) is damaged (model.bpk: ")));
    assert!(warnings.iter().all(|w| w.ends_with(&resumed) && !w.contains('/')), "{warnings:?}");
    // The run went on from step 4: steps 5 to 12 once more, and a checkpoint at 8 written anew.
    let steps: Vec<u64> = log.points.borrow().iter().map(|p| p.step).collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
    let saved = log.saved.borrow();
    let after: Vec<u64> = saved.iter().filter(|(id, _)| *id > flipped).map(|(_, s)| s.step).collect();
    assert_eq!(after, [8, 12]);
}

#[test]
fn a_resume_checks_the_optimizer_state_and_the_manifest_too() {
    let setup = setup(3, 3);
    let log = Memory::default();
    log.stop_after.set(Some((10, false)));
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Interrupted);
    let file_of = |step: u64, name: &str| {
        let kept = log.kept.borrow();
        let checkpoint = kept.iter().find(|k| k.step == step).expect("a checkpoint at that step");
        (checkpoint.id, checkpoint.dir.join(name))
    };
    // One flipped byte in the optimizer's state: it would load, and resume wrongly.
    let (flipped, optimizer) = file_of(10, "optimizer.bpk");
    let mut bytes = std::fs::read(&optimizer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&optimizer, bytes).unwrap();
    let (garbled, manifest) = file_of(8, "checkpoint.json");
    std::fs::write(&manifest, b"{ not json").unwrap();
    log.shutdown.store(false, Ordering::SeqCst);
    log.stop_after.set(None);
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Completed);

    assert_eq!(*log.dropped.borrow(), [flipped, garbled]);
    let warnings = log.warnings.borrow();
    assert!(
        warnings[0].starts_with(&format!(
            "checkpoint {flipped} (step 10) is damaged (optimizer.bpk: its SHA-256 is not the one recorded)"
        )),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with(&format!("checkpoint {garbled} (step 8) is damaged (checkpoint.json: ")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().all(|w| w.ends_with("the job resumed from checkpoint 1 (step 4)")),
        "{warnings:?}"
    );
}

#[test]
fn a_resume_with_no_intact_checkpoint_starts_over_and_says_so() {
    let setup = setup(1, 1);
    let log = Memory::default();
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Completed);
    let id = damage(&log, 4, |b| b.truncate(10));
    let first_losses: Vec<f64> = log.points.borrow().iter().map(|p| p.loss).collect();
    assert_eq!(run_job(&setup, &log).unwrap(), Outcome::Completed);

    let warnings = log.warnings.borrow();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&format!("checkpoint {id} (step 4) is damaged")), "{warnings:?}");
    assert!(warnings[0].ends_with("no intact checkpoint was left, so the job started over"));
    // Started over from the seed: the same four steps with the same losses.
    let losses: Vec<f64> = log.points.borrow().iter().map(|p| p.loss).collect();
    assert_eq!(losses.len(), 4);
    for (x, y) in first_losses.iter().zip(&losses) {
        assert!((x - y).abs() < 1e-6, "{first_losses:?} then {losses:?}");
    }
}
