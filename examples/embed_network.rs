//! Embeds a network in a hand-written loop: every step the program chooses the drive of an LE
//! chain, advances the compiled network by one step and reads the chain's rates back.
//! An LE chain has no lag beyond one step per layer: `a.r` follows the drive at once and
//! `b.r` one step later.
//!
//! `cargo run --release -p gle-macros --example embed_network`

gle_macros::model! {
    model driven_chain

    // An LE neuron: the rate looks ahead with the same τ it integrates with.
    neuron Le {
        param tau = 1
        param gamma = 0
        state u
        let uhat = D[tau] u
        rate r = uhat
        mismatch e = D[tau] u - input
    }

    const drive = 0
    input x[1] = drive

    population a[1] : Le
    population b[1] : Le
    connect x -> a : identity
    connect a -> b : identity

    run {
        dt 0.1
        duration 10
    }
}

fn main() -> Result<(), String> {
    let mut net = driven_chain::Model::new().map_err(|e| e.message)?;
    println!("step  drive      a.r        b.r");
    for step in 0..40 {
        // The host program decides the input: a pulse between steps 5 and 20.
        let drive = if (5..20).contains(&step) { 1.0 } else { 0.0 };
        net.set_drive(drive);
        net.step().map_err(|e| e.message)?;
        let state = net.state();
        println!("{step:>4}  {drive:>5.2}  {:>9.6}  {:>9.6}", state.a_r[0], state.b_r[0]);
    }
    Ok(())
}
