//! The chat's state and what each key does: no terminal and no engine
//! here, so that every key can be tested. What the engine must do comes
//! out as an [`Action`], which the session loop (`super::run`) carries out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use rempart_client::history::HistoryEntry;
use rempart_client::session::SessionState;
use rempart_client::{AlertCode, ConversationInfo, Event, MAX_TEXT_BYTES};

use std::sync::Arc;

use rempart_client::PendingLink;

use super::config::Config;

/// How many messages a page of the open conversation's history holds.
pub(crate) const PAGE: usize = 200;

/// What the engine is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send `text` to the open conversation.
    Send { to: Target, text: String },
    /// Read the open conversation's history again (the newest page), and
    /// the conversation list.
    Refresh,
    /// Read the page of the open conversation before its oldest message.
    LoadOlder,
    /// See whether the device being linked answered.
    CheckLink,
    /// A command typed in the input box.
    Command(ChatCommand),
    /// Leave the chat.
    Quit,
}

/// Where a text goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The 1:1 conversation with this user (opened by the first message).
    Peer(String),
    /// The group of this name.
    Group(String),
}

/// A command of the input box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChatCommand {
    /// `/new USER`: a 1:1 conversation with USER.
    New(String),
    /// `/group create NAME USER…`.
    GroupCreate { name: String, members: Vec<String> },
    /// `/add USER` to the open group.
    Add(String),
    /// `/remove USER` from the open group.
    Remove(String),
    /// `/leave` the open group.
    Leave,
    /// `/members` of the open conversation.
    Members,
    /// `/verify USER [NUMBER]`: the safety number, or its confirmation.
    Verify {
        user: String,
        number: Option<String>,
    },
    /// `/devices` of this account.
    Devices,
    /// `/link`: a code for a new device of this account.
    Link,
}

/// The commands, as the help screen lists them.
pub(crate) const COMMANDS: &[(&str, &str)] = &[
    (
        "/new USER",
        "a conversation with USER (it starts with your first message)",
    ),
    ("/group create NAME USER…", "a group with these users"),
    ("/add USER", "add USER to the open group"),
    ("/remove USER", "remove USER from the open group"),
    ("/leave", "leave the open group"),
    (
        "/members",
        "users, devices and key fingerprints of the open conversation",
    ),
    ("/quit", "leave the chat (or Ctrl-C)"),
];

/// The keys, as the help screen lists them.
pub(crate) const KEYS: &[(&str, &str)] = &[
    ("Enter", "send (or run the command)"),
    ("Alt-Enter", "new line"),
    ("Ctrl-N / Ctrl-P", "next / previous conversation"),
    (
        "PageUp / PageDown",
        "scroll the conversation (older pages load)",
    ),
    ("←/→, Home/End, Backspace/Delete", "edit"),
    ("?", "this help (in an empty input box)"),
    ("Enter or Esc", "acknowledge a security alert"),
];

/// Which screen is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Screen {
    /// The conversation list, the open conversation and the input box.
    Main,
    /// The keys and commands.
    Help,
    /// What a command showed (a safety number, the devices), until a key.
    Panel { title: String, lines: Vec<String> },
}

/// One line of the open conversation's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A message of the history.
    Message(HistoryEntry),
    /// A change of the conversation (membership, devices), as it arrived.
    Notice { time: i64, text: String },
}

impl Item {
    pub(crate) fn time(&self) -> i64 {
        match self {
            Self::Message(m) => m.time,
            Self::Notice { time, .. } => *time,
        }
    }
}

/// A security alert waiting for the user's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingAlert {
    pub code: AlertCode,
    pub conversation: Option<String>,
    pub message: String,
}

/// The text being written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Input {
    /// The text.
    pub text: String,
    /// The cursor, as a byte offset on a character boundary.
    pub cursor: usize,
}

impl Input {
    fn insert(&mut self, s: &str) {
        self.text.insert_str(self.cursor, s);
        self.cursor += s.len();
    }

