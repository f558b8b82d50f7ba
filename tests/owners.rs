//! Who may publish what, read from the source: job events come only from the queue's commits.
//! The bus makes them in `src/events.rs` (`EventBus::publish_commit`, which the app installs as
//! the queue's listener); the pool publishes progress through `EventBus::publish_progress`, the
//! one non-durable job event; every other `publish` outside `src/events.rs` names a variant that
//! is not about a job (breakers, workers, folders, queue counts).

use std::path::Path;

/// The variants of `EventKind`, from its definition.
fn variants(events_rs: &str) -> Vec<String> {
    let body = events_rs
        .split_once("pub enum EventKind {")
        .expect("the enum")
        .1
        .split_once("\n}")
        .expect("its end")
        .0;
    body.lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
        .map(str::trim)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|l| l.trim_end_matches([' ', '{', ',']).to_owned())
        .collect()
}

/// Each call of `.{method}(` in `text`, outside comments: its line number and the argument text
/// that follows, whitespace trimmed.
fn calls<'a>(text: &'a str, method: &str) -> Vec<(usize, &'a str)> {
    let needle = format!(".{method}(");
    let mut out = Vec::new();
    for (at, _) in text.match_indices(&needle) {
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        if text[line_start..at].trim_start().starts_with("//") {
            continue;
        }
        let line = text[..at].matches('\n').count() + 1;
        out.push((line, text[at + needle.len()..].trim_start()));
    }
    out
}

#[test]
fn only_the_queue_s_commits_publish_job_events() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let events_rs = std::fs::read_to_string(src.join("events.rs")).expect("events.rs");
    let (job, other): (Vec<String>, Vec<String>) = variants(&events_rs)
        .into_iter()
        .partition(|v| v.starts_with("Job"));
    assert!(job.len() >= 11 && other.len() >= 4, "{job:?} {other:?}");

    let mut problems = Vec::new();
    let mut listeners = 0;
    let sources = crate::util::files_under(&src);
    for path in sources
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
    {
        let rel = path.strip_prefix(&src).expect("under src").to_owned();
        if rel == Path::new("events.rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("source");
        let at = |line: usize| format!("src/{}:{line}", rel.display());
        for (line, arg) in calls(&text, "publish") {
            // `EventKind::Workers { .. }`, or with a path before it.
            let path = arg
                .split(|c: char| !(c.is_alphanumeric() || c == ':' || c == '_'))
                .next()
                .unwrap_or_default();
            let variant = path.rsplit_once("EventKind::").map(|(_, v)| v);
            let ok = match variant {
                Some(v) => other.iter().any(|o| o == v),
                // The watch folder's own `publish(now: bool)`, not the bus.
                None => arg.starts_with("true)") || arg.starts_with("false)"),
            };
            if !ok {
                let first = arg.lines().next().unwrap_or_default();
                problems.push(format!("{}: publishes {first}", at(line)));
            }
        }
        for (line, _) in calls(&text, "publish_commit") {
            let l = text.lines().nth(line - 1).unwrap_or_default();
            if rel == Path::new("app.rs") && l.contains("queue.listen(") {
                listeners += 1;
            } else if rel.ends_with("tests.rs") && l.contains("queue.listen(") {
                // A unit test's own stack, wired as the app wires its one.
            } else {
                problems.push(format!("{}: publishes a commit: {}", at(line), l.trim()));
            }
        }
        for (line, _) in calls(&text, "publish_progress") {
            if !rel.starts_with("pool") {
                problems.push(format!("{}: publishes progress", at(line)));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        listeners, 1,
        "the app installs the bus as the queue's listener once"
    );
}
