//! Integration tests of `model!`: every bundled model compiled through the macro and run
//! against the reference interpreter, and the macro's error messages (trybuild).

mod bundled;
mod errors;
