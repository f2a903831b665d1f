//! `rempart chat`: the terminal messenger.
//!
//! A thin front end: the engine runs live ([`Live`]) and does everything;
//! [`app`] holds what is shown and what each key does; [`ui`] draws it with
//! ratatui. The terminal is put back as it was on every way out: a normal
//! exit, an error, a panic, SIGTERM or SIGHUP.

mod app;
mod config;
mod ui;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableBracketedPaste, EnableBracketedPaste, Event as TermEvent,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use rempart_client::session::Live;
use rempart_client::{Client, ClientError};
use rempart_proto::UserName;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use app::{Action, App, ChatCommand, PAGE, Target};

/// How often the session's state is read for the status line.
const TICK: Duration = Duration::from_millis(500);

/// An error of the terminal itself.
fn terminal_error(source: std::io::Error) -> ClientError {
    ClientError::Io {
        path: PathBuf::from("(terminal)"),
        source,
    }
}

fn session_error(e: rempart_client::session::SessionError) -> ClientError {
    match e {
        rempart_client::session::SessionError::Client(e) => e,
        other => ClientError::Io {
            path: PathBuf::from("(live session)"),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// The terminal in chat mode; put back as it was when dropped.
struct Screen {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
}

impl Screen {
    fn enter() -> Result<Self, ClientError> {
        enable_raw_mode().map_err(terminal_error)?;
        // From here on, a panic puts the terminal back before it reports.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            hook(info);
        }));
        let mut stdout = std::io::stdout();
        execute!(stdout, EnterAlternateScreen, EnableBracketedPaste).map_err(|e| {
            restore();
            terminal_error(e)
        })?;
        let terminal = Terminal::new(CrosstermBackend::new(stdout)).map_err(|e| {
            restore();
            terminal_error(e)
        })?;
        Ok(Self { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
    }
}

/// Puts the terminal back: cooked mode, the main screen, no bracketed
/// paste. Safe to call more than once.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        DisableBracketedPaste,
        LeaveAlternateScreen
    );
}

/// Runs the chat until the user quits or the process is told to stop.
pub(crate) async fn run(client: Client) -> Result<(), ClientError> {
    let who = client.whoami();
    let settings = config::load(client.home()).map_err(|e| match e {
        config::ConfigError::Io { path, source } => ClientError::Io { path, source },
        config::ConfigError::Invalid { path, reason } => ClientError::Io {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{reason}: fix it, or delete it to get the defaults back"),
            ),
        },
    })?;
    let mut app = App::new(
        who.user.to_string(),
        who.server.clone(),
        who.witness_quorum,
        settings,
    );
    let mut live = Live::start(client).map_err(session_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(terminal_error)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(terminal_error)?;
    let mut screen = Screen::enter()?;

    // The terminal's events are read on a thread of their own (reading
    // blocks); it ends with the process.
    let (keys_tx, mut keys) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if keys_tx.send(event).is_err() {
                break;
            }
        }
    });
    let mut tick = tokio::time::interval(TICK);
    refresh(&live, &mut app).await;
    let result = loop {
        if let Err(e) = screen.terminal.draw(|f| ui::draw(f, &app)) {
            break Err(terminal_error(e));
        }
        if std::mem::take(&mut app.ring) {
            let _ = std::io::stdout().write_all(b"\x07");
            let _ = std::io::stdout().flush();
        }
        let action = tokio::select! {
            key = keys.recv() => match key {
                Some(TermEvent::Key(key)) => app.on_key(key),
                Some(TermEvent::Paste(text)) => {
                    app.on_paste(&text);
                    None
                }
                Some(_) => None, // A resize: the next draw fits.
                None => Some(Action::Quit),
            },
            event = live.next_event() => match event {
                Some(event) => app.on_event(&event, now()).then_some(Action::Refresh),
                None => break Err(session_error(rempart_client::session::SessionError::Stopped)),
            },
            _ = tick.tick() => {
                app.session = live.state();
                app.linking.is_some().then_some(Action::CheckLink)
            }
            _ = terminate.recv() => Some(Action::Quit),
            _ = hangup.recv() => Some(Action::Quit),
        };
        match action {
            Some(Action::Quit) => break Ok(()),
            Some(action) => perform(&live, &mut app, action).await,
            None => {}
        }
    };
    drop(screen);
    // Closing is best effort: the store is consistent at every step.
    let _ = live.stop().await;
    result
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Carries out what a key asked for; a failure goes to the status line.
async fn perform(live: &Live, app: &mut App, action: Action) {
    let outcome = match action {
        Action::Refresh => {
            refresh(live, app).await;
            Ok(())
        }
        Action::LoadOlder => load_older(live, app).await,
        Action::CheckLink => check_link(live, app).await,
        Action::Send { to, text } => send(live, app, to, &text).await,
        Action::Command(command) => command_outcome(live, app, command).await,
        Action::Quit => Ok(()),
    };
    if let Err(e) = outcome {
        app.status = Some(e.to_string());
    }
}

