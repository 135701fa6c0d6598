//! Small charts for summaries: sparklines for Markdown and line charts as
//! SVG documents (train's curves, monitor's weekly trends).

use std::fmt::Write as _;

/// A series for charts: its name and `(x, value)` points, x ascending.
pub type Series = (String, Vec<(u64, f64)>);

/// `▇▆▅▃▂▁`: `values` squeezed into at most `width` characters, each the
/// mean of its bucket, scaled between the smallest and largest.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let buckets = values.len().min(width);
    let means: Vec<f64> = (0..buckets)
        .map(|bucket| {
            let start = bucket * values.len() / buckets;
            let end = ((bucket + 1) * values.len() / buckets).max(start + 1);
            values[start..end].iter().sum::<f64>() / (end - start) as f64
        })
        .collect();
    let low = means.iter().copied().fold(f64::INFINITY, f64::min);
    let high = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    means
        .iter()
        .map(|value| {
            if high - low <= f64::EPSILON {
                BARS[3]
            } else {
                let level = ((value - low) / (high - low) * 7.0).round() as usize;
                BARS[level.min(7)]
            }
        })
        .collect()
}

/// A line chart of `series` (one line each, its own scale, in the order
/// given, at most four) as an SVG document; `x_label` names the x axis's ends.
pub fn line_chart(series: &[&Series], x_label: impl Fn(u64) -> String) -> String {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 260.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 24.0;
    const BOTTOM: f64 = 36.0;
    const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
    let shown: Vec<&Series> = series
        .iter()
        .copied()
        .filter(|(_, points)| !points.is_empty())
        .take(COLOURS.len())
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let max_step = shown
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(step, _)| *step))
        .max()
        .unwrap_or(1)
        .max(1);
    let min_step = shown
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(step, _)| *step))
        .min()
        .unwrap_or(0);
    let span = (max_step - min_step).max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>",
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h
    );
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        HEIGHT - 12.0,
        xml_escape(&x_label(min_step)),
        LEFT + plot_w,
        HEIGHT - 12.0,
        xml_escape(&x_label(max_step))
    );
    for (index, (key, points)) in shown.iter().enumerate() {
        let colour = COLOURS[index];
        let low = points.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
        let high = points
            .iter()
            .map(|(_, v)| *v)
            .fold(f64::NEG_INFINITY, f64::max);
        let range = if high - low <= f64::EPSILON {
            1.0
        } else {
            high - low
        };
        let path: Vec<String> = points
            .iter()
            .map(|(step, value)| {
                let x = LEFT + (*step - min_step) as f64 / span * plot_w;
                let y = TOP + plot_h - (value - low) / range * plot_h;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"14\" fill=\"{colour}\">{} ({} → {})</text>",
            LEFT + index as f64 * 150.0,
            xml_escape(key),
            number(points.first().map_or(0.0, |(_, v)| *v)),
            number(points.last().map_or(0.0, |(_, v)| *v))
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A number in few characters: fixed point in the usual range, else scientific.
pub fn number(value: f64) -> String {
    if value == 0.0 || (1e-3..1e6).contains(&value.abs()) {
        let text = format!("{value:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        text.to_owned()
    } else {
        format!("{value:.3e}")
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_and_squeeze() {
        assert_eq!(sparkline(&[3.0, 2.0, 1.0, 0.0], 10), "█▆▃▁");
        assert_eq!(sparkline(&[1.0; 5], 10), "▄▄▄▄▄");
        let long: Vec<f64> = (0..1000).map(f64::from).collect();
        let line = sparkline(&long, 40);
        assert_eq!(line.chars().count(), 40);
        assert!(line.starts_with('▁') && line.ends_with('█'));
        assert_eq!(sparkline(&[], 10), "");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(0.0001234), "1.234e-4");
        assert_eq!(number(2.0), "2");
    }

    #[test]
    fn a_chart_draws_each_series_and_labels_its_axis() {
        let loss: Series = ("loss".to_owned(), vec![(1, 2.0), (5, 1.0), (9, 0.5)]);
        let empty: Series = ("empty".to_owned(), Vec::new());
        let chart = line_chart(&[&loss, &empty], |step| format!("step {step}"));
        assert!(chart.starts_with("<svg"));
        assert_eq!(chart.matches("<polyline").count(), 1);
        assert!(chart.contains("step 1") && chart.contains("step 9"));
        assert!(chart.contains("loss (2 → 0.5)"), "{chart}");
    }
}
