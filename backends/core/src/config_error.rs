//! [`ConfigError`]: a configuration value that cannot be used, with secrets kept out of it.
//! A leaf module: names, config and the error type all use it.

/// A configuration value that cannot be used. Names the field and the value.
///
/// Secrets (passwords, tokens, auth strings) are never echoed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config field `{field}`: {problem} (got {value})")]
pub struct ConfigError {
    /// The field, as the user wrote it: `ttl`, `etcd.endpoints[1]`, `url`, `--grace`.
    pub field: String,
    /// The offending value, quoted, or `<redacted>` for secrets.
    pub value: String,
    /// What is wrong and, where it helps, what would be right.
    pub problem: String,
}

impl ConfigError {
    /// An error about `field` holding `value`.
    pub fn new(
        field: impl Into<String>,
        value: impl AsRef<str>,
        problem: impl Into<String>,
    ) -> Self {
        let field = field.into();
        let value = if is_secret(&field) {
            "<redacted>".to_owned()
        } else {
            format!("{:?}", redact_url(value.as_ref()))
        };
        ConfigError {
            field,
            value,
            problem: problem.into(),
        }
    }

    /// An error about `field` whose value must not be shown (it may be a mistyped secret).
    pub fn withheld(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            value: "<redacted>".to_owned(),
            problem: problem.into(),
        }
    }
}

/// Whether a field holds a credential: any word of its name is one of these.
fn is_secret(field: &str) -> bool {
    field
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| SECRET_WORDS.contains(&word.to_ascii_lowercase().as_str()))
}

const SECRET_WORDS: [&str; 5] = ["password", "token", "auth", "userinfo", "secret"];

/// `text` with the user information of a URL in it, and the values of its parameters that
/// name a credential, replaced by `<redacted>`.
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let (scheme, rest) = text.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, hosts)) => format!("<redacted>@{hosts}"),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if is_secret(key) => format!("{key}=<redacted>"),
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_field_and_value_but_hide_secrets() {
        let plain = ConfigError::new("ttl", "0s", "must be at least 1s");
        assert_eq!(
            plain.to_string(),
            "config field `ttl`: must be at least 1s (got \"0s\")"
        );
        let secret = ConfigError::new("etcd.password", "hunter2", "must not be empty");
        assert!(!secret.to_string().contains("hunter2"), "{secret}");
        assert!(secret.to_string().contains("<redacted>"));
        for (field, value) in [
            ("url ?token", "hunter2"),
            ("ELECT_CONSUL_TOKEN", "hunter2"),
            ("zookeeper.auth", "u:hunter2"),
            ("url", "etcdd://user:hunter2@h:2379/x"),
            ("--url", "consul://h/x?ttl=5s&token=hunter2"),
            ("url", "zk://u:hunter2@h1,h2/x?auth=hunter2"),
        ] {
            let error = ConfigError::new(field, value, "wrong");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        assert!(
            ConfigError::new("url", "consul://h/x?ttl=5s&token=t", "wrong")
                .to_string()
                .contains("consul://h/x?ttl=5s&token=<redacted>")
        );
    }
}