    fn left(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    fn right(&mut self) {
        if let Some(c) = self.text[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    fn backspace(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }
}

/// Everything the chat shows.
#[derive(Debug)]
pub(crate) struct App {
    /// This account's user.
    pub me: String,
    /// The server's URL.
    pub server: String,
    /// The witness quorum (0: none configured).
    pub quorum: usize,
    /// How the live session stands.
    pub session: SessionState,
    /// Every conversation, newest activity first.
    pub conversations: Vec<ConversationInfo>,
    /// The open conversation's name, if any.
    pub open: Option<String>,
    /// A 1:1 conversation asked for with `/new`, before its first message.
    pub new_peer: Option<String>,
    /// The open conversation's messages, oldest first.
    pub messages: Vec<HistoryEntry>,
    /// Whether the history holds older messages than those loaded.
    pub more_before: bool,
    /// Changes of each conversation seen in this session.
    pub notices: BTreeMap<String, Vec<(i64, String)>>,
    /// Lines scrolled up from the newest.
    pub scroll: usize,
    /// The input box.
    pub input: Input,
    /// The screen up.
    pub screen: Screen,
    /// Alerts not acknowledged yet, oldest first: the first one is shown.
    pub alerts: VecDeque<PendingAlert>,
    /// Conversations concerned by an alert.
    pub alerted: BTreeSet<String>,
    /// The last word to the user (an error, a result).
    pub status: Option<String>,
    /// The settings (keys, colours, bell).
    pub config: Config,
    /// Set when the bell should ring at the next draw.
    pub ring: bool,
    /// A linking code shown with `/link`, waiting for the new device.
    pub linking: Option<Arc<PendingLink>>,
    /// Whether a directory head lacked the witnesses' cosignatures since
    /// the chat started (`witness_quorum_missing`).
    pub quorum_missing: bool,
}

impl App {
    pub(crate) fn new(me: String, server: String, quorum: usize, config: Config) -> Self {
        Self {
            me,
            server,
            quorum,
            session: SessionState::Connecting,
            conversations: Vec::new(),
            open: None,
            new_peer: None,
            messages: Vec::new(),
            more_before: false,
            notices: BTreeMap::new(),
            scroll: 0,
            input: Input::default(),
            screen: Screen::Main,
            alerts: VecDeque::new(),
            alerted: BTreeSet::new(),
            status: None,
            config,
            ring: false,
            linking: None,
            quorum_missing: false,
        }
    }

    /// Takes a fresh conversation list; opens the newest conversation if
    /// none is open.
    pub(crate) fn set_conversations(&mut self, mut list: Vec<ConversationInfo>) {
        list.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.name.cmp(&b.name))
        });
        self.conversations = list;
        if self.open.is_none() && self.new_peer.is_none() {
            self.open = self.conversations.first().map(|c| c.name.clone());
        }
    }

    /// The open conversation as listed.
    pub(crate) fn open_info(&self) -> Option<&ConversationInfo> {
        let open = self.open.as_deref()?;
        self.conversations.iter().find(|c| c.name == open)
    }

    /// Where a text typed now goes, if anywhere.
    pub(crate) fn target(&self) -> Option<Target> {
        if let Some(peer) = &self.new_peer {
            return Some(Target::Peer(peer.clone()));
        }
        let info = self.open_info()?;
        Some(if info.is_group {
            Target::Group(info.name.clone())
        } else {
            Target::Peer(info.name.clone())
        })
    }

    /// The open conversation's timeline: messages and notices by time.
    pub(crate) fn timeline(&self) -> Vec<Item> {
        let mut items: Vec<Item> = self.messages.iter().cloned().map(Item::Message).collect();
        if let Some(notices) = self.open.as_ref().and_then(|o| self.notices.get(o)) {
            items.extend(notices.iter().map(|(time, text)| Item::Notice {
                time: *time,
                text: text.clone(),
            }));
        }
        // At the same second, a change comes before the messages: a
        // member is added before they speak.
        items.sort_by_key(|item| (item.time(), matches!(item, Item::Message(_))));
        items
    }

