//! Runtime tests: the reference interpreter against the authors' golden runs and the closed
//! forms of test-facts.md.

mod data;
mod facts;
mod golden;
mod lagnet;
mod noise;
mod resume;
