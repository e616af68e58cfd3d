gle_macros::model! {
    model misshapen
    neuron Leaky {
        param tau_m = 2.0
        state u
        rate r = tanh(u)
        mismatch e = D[tau_m] u - input
    }
    input x[2] = sin(t)
    population h[3] : Leaky(tau_m: [1, 2])
    connect x -> h : dense(init: 0.5) fixed
    run {
        dt 0.1
        duration 1
    }
}

fn main() {}
