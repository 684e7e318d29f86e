//! One budget, judged: a [`Check`] with its [`CheckName`], [`Side`], [`Verdict`] and
//! [`Figures`]. The result types every check returns and the assessment collects.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// What a check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not checked: it does not apply, or a figure could not be read (the summary says).
    Skipped,
    Fits,
    /// The run can go, but something will not be as the scenario expects.
    Warning,
    /// The run cannot hold the scenario's connections.
    Blocks,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Skipped => "skipped",
            Verdict::Fits => "fits",
            Verdict::Warning => "warning",
            Verdict::Blocks => "blocks",
        }
    }
}

/// Whose limit a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// sockcap and this machine: a run refuses to start when one blocks.
    Client,
    /// The server under test: what a capacity test is there to find.
    Target,
}

/// The checks, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    Descriptors,
    FileMax,
    Ports,
    Memory,
    TimeWait,
    AcceptQueue,
    TargetDescriptors,
}

impl CheckName {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Descriptors => "descriptors",
            CheckName::FileMax => "file_max",
            CheckName::Ports => "ports",
            CheckName::Memory => "memory",
            CheckName::TimeWait => "time_wait",
            CheckName::AcceptQueue => "accept_queue",
            CheckName::TargetDescriptors => "target_descriptors",
        }
    }
}

/// Named numbers, in the order they were added; serialized as a JSON object. Units are
/// in the names (`_bytes`, `_per_s`); the rest are counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures(pub Vec<(&'static str, u64)>);

impl Figures {
    pub(super) fn add(&mut self, name: &'static str, value: Option<u64>) -> &mut Figures {
        if let Some(value) = value {
            self.0.push((name, value));
        }
        self
    }

    /// The figure called `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

impl Serialize for Figures {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// One budget, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: CheckName,
    pub side: Side,
    pub verdict: Verdict,
    /// The most connections this budget allows, when it caps them (`None`: it does not,
    /// or only warns).
    pub gives_at: Option<u64>,
    /// What was found, with the numbers, in a sentence.
    pub summary: String,
    /// What to do about it (for warnings and blocks).
    pub fix: Option<String>,
    pub figures: Figures,
}

impl Check {
    pub(super) fn new(name: CheckName, side: Side) -> Check {
        Check {
            name,
            side,
            verdict: Verdict::Fits,
            gives_at: None,
            summary: String::new(),
            fix: None,
            figures: Figures::default(),
        }
    }

    pub(super) fn judged(mut self, verdict: Verdict, summary: String, fix: Option<String>) -> Check {
        self.verdict = verdict;
        self.summary = summary;
        self.fix = fix;
        self
    }
}
