//! The Prometheus text both planes serve, less the series of model
//! versions no longer served: the recorder cannot forget a series, so a
//! retired version's are left out as `/metrics` is rendered.

use std::collections::HashSet;

/// The exposition text without the series of versions no longer served:
/// a sample whose `model` and `version` labels name a version `live` does
/// not hold is left out (not an unknown model's, counted with empty labels), so a retired version's series leave `/metrics`
/// (Prometheus marks them stale) however many hot swaps came before. The
/// recorder cannot forget a series; a retired version's few handles stay
/// in memory, unrendered.
pub fn render_live(text: &str, live: &HashSet<(String, String)>) -> String {
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        let retired = !line.starts_with('#')
            && match (label(line, "model"), label(line, "version")) {
                (Some(model), Some(version)) => !model.is_empty() && !live.contains(&(model, version)),
                _ => false,
            };
        if !retired {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// The value of label `name` in a sample line, unescaped.
fn label(line: &str, name: &str) -> Option<String> {
    let labels = &line[line.find('{')? + 1..];
    let mut rest = labels;
    loop {
        let equals = rest.find("=\"")?;
        let key = rest[..equals].trim_start_matches(',').trim();
        let mut value = String::new();
        let mut chars = rest[equals + 2..].char_indices();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break at,
                c => value.push(c),
            }
        };
        if key == name {
            return Some(value);
        }
        rest = &rest[equals + 2 + end + 1..];
        if rest.starts_with('}') {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_retired_versions_are_left_out() {
        let text = concat!(
            "# HELP sluice_requests_total Inference requests\n",
            "# TYPE sluice_requests_total counter\n",
            "sluice_requests_total{model=\"credit\",version=\"1\",code=\"200\"} 5\n",
            "sluice_requests_total{model=\"credit\",version=\"2\",code=\"200\"} 7\n",
            "sluice_request_duration_seconds_bucket{model=\"cr\\\"edit\",version=\"2\",le=\"0.1\"} 1\n",
            "sluice_rollout_events_total{model=\"credit\",event=\"rollback\"} 1\n",
            "sluice_in_flight 0\n",
            "sluice_requests_total{model=\"\",version=\"\",code=\"404\"} 3\n",
        );
        let live = [("credit".to_string(), "2".to_string())].into();
        let kept = render_live(text, &live);
        assert!(!kept.contains("version=\"1\""), "{kept}");
        assert!(kept.contains("sluice_requests_total{model=\"credit\",version=\"2\""));
        assert!(!kept.contains("_bucket"), "an escaped name is read whole: {kept}");
        assert!(
            kept.contains("sluice_rollout_events_total"),
            "no version label: kept"
        );
        assert!(kept.contains("sluice_in_flight 0") && kept.contains("# TYPE"));
        assert!(kept.contains("code=\"404\""), "unknown models' requests: kept");
        assert_eq!(
            label("m{a=\"x,y\",version=\"3\"} 1", "version").as_deref(),
            Some("3")
        );
        assert_eq!(label("m{a=\"x\"} 1", "version"), None);
        assert_eq!(label("m 1", "version"), None);
    }
}
