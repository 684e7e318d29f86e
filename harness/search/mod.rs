//! `sockcap search`'s logic, apart from its command (`cli/search.rs`): the `[search]`
//! table checked and each step's scenario generated from it (`spec.rs`), the step
//! schedule and bisection, pure (`schedule.rs`), a step's run report judged against the
//! objectives (`judge.rs`), and the search's report (`report.rs`) and HTML knee chart
//! (`html.rs`). Each step is an ordinary plan run through the engine, as `sockcap run`.

pub mod html;
pub mod judge;
pub mod report;
pub mod schedule;
pub mod spec;

pub use report::{SearchReport, SearchVerdict, StepReport};
pub use schedule::{Conclusion, Next, Schedule, StepVerdict};
pub use spec::{Mode, SearchSpec};
