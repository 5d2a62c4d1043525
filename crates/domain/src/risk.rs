//! An asset's risk: a score from its unresolved findings, and `risk.changed` when a change of
//! those findings moves it. The score is derived, so the events only record its moves, for
//! subscribers; the read side computes it live.

use crate::Aggregate;
use easm_events::{AssetId, Event, RiskChanged, SeverityCounts};

/// An asset's risk from its unresolved (open or acknowledged) findings: 40 points per critical,
/// 20 per high, 8 per medium, 2 per low, none for info, capped at 100; grade A at 0, B below 20,
/// C below 40, D below 70, F from 70.
pub fn risk_score(counts: &easm_events::SeverityCounts) -> (u32, char) {
    let raw = 40 * u64::from(counts.critical)
        + 20 * u64::from(counts.high)
        + 8 * u64::from(counts.medium)
        + 2 * u64::from(counts.low);
    let score = raw.min(100) as u32;
    let grade = match score {
        0 => 'A',
        1..=19 => 'B',
        20..=39 => 'C',
        40..=69 => 'D',
        _ => 'F',
    };
    (score, grade)
}

#[cfg(test)]
mod risk_tests {
    use super::*;

    #[test]
    fn scores_and_grades() {
        let c = |critical, high, medium, low, info| SeverityCounts {
            critical,
            high,
            medium,
            low,
            info,
        };
        assert_eq!(risk_score(&c(0, 0, 0, 0, 9)), (0, 'A'));
        assert_eq!(risk_score(&c(0, 0, 1, 1, 0)), (10, 'B'));
        assert_eq!(risk_score(&c(0, 1, 0, 0, 0)), (20, 'C'));
        assert_eq!(risk_score(&c(1, 0, 0, 0, 0)), (40, 'D'));
        assert_eq!(risk_score(&c(1, 1, 1, 1, 0)), (70, 'F'));
        assert_eq!(risk_score(&c(9, 0, 0, 0, 0)), (100, 'F'));
    }
}

/// The score last announced for an asset (none yet: 0, grade A).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AssetRisk {
    pub score: u32,
    pub grade: Option<char>,
}

impl AssetRisk {
    /// The asset's unresolved findings are now `breakdown`: `risk.changed` if that moves the
    /// score or the grade.
    pub fn observe(&self, asset_id: &AssetId, breakdown: &SeverityCounts) -> Vec<Event> {
        let (score, grade) = risk_score(breakdown);
        let previous_grade = self.grade.unwrap_or('A');
        if score == self.score && grade == previous_grade {
            return vec![];
        }
        vec![Event::RiskChanged(RiskChanged {
            asset_id: asset_id.into(),
            score,
            grade: grade.to_string(),
            previous_score: self.score,
            previous_grade: previous_grade.to_string(),
            breakdown: breakdown.clone(),
        })]
    }
}

impl Aggregate for AssetRisk {
    fn apply(&mut self, event: &Event) {
        if let Event::RiskChanged(e) = event {
            self.score = e.score;
            self.grade = e.grade.chars().next();
        }
    }
}

#[cfg(test)]
mod observe_tests {
    use super::*;

    #[test]
    fn only_moves_are_announced() {
        let none = SeverityCounts::default();
        assert!(AssetRisk::default().observe(&"a".into(), &none).is_empty());
        let one_critical = SeverityCounts {
            critical: 1,
            ..SeverityCounts::default()
        };
        let events = AssetRisk::default().observe(&"a".into(), &one_critical);
        let Event::RiskChanged(e) = &events[0] else {
            panic!()
        };
        assert_eq!((e.score, e.grade.as_str(), e.previous_score), (40, "D", 0));
        let risk = AssetRisk::from_events(&events);
        assert!(risk.observe(&"a".into(), &one_critical).is_empty());
        let back = risk.observe(&"a".into(), &none);
        let Event::RiskChanged(e) = &back[0] else {
            panic!()
        };
        assert_eq!((e.score, e.previous_grade.as_str()), (0, "D"));
    }
}
