//! G1 of test-facts.md: the bundled MNIST-1D arrays, read through glec's own npz loader, have the
//! shapes, labels, class counts and fingerprints of the science brief.

use gle_runtime::data::LoadedDataset;
use std::path::Path;

fn load(model: &str) -> LoadedDataset {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let path = models.join(model);
    let (m, diags) = gle_ir::check_source(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap());
    assert!(diags.is_empty());
    LoadedDataset::load(&m.unwrap().datasets[0], &models).unwrap()
}

#[test]
fn g1_mnist1d_fingerprints() {
    for (model, len, sum_x, sum_x2, sum_xt2, x00, xt00) in [
        (
            "gle_mnist1d_15k.gle",
            360,
            -513.8194,
            1_433_478.146,
            366_521.854,
            -0.33216205,
            -0.07807959,
        ),
        (
            "le_mnist1d_mlp.gle",
            40,
            -51.7875,
            159_248.254,
            40_751.746,
            -0.33200568,
            -0.07877078,
        ),
    ] {
        let ds = load(model);
        let test = ds.test.as_ref().unwrap();
        let (x, y, xt, yt) = (&ds.train[0], &ds.train[1], &test[0], &test[1]);
        assert_eq!((x.per_row, x.data.len()), (len, 4000 * len));
        assert_eq!((xt.per_row, xt.data.len()), (len, 1000 * len));
        assert!(y.labels && yt.labels);
        let counts = |labels: &[f64]| {
            let mut c = [0usize; 10];
            labels.iter().for_each(|l| c[*l as usize] += 1);
            c
        };
        assert_eq!(counts(&y.data), [398, 396, 411, 394, 394, 402, 401, 404, 402, 398]);
        assert_eq!(counts(&yt.data), [102, 104, 89, 106, 106, 98, 99, 96, 98, 102]);
        assert_eq!(y.data[..10], [2.0, 6.0, 4.0, 5.0, 6.0, 6.0, 6.0, 0.0, 3.0, 1.0]);
        assert_eq!(yt.data[..10], [2.0, 6.0, 3.0, 9.0, 4.0, 3.0, 1.0, 9.0, 5.0, 2.0]);
        let sum: f64 = x.data.iter().sum();
        let sq: f64 = x.data.iter().map(|v| v * v).sum();
        let sq_test: f64 = xt.data.iter().map(|v| v * v).sum();
        for (got, want) in [
            (sum, sum_x),
            (sq, sum_x2),
            (sq_test, sum_xt2),
            (x.data[0], x00),
            (xt.data[0], xt00),
        ] {
            assert!((got - want).abs() < 1e-3, "{model}: {got} vs {want}");
        }
        // Normalised over all 5000 samples: Σx + Σx_test = 0 and Σx² + Σx_test² = 5000·len.
        let total: f64 = sum + xt.data.iter().sum::<f64>();
        assert!(total.abs() < 0.05, "{model}: Σ = {total}");
        assert!((sq + sq_test - 5000.0 * len as f64).abs() < 1.0);
    }
}
