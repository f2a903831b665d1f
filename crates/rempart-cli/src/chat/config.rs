//! The chat's settings: `chat.toml` in the home directory. Written with
//! its defaults, commented, the first time the chat starts; a file that
//! does not parse stops the chat with the key at fault.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use serde::Deserialize;

/// The file's name in the home directory.
pub(crate) const CONFIG_FILE: &str = "chat.toml";

/// What the file holds when the chat writes it.
pub(crate) const DEFAULT_CONFIG: &str = r##"# Settings of `rempart chat`. Delete this file to get the defaults back.

# Ring the terminal's bell when a message arrives in another conversation.
bell = true

[keys]
# A key is a character or one of: enter, tab, esc, up, down, left, right,
# pageup, pagedown, home, end, f1 to f12; with ctrl- and alt- in front.
next = "ctrl-n"          # next conversation
previous = "ctrl-p"      # previous conversation
scroll_up = "pageup"     # scroll the conversation back (older pages load)
scroll_down = "pagedown"
quit = "ctrl-c"

[colours]
# A colour is a name (black, red, green, yellow, blue, magenta, cyan, gray,
# darkgray, lightred, lightgreen, lightyellow, lightblue, lightmagenta,
# lightcyan, white) or #rrggbb.
own = "cyan"             # your name on your messages
others = "green"         # others' names
notice = "yellow"        # membership and device changes
alert = "red"            # the alert panel and alerted conversations
"##;

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read or written.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{}: {reason}: fix it, or delete it to get the defaults back", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The settings as the file spells them; what it leaves out keeps its
/// default ([`Config::default`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    bell: Option<bool>,
    #[serde(default)]
    keys: KeyNames,
    #[serde(default)]
    colours: ColourNames,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyNames {
    next: Option<String>,
    previous: Option<String>,
    scroll_up: Option<String>,
    scroll_down: Option<String>,
    quit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColourNames {
    own: Option<String>,
    others: Option<String>,
    notice: Option<String>,
    alert: Option<String>,
}

/// A key with its modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl Key {
    /// Whether `event` is this key (Shift is part of the character).
    pub(crate) fn matches(&self, event: &KeyEvent) -> bool {
        let relevant = KeyModifiers::CONTROL | KeyModifiers::ALT;
        event.code == self.code && event.modifiers & relevant == self.modifiers
    }
}

impl FromStr for Key {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        let mut modifiers = KeyModifiers::NONE;
        let mut rest = name.trim();
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-") {
                modifiers |= KeyModifiers::CONTROL;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-") {
                modifiers |= KeyModifiers::ALT;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "enter" => KeyCode::Enter,
            "tab" => KeyCode::Tab,
            "esc" => KeyCode::Esc,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            f if f.starts_with('f') && f.len() > 1 => match f[1..].parse::<u8>() {
                Ok(n @ 1..=12) => KeyCode::F(n),
                _ => return Err(format!("no key named {name:?}")),
            },
            single => {
                let mut chars = single.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => return Err(format!("no key named {name:?}")),
                }
            }
        };
        Ok(Self { code, modifiers })
    }
}

/// The keys the chat's actions are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keys {
    pub next: Key,
    pub previous: Key,
    pub scroll_up: Key,
    pub scroll_down: Key,
    pub quit: Key,
}

/// The chat's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Colours {
    pub own: Color,
    pub others: Color,
    pub notice: Color,
    pub alert: Color,
}

/// The chat's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    pub bell: bool,
    pub keys: Keys,
    pub colours: Colours,
}

impl Default for Config {
    /// The defaults, as [`DEFAULT_CONFIG`] writes them out.
    fn default() -> Self {
        let key = |code, modifiers| Key { code, modifiers };
        Config {
            bell: true,
            keys: Keys {
                next: key(KeyCode::Char('n'), KeyModifiers::CONTROL),
                previous: key(KeyCode::Char('p'), KeyModifiers::CONTROL),
                scroll_up: key(KeyCode::PageUp, KeyModifiers::NONE),
                scroll_down: key(KeyCode::PageDown, KeyModifiers::NONE),
                quit: key(KeyCode::Char('c'), KeyModifiers::CONTROL),
            },
            colours: Colours {
                own: Color::Cyan,
                others: Color::Green,
                notice: Color::Yellow,
                alert: Color::Red,
            },
        }
    }
}