    /// Takes what the live session reported. Returns whether the
    /// conversation list and the open conversation need reading again.
    pub(crate) fn on_event(&mut self, event: &Event, now: i64) -> bool {
        match event {
            Event::Alert {
                conversation,
                code,
                message,
                ..
            } => {
                if let Some(c) = conversation {
                    self.alerted.insert(c.clone());
                }
                self.quorum_missing |= *code == AlertCode::WitnessQuorumMissing;
                self.alerts.push_back(PendingAlert {
                    code: *code,
                    conversation: conversation.clone(),
                    message: message.clone(),
                });
                true
            }
            Event::Message { conversation, .. } => {
                if self.open.as_deref() != Some(conversation.as_str()) {
                    self.ring = self.config.bell;
                }
                true
            }
            Event::MemberAdded {
                conversation,
                sender,
                user,
                ..
            } => self.notice(conversation, now, format!("{sender} added {user}")),
            Event::MemberRemoved {
                conversation,
                sender,
                user,
                ..
            } if sender == user => self.notice(conversation, now, format!("{user} left")),
            Event::MemberRemoved {
                conversation,
                sender,
                user,
                ..
            } => self.notice(conversation, now, format!("{sender} removed {user}")),
            Event::DeviceAdded {
                conversation,
                sender,
                user,
                device,
            } => self.notice(
                conversation,
                now,
                format!("{sender} added {user}'s new device {device}"),
            ),
            Event::DeviceRemoved {
                conversation,
                sender,
                user,
                device,
            } => self.notice(
                conversation,
                now,
                format!("{sender} removed {user}'s device {device}"),
            ),
            Event::Undecryptable {
                conversation,
                reason,
                ..
            } => self.notice(
                conversation,
                now,
                format!("an entry could not be read: {reason}"),
            ),
            Event::MessageFailed {
                conversation,
                reason,
                ..
            } => {
                self.status = Some(format!(
                    "a message to {conversation} was not sent: {reason}"
                ));
                true
            }
            Event::KeyPackagesDrained { claimed, .. } => {
                self.status = Some(format!(
                    "your {claimed} one-time KeyPackages were all claimed; new ones are uploaded"
                ));
                true
            }
            Event::MessageQueued { .. } | Event::MessageSent { .. } => true,
        }
    }

    fn notice(&mut self, conversation: &str, now: i64, text: String) -> bool {
        self.notices
            .entry(conversation.to_owned())
            .or_default()
            .push((now, text));
        true
    }

    /// Takes what was pasted into the input box.
    pub(crate) fn on_paste(&mut self, text: &str) {
        if self.screen == Screen::Main && self.alerts.is_empty() {
            self.input
                .insert(&text.replace("\r\n", "\n").replace('\r', "\n"));
        }
    }

    /// What a key does.
    pub(crate) fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let keys = self.config.keys;
        if keys.quit.matches(&key) {
            return Some(Action::Quit);
        }
        if !self.alerts.is_empty() {
            // The panel stays until acknowledged; nothing else goes.
            if matches!(key.code, KeyCode::Enter | KeyCode::Esc) {
                self.alerts.pop_front();
            }
            return None;
        }
        if self.screen != Screen::Main {
            self.screen = Screen::Main;
            return None;
        }
        if keys.next.matches(&key) {
            return self.step(1);
        }
        if keys.previous.matches(&key) {
            return self.step(-1);
        }
        if keys.scroll_up.matches(&key) {
            self.scroll = self.scroll.saturating_add(10);
            return self.more_before.then_some(Action::LoadOlder);
        }
        if keys.scroll_down.matches(&key) {
            self.scroll = self.scroll.saturating_sub(10);
            return None;
        }
        match key.code {
            KeyCode::Enter if alt => {
                self.input.insert("\n");
                None
            }
            KeyCode::Enter => self.submit(),
            KeyCode::Char('?') if self.input.text.is_empty() => {
                self.screen = Screen::Help;
                None
            }
            KeyCode::Char(c) if !ctrl => {
                self.input.insert(c.encode_utf8(&mut [0; 4]));
                None
            }
            KeyCode::Backspace => {
                self.input.backspace();
                None
            }
            KeyCode::Delete => {
                self.input.delete();
                None
            }
            KeyCode::Left => {
                self.input.left();
                None
            }
            KeyCode::Right => {
                self.input.right();
                None
            }
            KeyCode::Home => {
                self.input.cursor = 0;
                None
            }
            KeyCode::End => {
                self.input.cursor = self.input.text.len();
                None
            }
            _ => None,
        }
    }

    /// Opens the conversation `by` places further down the list.
    fn step(&mut self, by: isize) -> Option<Action> {
        let count = self.conversations.len();
        if count == 0 {
            return None;
        }
        let current = self
            .open
            .as_deref()
            .and_then(|o| self.conversations.iter().position(|c| c.name == o));
        let next = match current {
            Some(i) => (i as isize + by).rem_euclid(count as isize) as usize,
            None => 0,
        };
        self.open = Some(self.conversations[next].name.clone());
        self.new_peer = None;
        self.messages.clear();
        self.scroll = 0;
        Some(Action::Refresh)
    }

    /// Enter: a command, or a text for the open conversation. A text that
    /// cannot go stays in the input box, with the reason.
    fn submit(&mut self) -> Option<Action> {
        let typed = self.input.text.trim_end().to_owned();
        if typed.trim().is_empty() {
            return None;
        }
        if let Some(command) = typed.strip_prefix('/') {
            return match parse_command(command) {
                Ok(None) => Some(Action::Quit),
                Ok(Some(command)) => {
                    self.input.take();
                    Some(Action::Command(command))
                }
                Err(why) => {
                    self.status = Some(why);
                    None
                }
            };
        }
        if typed.len() > MAX_TEXT_BYTES {
            self.status = Some(format!(
                "this message is {} bytes, more than the limit of {MAX_TEXT_BYTES}: shorten it (nothing was sent)",
                typed.len()
            ));
            return None;
        }
        let Some(to) = self.target() else {
            self.status =
                Some("no conversation is open: /new USER starts one, ? lists the commands".into());
            return None;
        };
        self.input.take();
        self.scroll = 0;
        Some(Action::Send { to, text: typed })
    }

    /// Puts back a text that could not be sent, ahead of anything typed
    /// since.
    pub(crate) fn restore_input(&mut self, text: &str) {
        let rest = self.input.take();
        self.input.insert(text);
        if !rest.is_empty() {
            self.input.insert("\n");
            self.input.insert(&rest);
        }
    }
}

