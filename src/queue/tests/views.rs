//! Views over many jobs: aging order, listings with filters and cursors, statistics, deletion and
//! retention.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn aging_lifts_a_long_waiting_job_over_fresh_higher_ones() {
    let f = Fixture::with(QueueOptions {
        aging: Some(Duration::from_secs(60)),
        ..QueueOptions::default()
    });
    let old_low = f.add(2).await;
    f.clock.advance(Duration::from_secs(60 * 7)); // lifted 7 levels: 2 -> 9
    let high8 = f.add(8).await;
    let high10 = f.add(10).await;
    let order = f.lease_ids(3).await;
    assert_eq!(order, vec![high10.id, old_low.id, high8.id]);

    // Without aging the same arrival order is strict.
    let strict = Fixture::new();
    let low = strict.add(2).await;
    strict.clock.advance(Duration::from_secs(60 * 7));
    let h8 = strict.add(8).await;
    let h10 = strict.add(10).await;
    let order = strict.lease_ids(3).await;
    assert_eq!(order, vec![h10.id, h8.id, low.id]);
}

#[tokio::test]
async fn aging_caps_at_ten_and_breaks_ties_by_waiting_time() {
    let f = Fixture::with(QueueOptions {
        aging: Some(Duration::from_secs(10)),
        ..QueueOptions::default()
    });
    let ten = f.add(10).await;
    f.clock.advance(Duration::from_secs(1));
    let five = f.add(5).await;
    f.clock.advance(Duration::from_secs(3600));
    // Both are at 10 now; the ten-job became queued first.
    let order = f.lease_ids(2).await;
    assert_eq!(order, vec![ten.id, five.id]);
}

/// Collects every page of a listing, checking each is at most `per_page` long.
fn all_pages(q: &Queue, filter: &JobFilter, per_page: usize) -> Vec<JobId> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = q.list(filter, cursor.as_deref(), per_page).expect("list");
        assert!(page.jobs.len() <= per_page);
        out.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

/// A search by file name: every page of the listing holds only matches, newest first, whatever
/// the case, alone or with a state; a name nothing has gives an empty listing.
#[tokio::test]
async fn a_name_search_pages_through_every_match_ignoring_case() {
    let f = Fixture::new();
    let mut plate = Vec::new();
    for i in 0..9u8 {
        let mut nj = job(1 + i % 3);
        let wanted = i % 3 == 0;
        nj.image.name = if wanted {
            format!("Plate1_A{i:02}.tif")
        } else {
            format!("other_{i}.png")
        };
        let id = f.queue.enqueue(nj).await.expect("enqueue").job.id;
        if wanted {
            plate.push(id);
        }
    }
    plate.reverse();
    let by_name = JobFilter {
        name: Some("plate1_a".into()),
        ..JobFilter::default()
    };
    for per_page in [1, 2, 3, 10] {
        assert_eq!(
            all_pages(&f.queue, &by_name, per_page),
            plate,
            "pages of {per_page}"
        );
    }
    f.queue.cancel(plate[1]).await.expect("cancel");
    let cancelled = JobFilter {
        state: Some(JobState::Cancelled),
        ..by_name.clone()
    };
    assert_eq!(all_pages(&f.queue, &cancelled, 1), vec![plate[1]]);
    let none = JobFilter {
        name: Some("B12".into()),
        ..JobFilter::default()
    };
    assert!(all_pages(&f.queue, &none, 5).is_empty());
}

