//! Durations as people write them in settings and requests: `200ms`, `5s`, `30m`, `2h`, `5d`.

use std::time::Duration;

/// A number with a unit of ms, s, m, h or d.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{s}' needs a unit (ms, s, m, h or d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{s}' does not start with a number"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("'{s}': unit must be ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}