/// Parses a command (without its `/`): `Ok(None)` for `/quit`.
pub(crate) fn parse_command(line: &str) -> Result<Option<ChatCommand>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let one = |what: &str| -> Result<String, String> {
        match words.as_slice() {
            [_, arg] => Ok((*arg).to_owned()),
            _ => Err(format!("usage: /{} {what}", words.first().unwrap_or(&""))),
        }
    };
    let none = || -> Result<(), String> {
        if words.len() == 1 {
            Ok(())
        } else {
            Err(format!("/{} takes no argument", words[0]))
        }
    };
    Ok(Some(match words.first().copied() {
        Some("quit") => return none().map(|()| None),
        Some("new") => ChatCommand::New(one("USER")?),
        Some("add") => ChatCommand::Add(one("USER")?),
        Some("remove") => ChatCommand::Remove(one("USER")?),
        Some("leave") => none().map(|()| ChatCommand::Leave)?,
        Some("members") => none().map(|()| ChatCommand::Members)?,
        Some("devices") => none().map(|()| ChatCommand::Devices)?,
        Some("link") => none().map(|()| ChatCommand::Link)?,
        Some("verify") => match words.as_slice() {
            [_, user] => ChatCommand::Verify {
                user: (*user).to_owned(),
                number: None,
            },
            [_, user, number @ ..] => ChatCommand::Verify {
                user: (*user).to_owned(),
                number: Some(number.join(" ")),
            },
            _ => return Err("usage: /verify USER [NUMBER]".into()),
        },
        Some("group") => match words.as_slice() {
            ["group", "create", name, members @ ..] if !members.is_empty() => {
                ChatCommand::GroupCreate {
                    name: (*name).to_owned(),
                    members: members.iter().map(|m| (*m).to_owned()).collect(),
                }
            }
            _ => return Err("usage: /group create NAME USER…".into()),
        },
        Some(other) => {
            return Err(format!("no command /{other}: ? lists the commands"));
        }
        None => return Err("an empty command: ? lists the commands".into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            assert_eq!(app.on_key(key(KeyCode::Char(c))), None);
        }
    }

    fn conversation(name: &str, is_group: bool, last_activity: i64) -> ConversationInfo {
        ConversationInfo {
            name: name.into(),
            is_group,
            members: Vec::new(),
            ended: false,
            ended_by: None,
            unread: 0,
            last_activity,
            verified: false,
            key_changed: Vec::new(),
        }
    }

    fn app() -> App {
        let mut app = App::new(
            "alice".into(),
            "http://127.0.0.1:1".into(),
            0,
            Config::default(),
        );
        app.set_conversations(vec![
            conversation("bob", false, 10),
            conversation("team", true, 20),
        ]);
        app
    }

    #[test]
    fn the_newest_conversation_opens_and_enter_sends_to_it() {
        let mut app = app();
        assert_eq!(app.open.as_deref(), Some("team"));
        typed(&mut app, "hello");
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Some(Action::Send {
                to: Target::Group("team".into()),
                text: "hello".into()
            })
        );
        assert!(app.input.text.is_empty());
    }

    #[test]
    fn alt_enter_makes_a_new_line_and_editing_keys_move_the_cursor() {
        let mut app = app();
        typed(&mut app, "ab");
        app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
        typed(&mut app, "cé");
        app.on_key(key(KeyCode::Left));
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Home));
        app.on_key(key(KeyCode::Delete));
        app.on_key(key(KeyCode::End));
        typed(&mut app, "!");
        assert_eq!(app.input.text, "b\né!");
    }

    #[test]
    fn a_text_over_the_limit_is_refused_and_kept() {
        let mut app = app();
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        app.on_paste(&long);
        assert_eq!(app.on_key(key(KeyCode::Enter)), None);
        assert_eq!(app.input.text, long, "nothing lost");
        assert!(app.status.as_deref().unwrap().contains("limit"));
    }

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        let mut app = app();
        typed(&mut app, "/group create crew bob carol");
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Some(Action::Command(ChatCommand::GroupCreate {
                name: "crew".into(),
                members: vec!["bob".into(), "carol".into()]
            }))
        );
        typed(&mut app, "/frobnicate");
        assert_eq!(app.on_key(key(KeyCode::Enter)), None);
        assert!(app.status.as_deref().unwrap().contains("no command"));
        assert_eq!(app.input.text, "/frobnicate", "kept to be corrected");
        assert_eq!(parse_command("quit"), Ok(None));
        assert_eq!(
            parse_command("new bob"),
            Ok(Some(ChatCommand::New("bob".into())))
        );
        assert!(parse_command("new").is_err());
        assert_eq!(
            parse_command("verify bob 12345 67890"),
            Ok(Some(ChatCommand::Verify {
                user: "bob".into(),
                number: Some("12345 67890".into())
            }))
        );
    }

    #[test]
    fn ctrl_n_and_ctrl_p_walk_the_list_and_question_mark_opens_help() {
        let mut app = app();
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl('n')), Some(Action::Refresh));
        assert_eq!(app.open.as_deref(), Some("bob"));
        assert_eq!(app.on_key(ctrl('p')), Some(Action::Refresh));
        assert_eq!(app.open.as_deref(), Some("team"));
        app.on_key(key(KeyCode::Char('?')));
        assert_eq!(app.screen, Screen::Help);
        app.on_key(key(KeyCode::Char('x')));
        assert_eq!(app.screen, Screen::Main);
        assert!(
            app.input.text.is_empty(),
            "the key that closed help is not typed"
        );
    }

    #[test]
    fn an_alert_holds_every_key_until_acknowledged_and_marks_its_conversation() {
        let mut app = app();
        app.on_event(
            &Event::Alert {
                conversation: Some("bob".into()),
                sender: None,
                code: AlertCode::MessageGap,
                message: "entries skipped".into(),
            },
            0,
        );
        assert!(app.alerted.contains("bob"));
        typed(&mut app, "x");
        assert!(app.input.text.is_empty());
        assert_eq!(app.alerts.len(), 1);
        app.on_key(key(KeyCode::Enter));
        assert!(app.alerts.is_empty());
        assert!(app.alerted.contains("bob"), "the conversation stays marked");
        assert!(!app.quorum_missing);
        app.on_event(
            &Event::Alert {
                conversation: None,
                sender: None,
                code: AlertCode::WitnessQuorumMissing,
                message: "no cosignature".into(),
            },
            0,
        );
        assert!(app.quorum_missing, "the status line says so");
    }

    #[test]
    fn a_message_elsewhere_rings_the_bell_and_changes_join_the_timeline() {
        let mut app = app();
        let message = |conversation: &str| Event::Message {
            conversation: conversation.into(),
            sender: "bob".parse().unwrap(),
            sender_device: rempart_proto::DeviceId::random(),
            text: "hi".into(),
            message_id: rempart_proto::MessageId::random(),
            sent_at: 5,
        };
        app.on_event(&message("team"), 5);
        assert!(!app.ring, "the open conversation does not ring");
        app.on_event(&message("bob"), 6);
        assert!(app.ring);
        app.on_event(
            &Event::MemberAdded {
                conversation: "team".into(),
                sender: "alice".parse().unwrap(),
                user: "carol".parse().unwrap(),
                device: rempart_proto::DeviceId::random(),
            },
            7,
        );
        assert_eq!(
            app.timeline(),
            [Item::Notice {
                time: 7,
                text: "alice added carol".into()
            }]
        );
    }
}