#[tokio::test]
async fn listing_filters_and_pages_in_each_views_order() {
    let f = Fixture::new();
    let mut ids = Vec::new();
    for i in 0..7u8 {
        let nj = NewJob {
            project: Some(if i % 2 == 0 { "even" } else { "odd" }.into()),
            ..job(1 + i % 3)
        };
        ids.push(f.queue.enqueue(nj).await.expect("enqueue").job.id);
    }
    f.queue.cancel(ids[6]).await.expect("cancel");
    f.clock.advance(Duration::from_secs(1));
    f.queue.cancel(ids[3]).await.expect("cancel");

    let mut newest_first = ids.clone();
    newest_first.reverse();
    let all = JobFilter::default();
    assert_eq!(all_pages(&f.queue, &all, 100), newest_first);
    for per_page in [1, 2, 3, 7] {
        assert_eq!(
            all_pages(&f.queue, &all, per_page),
            newest_first,
            "pages of {per_page}"
        );
    }

    let even = JobFilter {
        project: Some("even".into()),
        ..JobFilter::default()
    };
    assert_eq!(
        all_pages(&f.queue, &even, 3),
        vec![ids[6], ids[4], ids[2], ids[0]]
    );

    // Cancelled: the most recently finished first.
    let cancelled = JobFilter {
        state: Some(JobState::Cancelled),
        ..JobFilter::default()
    };
    assert_eq!(all_pages(&f.queue, &cancelled, 1), vec![ids[3], ids[6]]);

    // Queued: in lease order (priorities 1,2,3,1,2,3,1 with 3 and 6 cancelled).
    let queued = JobFilter {
        state: Some(JobState::Queued),
        ..JobFilter::default()
    };
    let expect = vec![ids[2], ids[5], ids[1], ids[4], ids[0]];
    assert_eq!(all_pages(&f.queue, &queued, 3), expect);
    let leased = f.lease_ids(2).await;
    assert_eq!(leased, expect[..2]);

    let active = JobFilter {
        state: Some(JobState::Active),
        ..JobFilter::default()
    };
    assert_eq!(all_pages(&f.queue, &active, 1).len(), 2);

    let both = JobFilter {
        state: Some(JobState::Cancelled),
        project: Some("odd".into()),
        ..JobFilter::default()
    };
    assert_eq!(all_pages(&f.queue, &both, 100), vec![ids[3]]);

    let bad = f.queue.list(&queued, Some("not-a-cursor"), 10);
    assert!(matches!(bad, Err(QueueError::Invalid(_))), "{bad:?}");
}

/// Queued jobs live in two halves of the ready index (a small tail and the main one); listing,
/// leasing and the oldest wait see them as one, whichever half holds each job.
#[tokio::test]
async fn queued_jobs_list_and_lease_in_one_order_across_both_halves_of_the_index() {
    // Spilling after more than 4 or 7 leaves 2 or 4 of the 12 in the tail.
    for spill in [0, 4, 7, 100] {
        let f = Fixture::with(QueueOptions {
            ready_tail_spill: spill,
            ..QueueOptions::default()
        });
        let mut ids = Vec::new();
        for i in 0..12u8 {
            ids.push(f.add([3, 7, 5, 7][usize::from(i % 4)]).await.id);
            f.clock.advance(Duration::from_millis(10));
        }
        // Priority 7: 1, 3, 5, 7, 9, 11; then 5: 2, 6, 10; then 3: 0, 4, 8.
        let expect: Vec<JobId> = [1, 3, 5, 7, 9, 11, 2, 6, 10, 0, 4, 8]
            .iter()
            .map(|&i| ids[i])
            .collect();
        let queued = JobFilter {
            state: Some(JobState::Queued),
            ..JobFilter::default()
        };
        for per_page in [1, 4, 100] {
            assert_eq!(
                all_pages(&f.queue, &queued, per_page),
                expect,
                "spill {spill}, pages of {per_page}"
            );
        }
        let s = f.queue.stats().expect("stats");
        assert_eq!(s.oldest_queued_ms, Some(120), "spill {spill}");
        assert_eq!(f.lease_ids(12).await, expect, "spill {spill}");
    }
}

