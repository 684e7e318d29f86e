//! The search's schedule, pure: which level the next step tries, from the verdicts of
//! the steps so far, and when the search is done. It climbs from `from` toward `to`
//! (adding `step` or multiplying by `factor`) until a step breaches, then bisects
//! between the highest level that held and the lowest that breached until they are
//! within the resolution.
//!
//! A step that sockcap could not judge (its run invalid: the generator was the
//! bottleneck; or an objective's figure unobserved) is never taken as the target's
//! limit. The rule: such a step is tried once more at the same level (the generator's
//! hiccup may pass); a second unknown at that level ends the search, the limit unknown
//! above the highest level that held.

/// How the climb moves from one level to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Climb {
    /// Add this much.
    Add(f64),
    /// Multiply by this (> 1).
    Factor(f64),
}

/// When bisection stops: the bad level within this of the good one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolution {
    /// A fraction of the good level (`"2%"` is 0.02).
    Fraction(f64),
    /// In the level's unit.
    Absolute(f64),
}

/// The schedule's settings (checked: `0 < from <= to`, climb moves up, steps >= 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub from: f64,
    pub to: f64,
    pub climb: Climb,
    pub resolution: Resolution,
    /// Steps at most, climbing, bisecting and retrying.
    pub max_steps: usize,
    /// Levels are whole numbers (connections, connects per second).
    pub whole: bool,
}

/// What a step's objectives said.
#[derive(Debug, Clone, PartialEq)]
pub enum StepVerdict {
    /// Every objective held.
    Holds,
    /// An objective was breached (the target's limit).
    Breaks,
    /// sockcap could not judge the step (invalid run, unobserved figure): why.
    Unknown(String),
    /// The search was interrupted during the step.
    Interrupted,
}

/// Where the search stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Run a step at this level.
    Try(f64),
    /// Finished.
    Done(Conclusion),
}

/// How a search ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Conclusion {
    /// The target holds `holds` and breaks at `breaks`, within the resolution (or not, when
    /// the steps ran out: `resolved` false).
    Limit { holds: f64, breaks: f64, resolved: bool },
    /// Every level up to the range's top held.
    HoldsToTop { top: f64 },
    /// The first step (the range's bottom) already breached.
    BreaksAtFirst { at: f64 },
    /// Twice unknown at `at`: the limit is unknown above `holds` (none held: None).
    Unknown { at: f64, holds: Option<f64>, why: String },
    /// Interrupted, or the steps ran out before a breach: the highest level that held.
    Stopped { holds: Option<f64>, why: String },
}

impl Schedule {
    fn round(&self, level: f64) -> f64 {
        if self.whole {
            level.round()
        } else {
            level
        }
    }

    /// The climbing level after `level`, capped at `to`.
    fn climb_after(&self, level: f64) -> f64 {
        let next = match self.climb {
            Climb::Add(step) => level + step,
            Climb::Factor(f) => level * f,
        };
        let next = self.round(next).min(self.to);
        // Whole levels with a small factor could round back onto the same level.
        if next <= level {
            self.to.min(level + 1.0)
        } else {
            next
        }
    }

    fn close_enough(&self, holds: f64, breaks: f64) -> bool {
        let gap = breaks - holds;
        let within = match self.resolution {
            Resolution::Fraction(f) => gap <= holds * f,
            Resolution::Absolute(a) => gap <= a,
        };
        // Whole levels one apart cannot be split further.
        within || (self.whole && gap <= 1.0)
    }

