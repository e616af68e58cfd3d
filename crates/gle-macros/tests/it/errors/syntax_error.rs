gle_macros::model! {
    model broken
    neuron Leaky {
        param tau_m = 2.0 +
        state u
    }
}

fn main() {}
