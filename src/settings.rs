//! Where a command's configuration comes from: a TOML file or a URL, then `ELECT_*`
//! environment overrides, then command-line flags — each later source wins.

use std::path::Path;

use elect_core::config::Config;
use elect_core::{Candidate, ConfigError, ElectionName};

/// The command-line flags that shape the configuration.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--config FILE`: a TOML config.
    pub config: Option<std::path::PathBuf>,
    /// `--url URL`: the URL form; its path names the election.
    pub url: Option<String>,
    /// `--election NAME`: overrides the config's or URL's election.
    pub election: Option<String>,
    /// `--id ID`: this candidate's id.
    pub id: Option<String>,
    /// `--value V`: what this candidate proclaims (default: its id).
    pub value: Option<String>,
    /// `--ttl D`: the lease TTL or session timeout of a distributed backend.
    pub ttl: Option<String>,
    /// `--lock-delay D`: Consul's lock delay.
    pub lock_delay: Option<String>,
}

/// A configuration ready to use: the backend, the election, and who we are.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The backend and its settings.
    pub config: Config,
    /// The election to campaign in or report on.
    pub election: ElectionName,
    /// This process as a candidate.
    pub candidate: Candidate,
}

impl Settings {
    /// Resolves `flags` against the config they name (or the file backend's default) and the
    /// environment `vars`. With neither `--config` nor `--url`, the file backend is used.
    ///
    /// ```
    /// use elect::settings::{Flags, Settings};
    /// let flags = Flags { election: Some("demo".into()), ..Flags::default() };
    /// let settings = Settings::resolve(&flags, std::iter::empty::<(String, String)>()).unwrap();
    /// assert_eq!(settings.config.backend.name(), "file");
    /// assert_eq!(settings.election.as_str(), "demo");
    /// ```
    pub fn resolve<I, K, V>(flags: &Flags, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let mut config = match (&flags.config, &flags.url) {
            (Some(_), Some(url)) => {
                return Err(ConfigError::new(
                    "--url",
                    url,
                    "give either --config or --url, not both",
                ))
            }
            (Some(path), None) => read_config_file(path)?,
            (None, Some(url)) => Config::from_url(url)?,
            (None, None) => Config::file_default(),
        };
        config.apply_env(vars.iter().map(|(k, v)| (k, v)))?;
        // The native tools' variables fill what no elect setting gave.
        let hosts_given = flags
            .url
            .as_deref()
            .is_none_or(elect_core::config::names_hosts)
            || vars.iter().any(|(k, _)| k == "ELECT_ENDPOINTS");
        config.apply_native_env(vars.iter().map(|(k, v)| (k, v)), hosts_given)?;
        apply_flags(&mut config, flags)?;
        if let Some(name) = &flags.election {
            config.election = Some(ElectionName::parse_field("--election", name)?);
        }
        if let Some(id) = &flags.id {
            elect_core::check_id("--id", id)?;
            config.id = Some(id.clone());
        }
        let election = config.election.clone().ok_or_else(|| {
            ConfigError::new(
                "--election",
                "",
                "no election given: use --election NAME, a URL path or `election` in the config",
            )
        })?;
        let candidate = match &config.id {
            Some(id) => {
                let value = config.value.clone().unwrap_or_else(|| id.clone());
                Candidate::new(id.clone(), value)?
            }
            None => {
                let generated = Candidate::generated();
                match &config.value {
                    Some(value) => Candidate::new(generated.id(), value.clone())?,
                    None => generated,
                }
            }
        };
        Ok(Settings {
            config,
            election,
            candidate,
        })
    }
}

/// Applies `--value`, `--ttl` and `--lock-delay` as their `ELECT_*` variables would be, but
/// naming the flag in errors, and refusing a flag the backend has no use for.
fn apply_flags(config: &mut Config, flags: &Flags) -> Result<(), ConfigError> {
    let backend = config.backend.name();
    // Each flag, the variable it stands for, the config fields it sets, its value, whether
    // the backend takes it.
    type FlagUse<'a> = (&'a str, &'a str, &'a [&'a str], &'a Option<String>, bool);
    let pairs: [FlagUse; 3] = [
        ("--value", "ELECT_VALUE", &["value"], &flags.value, true),
        (
            "--ttl",
            "ELECT_TTL",
            &["etcd.ttl", "consul.ttl", "zookeeper.session_timeout"],
            &flags.ttl,
            backend != "file",
        ),
        (
            "--lock-delay",
            "ELECT_CONSUL_LOCK_DELAY",
            &["consul.lock_delay"],
            &flags.lock_delay,
            backend == "consul",
        ),
    ];
    for (flag, variable, fields, value, applies) in pairs {
        let Some(value) = value else { continue };
        if !applies {
            return Err(ConfigError::new(
                flag,
                value,
                format!("the {backend} backend has no use for it"),
            ));
        }
        config.apply_env([(variable, value)]).map_err(|mut e| {
            if e.field == variable {
                e.field = flag.to_owned();
            } else if fields.contains(&e.field.as_str()) {
                e.field = format!("{flag} ({})", e.field);
            }
            e
        })?;
    }
    Ok(())
}

/// The largest config file `elect` reads.
pub const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// Reads and parses a TOML config file; an unreadable file names the path. Only a regular
/// file of at most [`MAX_CONFIG_SIZE`] is read: `/dev/zero` would never end, a FIFO would
/// block.
pub fn read_config_file(path: &Path) -> Result<Config, ConfigError> {
    let refuse =
        |problem: String| ConfigError::new("--config", path.display().to_string(), problem);
    let read = || -> Result<String, ConfigError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking, so that opening a FIFO returns at once (and is then refused).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| refuse(format!("cannot read it: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| refuse(format!("cannot read it: {e}")))?;
        if !meta.is_file() {
            return Err(refuse("not a regular file".to_owned()));
        }
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| refuse(format!("cannot read it: {e}")))?;
        if bytes.len() as u64 > MAX_CONFIG_SIZE {
            return Err(refuse(format!(
                "larger than {} KiB: not a config file",
                MAX_CONFIG_SIZE / 1024
            )));
        }
        String::from_utf8(bytes).map_err(|_| refuse("not UTF-8 text".to_owned()))
    };
    let text = read()?;
    Config::from_toml(&text).map_err(|mut e| {
        e.problem = format!("{} (in {})", e.problem, path.display());
        e
    })
}
