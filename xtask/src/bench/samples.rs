//! Repeated measurements of one figure and their summary: median and
//! min–max spread.

/// Values of one figure, one per round.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// Median, the mean of the two middle values for an even count; `None`
    /// without samples.
    pub fn median(&self) -> Option<f64> {
        let sorted = self.sorted();
        let count = sorted.len();
        match count {
            0 => None,
            _ if count % 2 == 1 => Some(sorted[count / 2]),
            _ => Some((sorted[count / 2 - 1] + sorted[count / 2]) / 2.0),
        }
    }

    pub fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }
}

/// Ratio of two medians (`value / baseline`), `None` when either is
/// missing or the baseline is zero.
pub fn median_ratio(value: &Samples, baseline: &Samples) -> Option<f64> {
    let (value, baseline) = (value.median()?, baseline.median()?);
    (baseline != 0.0).then(|| value / baseline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[f64]) -> Samples {
        let mut samples = Samples::default();
        for value in values {
            samples.push(*value);
        }
        samples
    }

    #[test]
    fn median_odd_count() {
        assert_eq!(samples(&[3.0, 1.0, 2.0]).median(), Some(2.0));
    }

    #[test]
    fn median_even_count() {
        assert_eq!(samples(&[4.0, 1.0, 3.0, 2.0]).median(), Some(2.5));
    }

    #[test]
    fn empty_samples_have_no_summary() {
        let empty = Samples::default();
        assert_eq!(empty.median(), None);
        assert_eq!(empty.min(), None);
        assert_eq!(empty.max(), None);
    }

    #[test]
    fn spread_is_min_and_max() {
        let values = samples(&[5.0, -1.0, 9.5]);
        assert_eq!(values.min(), Some(-1.0));
        assert_eq!(values.max(), Some(9.5));
    }

    #[test]
    fn ratio_of_medians() {
        assert_eq!(median_ratio(&samples(&[80.0]), &samples(&[100.0])), Some(0.8));
        assert_eq!(median_ratio(&samples(&[80.0]), &samples(&[0.0])), None);
        assert_eq!(median_ratio(&samples(&[80.0]), &Samples::default()), None);
    }
}
