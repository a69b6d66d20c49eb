//! The reference profile Sluice builds from a CSV equals numpy's, committed
//! by `models/cards.py` for the example models' training data.

use sluice_registry_client::profile::{ColumnProfile, ReferenceProfile, profile_table};
use sluice_tests::repo_root;

fn rust_profile(csv: &str) -> ReferenceProfile {
    let text = std::fs::read_to_string(repo_root().join("models/data").join(csv)).unwrap();
    let mut lines = text.lines();
    let mut header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    // The last column is the label, not a feature.
    header.pop();
    let rows: Vec<Vec<String>> = lines
        .map(|line| {
            let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
            cells.pop();
            cells
        })
        .collect();
    profile_table(&header, &rows, 10, 20)
}

fn numpy_profile(model: &str) -> ReferenceProfile {
    let path = repo_root()
        .join("models/repository")
        .join(model)
        .join("1/profile.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn profiles_of_the_training_data_match_numpy() {
    for (model, csv) in [
        ("credit_risk", "credit_risk_train.csv"),
        ("digits", "digits_train.csv"),
    ] {
        let ours = rust_profile(csv);
        let numpy = numpy_profile(model);
        assert_eq!(ours.rows, numpy.rows, "{model}");
        assert_eq!(
            ours.features.keys().collect::<Vec<_>>(),
            numpy.features.keys().collect::<Vec<_>>(),
            "{model}"
        );
        for (name, theirs) in &numpy.features {
            let (
                ColumnProfile::Numeric {
                    edges: our_edges,
                    shares: our_shares,
                    count: our_count,
                    mean: our_mean,
                    std: our_std,
                },
                ColumnProfile::Numeric {
                    edges,
                    shares,
                    count,
                    mean,
                    std,
                },
            ) = (&ours.features[name], theirs)
            else {
                panic!("{model}.{name} is not numeric on both sides");
            };
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
            assert_eq!(
                our_edges.len(),
                edges.len(),
                "{model}.{name} edges {our_edges:?} vs {edges:?}"
            );
            assert!(
                our_edges.iter().zip(edges).all(|(a, b)| close(*a, *b)),
                "{model}.{name} edges"
            );
            assert!(
                our_shares.iter().zip(shares).all(|(a, b)| close(*a, *b)),
                "{model}.{name} shares"
            );
            assert_eq!(our_count, count);
            assert!(
                close(*our_mean, *mean) && close(*our_std, *std),
                "{model}.{name} moments"
            );
        }
    }
}
