//! `glec plot`: images from what `glec run --out` wrote, and clear errors for what it cannot plot.

use crate::glec;
use crate::run::temp_dir;

#[test]
fn plots_the_traces_and_learning_curves_of_a_run() {
    let dir = temp_dir("plot");
    let d = dir.display().to_string();
    let run = glec(&["run", "models/le_fourier.gle", "--steps", "4000", "--out", &d]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let meta = std::fs::read_to_string(dir.join("run.json")).unwrap();
    assert!(meta.contains("\"every\": 20"), "{meta}");
    let out = glec(&["plot", &d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["out.uhat", "target", "loss"] {
        let png = std::fs::read(dir.join(format!("plots/{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}.png is a PNG");
        let svg = std::fs::read_to_string(dir.join(format!("plots/{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{name}.svg has lines"
        );
    }
    // The x axis is time (ms): 4000 steps of dt = 0.005 end near 20.
    let svg = std::fs::read_to_string(dir.join("plots/target.svg")).unwrap();
    assert!(
        svg.contains("\ntime\n") && svg.contains("\n20.0\n"),
        "time axis labelled"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_what_it_cannot_plot() {
    let dir = temp_dir("plot-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    let out = glec(&["plot", &d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nothing to plot"), "{err}");
    std::fs::write(dir.join("broken.npy"), b"not an array").unwrap();
    let out = glec(&["plot", &d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not a valid .npy array"), "{err}");
    let out = glec(&["plot", "no/such/dir"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot read `no/such/dir`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
