//! "Did you mean" suggestions.

use gle_ir::suggest::{closest, edit_distance};

#[test]
fn distance_counts_transpositions_as_one_edit() {
    assert_eq!(edit_distance("tau_m", "tau_r"), 1);
    assert_eq!(edit_distance("tua_m", "tau_m"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

#[test]
fn suggestion_only_for_plausible_typos() {
    assert_eq!(closest("tua_m", ["tau_m", "gamma"]), Some("tau_m"));
    assert_eq!(closest("zzz", ["tau_m", "gamma"]), None);
    assert_eq!(closest("bacth", ["batch", "dt"]), Some("batch"));
}