    /// The next step, from every step so far (level, verdict) in the order run.
    pub fn next(&self, steps: &[(f64, StepVerdict)]) -> Next {
        let holds = steps.iter().filter(|(_, v)| *v == StepVerdict::Holds).map(|(l, _)| *l);
        let best = holds.clone().fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l))));
        let breaks = steps.iter().filter(|(_, v)| *v == StepVerdict::Breaks).map(|(l, _)| *l);
        let lowest_break = breaks.fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.min(l))));
        if let Some((_, StepVerdict::Interrupted)) = steps.last() {
            return Next::Done(Conclusion::Stopped { holds: best, why: "interrupted".into() });
        }
        if let Some((at, StepVerdict::Unknown(why))) = steps.last() {
            let tries = steps.iter().filter(|(l, v)| l == at && matches!(v, StepVerdict::Unknown(_))).count();
            if tries >= 2 {
                return Next::Done(Conclusion::Unknown { at: *at, holds: best, why: why.clone() });
            }
            if steps.len() < self.max_steps {
                return Next::Try(*at);
            }
        }
        // The highest level that held below the lowest breach (a level above a breach
        // that held anyway does not count: the lowest breach bounds the limit).
        let good = match lowest_break {
            Some(bad) => steps
                .iter()
                .filter(|(l, v)| *v == StepVerdict::Holds && *l < bad)
                .map(|(l, _)| *l)
                .fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l)))),
            None => best,
        };
        let next = match (good, lowest_break) {
            (None, None) => Some(self.round(self.from)),
            (Some(g), None) if g >= self.to => return Next::Done(Conclusion::HoldsToTop { top: g }),
            (Some(g), None) => Some(self.climb_after(g)),
            (None, Some(bad)) if bad <= self.from => return Next::Done(Conclusion::BreaksAtFirst { at: bad }),
            // A breach above the bottom with nothing held under it (the bottom unknown
            // then retried elsewhere cannot happen; kept total): try the bottom.
            (None, Some(_)) => Some(self.round(self.from)),
            (Some(g), Some(bad)) if self.close_enough(g, bad) => {
                return Next::Done(Conclusion::Limit { holds: g, breaks: bad, resolved: true })
            }
            (Some(g), Some(bad)) => Some(self.round((g + bad) / 2.0)),
        };
        if steps.len() >= self.max_steps {
            return Next::Done(match (good, lowest_break) {
                (Some(g), Some(bad)) => Conclusion::Limit { holds: g, breaks: bad, resolved: false },
                _ => Conclusion::Stopped { holds: good, why: format!("the {} steps allowed ran out", self.max_steps) },
            });
        }
        Next::Try(next.expect("every arm without a level returned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepVerdict::*;

    fn sched(from: f64, to: f64, climb: Climb, res: Resolution) -> Schedule {
        Schedule { from, to, climb, resolution: res, max_steps: 30, whole: true }
    }

    /// Run the schedule against a target that holds every level up to `limit`.
    fn search(s: &Schedule, limit: f64) -> (Vec<f64>, Conclusion) {
        let mut steps = Vec::new();
        loop {
            match s.next(&steps) {
                Next::Try(level) => steps.push((level, if level <= limit { Holds } else { Breaks })),
                Next::Done(c) => return (steps.into_iter().map(|(l, _)| l).collect(), c),
            }
        }
    }

    #[test]
    fn climbs_then_bisects_to_the_resolution() {
        let s = sched(100.0, 1000.0, Climb::Add(100.0), Resolution::Fraction(0.02));
        let (levels, end) = search(&s, 587.0);
        assert_eq!(&levels[..6], &[100.0, 200.0, 300.0, 400.0, 500.0, 600.0]);
        match end {
            Conclusion::Limit { holds, breaks, resolved: true } => {
                assert!(holds <= 587.0 && breaks > 587.0, "{holds} {breaks}");
                assert!(breaks - holds <= holds * 0.02, "{holds} {breaks}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn factor_climb_is_capped_at_the_top() {
        let s = sched(100.0, 1000.0, Climb::Factor(2.0), Resolution::Absolute(10.0));
        let (levels, end) = search(&s, 5000.0);
        assert_eq!(levels, vec![100.0, 200.0, 400.0, 800.0, 1000.0]);
        assert_eq!(end, Conclusion::HoldsToTop { top: 1000.0 });
    }

    #[test]
    fn a_breach_at_the_bottom_ends_at_once() {
        let s = sched(100.0, 1000.0, Climb::Add(100.0), Resolution::Absolute(10.0));
        let (levels, end) = search(&s, 50.0);
        assert_eq!(levels, vec![100.0]);
        assert_eq!(end, Conclusion::BreaksAtFirst { at: 100.0 });
    }

    #[test]
    fn an_unknown_step_is_retried_once_then_ends_the_search() {
        let s = sched(100.0, 1000.0, Climb::Add(100.0), Resolution::Absolute(10.0));
        let why = "invalid: lateness".to_string();
        let steps = vec![(100.0, Holds), (200.0, Unknown(why.clone()))];
        assert_eq!(s.next(&steps), Next::Try(200.0));
        let mut steps = steps;
        steps.push((200.0, Unknown(why.clone())));
        assert_eq!(s.next(&steps), Next::Done(Conclusion::Unknown { at: 200.0, holds: Some(100.0), why }));
        // An unknown that passes on its retry goes on.
        let steps = vec![(100.0, Holds), (200.0, Unknown("x".into())), (200.0, Holds)];
        assert_eq!(s.next(&steps), Next::Try(300.0));
    }

    #[test]
    fn never_more_steps_than_allowed() {
        let mut s = sched(1.0, 1_000_000.0, Climb::Add(1.0), Resolution::Absolute(1.0));
        s.max_steps = 7;
        let (levels, end) = search(&s, 1e9);
        assert_eq!(levels.len(), 7);
        assert!(matches!(end, Conclusion::Stopped { holds: Some(7.0), .. }), "{end:?}");
        let mut s = sched(100.0, 1000.0, Climb::Add(100.0), Resolution::Absolute(1.0));
        s.max_steps = 8;
        let (levels, end) = search(&s, 555.0);
        assert_eq!(levels.len(), 8);
        assert!(matches!(end, Conclusion::Limit { resolved: false, .. }), "{end:?}");
    }

    #[test]
    fn interrupted_keeps_the_best_level() {
        let s = sched(100.0, 1000.0, Climb::Add(100.0), Resolution::Absolute(1.0));
        let steps = vec![(100.0, Holds), (200.0, Interrupted)];
        assert_eq!(s.next(&steps), Next::Done(Conclusion::Stopped { holds: Some(100.0), why: "interrupted".into() }));
    }

    #[test]
    fn whole_levels_one_apart_are_resolved() {
        let s = sched(1.0, 10.0, Climb::Factor(1.01), Resolution::Fraction(0.0001));
        let (_, end) = search(&s, 4.0);
        assert_eq!(end, Conclusion::Limit { holds: 4.0, breaks: 5.0, resolved: true });
    }
}