/// Parses the text of a settings file.
pub(crate) fn parse(text: &str) -> Result<Config, String> {
    let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let defaults = Config::default();
    let key = |what: &str, name: Option<String>, default: Key| -> Result<Key, String> {
        name.map_or(Ok(default), |name| {
            name.parse().map_err(|e| format!("keys.{what}: {e}"))
        })
    };
    let colour = |what: &str, name: Option<String>, default: Color| -> Result<Color, String> {
        name.map_or(Ok(default), |name| {
            name.parse()
                .map_err(|_| format!("colours.{what}: no colour named {name:?}"))
        })
    };
    let (keys, colours) = (defaults.keys, defaults.colours);
    Ok(Config {
        bell: file.bell.unwrap_or(defaults.bell),
        keys: Keys {
            next: key("next", file.keys.next, keys.next)?,
            previous: key("previous", file.keys.previous, keys.previous)?,
            scroll_up: key("scroll_up", file.keys.scroll_up, keys.scroll_up)?,
            scroll_down: key("scroll_down", file.keys.scroll_down, keys.scroll_down)?,
            quit: key("quit", file.keys.quit, keys.quit)?,
        },
        colours: Colours {
            own: colour("own", file.colours.own, colours.own)?,
            others: colour("others", file.colours.others, colours.others)?,
            notice: colour("notice", file.colours.notice, colours.notice)?,
            alert: colour("alert", file.colours.alert, colours.alert)?,
        },
    })
}

/// Reads `chat.toml` in `home`, writing it with the defaults if absent.
pub(crate) fn load(home: &Path) -> Result<Config, ConfigError> {
    let path = home.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, DEFAULT_CONFIG).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            DEFAULT_CONFIG.to_owned()
        }
        Err(source) => return Err(ConfigError::Io { path, source }),
    };
    parse(&text).map_err(|reason| ConfigError::Invalid { path, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        assert_eq!(parse(DEFAULT_CONFIG), Ok(Config::default()));
        assert_eq!(
            parse(""),
            Ok(Config::default()),
            "every setting has a default"
        );
    }

    #[test]
    fn keys_and_colours_are_read_and_mistakes_named() {
        let config = parse(
            "bell = false\n[keys]\nnext = \"alt-j\"\nquit = \"f10\"\n[colours]\nown = \"#ff8800\"\n",
        )
        .unwrap();
        assert!(!config.bell);
        assert!(
            config
                .keys
                .next
                .matches(&KeyEvent::new(KeyCode::Char('j'), KeyModifiers::ALT))
        );
        assert!(
            !config
                .keys
                .next
                .matches(&KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE))
        );
        assert_eq!(config.keys.quit.code, KeyCode::F(10));
        assert_eq!(config.colours.own, Color::Rgb(0xff, 0x88, 0x00));
        assert!(
            parse("[keys]\nnext = \"hyper-x\"")
                .unwrap_err()
                .contains("keys.next")
        );
        assert!(
            parse("[colours]\nalert = \"plaid\"")
                .unwrap_err()
                .contains("colours.alert")
        );
        assert!(
            parse("belll = true").is_err(),
            "an unknown setting is refused"
        );
    }

    #[test]
    fn a_missing_file_is_written_with_the_defaults() {
        let home = tempfile::TempDir::new().unwrap();
        assert_eq!(load(home.path()).unwrap(), Config::default());
        let written = std::fs::read_to_string(home.path().join(CONFIG_FILE)).unwrap();
        assert_eq!(written, DEFAULT_CONFIG);
        std::fs::write(home.path().join(CONFIG_FILE), "bell = 3").unwrap();
        let error = load(home.path()).unwrap_err().to_string();
        assert!(
            error.contains("chat.toml") && error.contains("delete it"),
            "{error}"
        );
    }
}
