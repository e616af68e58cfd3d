gle_macros::model!("models/no_such_model.gle");

fn main() {}
