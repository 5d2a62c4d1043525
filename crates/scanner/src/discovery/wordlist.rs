//! Candidate labels for brute force: a shipped list of common labels (a larger one for deep
//! jobs), and permutations of labels already found in the style of alterx and dnsgen.

/// About 3,000 common labels.
const STANDARD: &str = include_str!("wordlist.txt");
/// About 19,000 more: numbered and prefixed/suffixed variants of the common ones.
const DEEP: &str = include_str!("wordlist-deep.txt");

/// Words joined to found labels to make permutations.
const JOINED: &[&str] = &[
    "dev",
    "development",
    "staging",
    "stage",
    "stg",
    "test",
    "qa",
    "uat",
    "prod",
    "api",
    "internal",
    "int",
    "admin",
    "old",
    "new",
    "beta",
    "v2",
    "backup",
    "demo",
    "preprod",
];

pub fn labels(deep: bool) -> Vec<&'static str> {
    let mut out: Vec<&str> = STANDARD.lines().filter(|l| !l.is_empty()).collect();
    if deep {
        out.extend(DEEP.lines().filter(|l| !l.is_empty()));
    }
    out
}

/// Names made from the found ones under `domain`: the first label joined to common words
/// (`api-dev`, `dev-api`, `api2`...) beside it, and common words below each found parent
/// (`dev.eu.example.com` from `www.eu.example.com`). Found names themselves are left out.
pub fn permutations(found: &[String], domain: &str) -> Vec<String> {
    let suffix = format!(".{domain}");
    let mut out = std::collections::BTreeSet::new();
    for name in found {
        let Some(rest) = name.strip_suffix(&suffix) else {
            continue;
        };
        let (first, parent) = match rest.split_once('.') {
            Some((first, below)) => (first, format!("{below}.{domain}")),
            None => (rest, domain.to_string()),
        };
        for w in JOINED {
            out.insert(format!("{first}-{w}.{parent}"));
            out.insert(format!("{w}-{first}.{parent}"));
            if parent != domain {
                out.insert(format!("{w}.{parent}"));
            }
        }
        let stem = first.trim_end_matches(|c: char| c.is_ascii_digit());
        for n in 1..=5 {
            out.insert(format!("{stem}{n}.{parent}"));
        }
    }
    for name in found {
        out.remove(name);
    }
    out.into_iter()
        .filter(|n| n.split('.').all(|l| !l.is_empty() && l.len() <= 63))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_hold_thousands_of_valid_labels() {
        let standard = labels(false);
        assert!(standard.len() >= 2_000, "{}", standard.len());
        assert!(labels(true).len() > standard.len() * 5);
        assert!(standard.contains(&"www") && standard.contains(&"api"));
        for l in labels(true) {
            assert!(
                l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-'),
                "{l}"
            );
        }
    }

    #[test]
    fn permutations_join_found_labels_and_fill_found_parents() {
        let found = vec![
            "api.example.com".to_string(),
            "www.eu.example.com".to_string(),
        ];
        let p = permutations(&found, "example.com");
        for expected in [
            "api-dev.example.com",
            "dev-api.example.com",
            "api2.example.com",
            "dev.eu.example.com",
            "www-staging.eu.example.com",
        ] {
            assert!(p.contains(&expected.to_string()), "{expected}");
        }
        assert!(!p.contains(&"api.example.com".to_string()));
        assert!(permutations(&["x.other.org".into()], "example.com").is_empty());
    }
}