async fn send(live: &Live, app: &mut App, to: Target, text: &str) -> Result<(), ClientError> {
    let sent = match &to {
        Target::Peer(peer) => {
            let peer: UserName = peer
                .parse()
                .map_err(|_| ClientError::UnknownConversation(peer.clone()))?;
            live.send_text(&peer, text).await
        }
        Target::Group(name) => live.send_to_group(name, text).await,
    };
    match sent {
        Ok(_) => {
            if let Target::Peer(peer) = to
                && app.new_peer.take().is_some()
            {
                app.open = Some(peer);
            }
            app.status = None;
            refresh(live, app).await;
            Ok(())
        }
        Err(e) => {
            app.restore_input(text);
            refresh(live, app).await;
            Err(session_error(e))
        }
    }
}

async fn command_outcome(
    live: &Live,
    app: &mut App,
    command: ChatCommand,
) -> Result<(), ClientError> {
    let user = |name: &str| -> Result<UserName, ClientError> {
        name.parse()
            .map_err(|_| ClientError::UnknownConversation(name.to_owned()))
    };
    let group = |app: &App| -> Result<String, ClientError> {
        match app.open_info() {
            Some(info) if info.is_group && app.new_peer.is_none() => Ok(info.name.clone()),
            _ => Err(ClientError::UnknownConversation(
                "(open a group first: Ctrl-N / Ctrl-P)".into(),
            )),
        }
    };
    match command {
        ChatCommand::New(peer) => {
            let peer = user(&peer)?.to_string();
            if app
                .conversations
                .iter()
                .any(|c| !c.is_group && c.name == peer)
            {
                app.open = Some(peer);
                app.new_peer = None;
            } else {
                app.new_peer = Some(peer);
                app.open = None;
            }
            app.messages.clear();
            refresh(live, app).await;
        }
        ChatCommand::GroupCreate { name, members } => {
            let members = members
                .iter()
                .map(|m| user(m))
                .collect::<Result<Vec<_>, _>>()?;
            live.create_group(&name, &members)
                .await
                .map_err(session_error)?;
            app.open = Some(name.clone());
            app.new_peer = None;
            app.status = Some(format!("created {name}"));
            refresh(live, app).await;
        }
        ChatCommand::Add(member) => {
            let name = group(app)?;
            live.add_member(&name, &user(&member)?)
                .await
                .map_err(session_error)?;
            refresh(live, app).await;
        }
        ChatCommand::Remove(member) => {
            let name = group(app)?;
            live.remove_member(&name, &user(&member)?)
                .await
                .map_err(session_error)?;
            refresh(live, app).await;
        }
        ChatCommand::Leave => {
            let name = group(app)?;
            live.leave_group(&name).await.map_err(session_error)?;
            app.status = Some(format!("you left {name}"));
            refresh(live, app).await;
        }
        ChatCommand::Verify { user: peer, number } => {
            let peer = user(&peer)?;
            let shown = peer.clone();
            let confirming = number.is_some();
            let result = live
                .operation(move |client| {
                    async move {
                        match number {
                            Some(number) => client.confirm_safety_number(&peer, &number).await,
                            None => client.safety_number(&peer).await,
                        }
                    }
                    .boxed_local()
                })
                .await
                .map_err(session_error)??;
            if confirming {
                app.status = Some(format!("{shown} is verified"));
                refresh(live, app).await;
            } else {
                let mut lines = vec![
                    format!("safety number with {shown}:"),
                    result.safety_number.clone(),
                    String::new(),
                ];
                lines.extend(crate::qr(&result.safety_number).lines().map(str::to_owned));
                if result.key_changed {
                    lines.push(format!(
                        "{shown}'s account key changed: compare this new number with {shown}"
                    ));
                }
                lines.push(if result.verified {
                    "verified ✓".to_owned()
                } else {
                    format!("compare it with {shown} on a channel you trust, then: /verify {shown} NUMBER")
                });
                app.screen = app::Screen::Panel {
                    title: format!("verify {shown}"),
                    lines,
                };
            }
        }
        ChatCommand::Devices => {
            let devices = live
                .operation(|client| client.devices().boxed_local())
                .await
                .map_err(session_error)??;
            let lines = devices
                .iter()
                .map(|d| {
                    format!(
                        "{} key {}{}",
                        d.device,
                        d.fingerprint,
                        if d.this_device { " (this device)" } else { "" }
                    )
                })
                .collect();
            app.screen = app::Screen::Panel {
                title: "your devices".into(),
                lines,
            };
        }
        ChatCommand::Link => {
            let pending = live
                .operation(|client| client.start_link().boxed_local())
                .await
                .map_err(session_error)??;
            let mut lines = vec![
                format!("code: {}", pending.code()),
                "on the new device, run:".to_owned(),
                format!("rempart init --server {} --link CODE", app.server),
                String::new(),
            ];
            lines.extend(crate::qr(pending.code()).lines().map(str::to_owned));
            lines.push("the code works once, for 10 minutes; this chat signs the device in".into());
            app.screen = app::Screen::Panel {
                title: "link a device".into(),
                lines,
            };
            app.status = Some("waiting for the new device".into());
            app.linking = Some(Arc::new(pending));
        }
        ChatCommand::Members => {
            let Some(name) = app.open.clone() else {
                return Err(ClientError::UnknownConversation("(none open)".into()));
            };
            let lookup = name.clone();
            let roster = live
                .local(move |client| client.group_members(&lookup))
                .await
                .map_err(session_error)??;
            let time = now();
            let notices = app.notices.entry(name).or_default();
            notices.push((time, format!("{} devices:", roster.len())));
            for member in roster {
                notices.push((
                    time,
                    format!(
                        "  {} device {} key {}",
                        member.user, member.device, member.fingerprint
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Signs in the device being linked once it answered.
async fn check_link(live: &Live, app: &mut App) -> Result<(), ClientError> {
    let Some(pending) = app.linking.clone() else {
        return Ok(());
    };
    let answered = live
        .operation(move |client| {
            async move { client.link_if_answered(&pending).await }.boxed_local()
        })
        .await
        .map_err(session_error)?;
    match answered {
        Ok(None) => Ok(()),
        Ok(Some(device)) => {
            app.linking = None;
            app.status = Some(format!(
                "linked device {device}: it joins your conversations at their next sync"
            ));
            Ok(())
        }
        Err(e) => {
            app.linking = None;
            Err(e)
        }
    }
}

/// Reads the conversation list and the open conversation's newest page.
async fn refresh(live: &Live, app: &mut App) {
    let open = app.open.clone();
    let read = live
        .local(move |client| {
            let list = client.conversations()?;
            let page = match &open {
                Some(name) => client.history(name, PAGE, None).ok(),
                None => None,
            };
            Ok::<_, ClientError>((list, page))
        })
        .await;
    match read {
        Ok(Ok((list, page))) => {
            app.set_conversations(list);
            if app.open.is_some() {
                let page = page.unwrap_or_default();
                app.more_before = page.len() == PAGE;
                app.messages = page;
            }
        }
        Ok(Err(e)) => app.status = Some(e.to_string()),
        Err(e) => app.status = Some(e.to_string()),
    }
}

/// Reads the page before the oldest message shown.
async fn load_older(live: &Live, app: &mut App) -> Result<(), ClientError> {
    let (Some(open), Some(first)) = (app.open.clone(), app.messages.first().map(|m| m.id)) else {
        return Ok(());
    };
    let older = live
        .local(move |client| client.history(&open, PAGE, Some(&first)))
        .await
        .map_err(session_error)?
        .map_err(|e| ClientError::History(Box::new(e)))?;
    app.more_before = older.len() == PAGE;
    let newer = std::mem::take(&mut app.messages);
    app.messages = older;
    app.messages.extend(newer);
    Ok(())
}