#[tokio::test]
async fn retention_removes_by_age_and_by_count_and_releases_images() {
    let f = Fixture::new();
    let shared = |name: &str| NewJob {
        image: ImageRef {
            hash: name.into(),
            ..job(5).image
        },
        ..job(5)
    };
    // Two old completed jobs on image "old", one recent on "keep"; "old" also backs a queued job.
    let mut old = Vec::new();
    for _ in 0..2 {
        let j = f.queue.enqueue(shared("old")).await.expect("enqueue").job;
        let l = f.lease_one().await;
        f.queue
            .complete(j.id, l.token, vec![1], 0)
            .await
            .expect("complete");
        old.push(j.id);
    }
    f.clock.advance(Duration::from_secs(8 * 86_400));
    let recent = f.queue.enqueue(shared("keep")).await.expect("enqueue").job;
    let l = f.lease_one().await;
    f.queue
        .complete(recent.id, l.token, vec![1], 0)
        .await
        .expect("complete");
    let waiting = f.queue.enqueue(shared("old")).await.expect("enqueue").job;

    let report = f
        .queue
        .retain(Retention::default(), 100)
        .await
        .expect("retain");
    assert!(report.removed.is_empty(), "by default results are kept");
    let week = Retention {
        completed: Limit {
            age: Some(Duration::from_secs(7 * 86_400)),
            count: None,
        },
        ..Retention::default()
    };
    let report = f.queue.retain(week, 100).await.expect("retain");
    assert_eq!(report.removed, old);
    assert!(
        report.orphaned_images.is_empty(),
        "a queued job still uses it"
    );
    assert!(f.queue.get(old[0]).expect("get").is_none());
    assert!(f.queue.result(old[0]).expect("result").is_none());
    assert!(f.queue.get(recent.id).expect("get").is_some());

    // By count: keep at most one cancelled job; the oldest goes, and its image with it.
    f.queue.cancel(waiting.id).await.expect("cancel");
    let extra = f.queue.enqueue(shared("other")).await.expect("enqueue").job;
    f.clock.advance(Duration::from_secs(1));
    f.queue.cancel(extra.id).await.expect("cancel");
    let keep_one = Retention {
        cancelled: Limit {
            age: None,
            count: Some(1),
        },
        ..Retention::default()
    };
    let report = f.queue.retain(keep_one, 100).await.expect("retain");
    assert_eq!(report.removed, vec![waiting.id]);
    assert_eq!(report.orphaned_images, vec!["old".to_string()]);
    let s = f.queue.stats().expect("stats");
    assert_eq!((s.counts.completed, s.counts.cancelled), (1, 1));
}

#[tokio::test]
async fn stats_report_oldest_wait_throughput_and_percentiles() {
    let f = Fixture::new();
    let a = f.add(5).await;
    f.clock.advance(Duration::from_secs(5));
    f.add(5).await;
    f.clock.advance(Duration::from_secs(5));
    let s = f.queue.stats().expect("stats");
    assert_eq!(s.oldest_queued_ms, Some(10_000));
    let l = f.lease_one().await;
    assert_eq!(l.job.id, a.id);
    f.clock.advance(Duration::from_secs(2));
    f.queue
        .complete(a.id, l.token, vec![], 0)
        .await
        .expect("complete");
    let s = f.queue.stats().expect("stats");
    assert_eq!(s.oldest_queued_ms, Some(7_000));
    assert_eq!(s.wait.p50_ms, Some(10_000));
    assert_eq!(s.run.p50_ms, Some(2_000));
    assert_eq!(s.completed.last_1m, 1);
    assert!(
        s.commit.samples >= 3 && s.commit.p50_us.is_some(),
        "{:?}",
        s.commit
    );
    assert_eq!(s.failed.last_15m, 0);
    assert!(s.database_bytes > 0);
}

#[tokio::test]
async fn delete_removes_only_finished_jobs() {
    let f = Fixture::new();
    let j = f.add(5).await;
    let r = f.queue.delete(j.id).await;
    assert!(matches!(
        r,
        Err(QueueError::InvalidState {
            action: "delete",
            ..
        })
    ));
    f.queue.cancel(j.id).await.expect("cancel");
    f.queue.delete(j.id).await.expect("delete");
    assert!(f.queue.get(j.id).expect("get").is_none());
    assert!(matches!(
        f.queue.delete(j.id).await,
        Err(QueueError::NotFound(_))
    ));
    assert_eq!(f.queue.stats().expect("stats").counts.total(), 0);
}
