//! Drawing the chat: the conversation list, the open conversation, the
//! input box and the status line; the help screen and the alert panel over
//! them. Laid out to work in 80×24.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, Paragraph, Wrap};
use rempart_client::history::MessageState;
use rempart_client::session::SessionState;

use super::app::{App, COMMANDS, Item, KEYS, Screen};

/// Width of the conversation list.
const LIST_WIDTH: u16 = 22;
/// The most lines the input box grows to.
const INPUT_LINES: u16 = 6;

/// Draws the whole chat.
pub(crate) fn draw(frame: &mut Frame<'_>, app: &App) {
    let [main, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    let [list, right] =
        Layout::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Min(20)]).areas(main);
    let input_lines = (app.input.text.lines().count().max(1) as u16).min(INPUT_LINES);
    let [timeline, input] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(input_lines + 2)]).areas(right);
    draw_list(frame, app, list);
    draw_timeline(frame, app, timeline);
    draw_input(frame, app, input);
    draw_status(frame, app, status);
    match &app.screen {
        Screen::Main => {}
        Screen::Help => draw_help(frame, main),
        Screen::Panel { title, lines } => draw_panel(frame, main, title, lines),
    }
    if let Some(alert) = app.alerts.front() {
        let area = centered(main, 70, 12);
        frame.render_widget(Clear, area);
        let red = Style::default()
            .fg(Color::White)
            .bg(app.config.colours.alert);
        let mut lines = vec![
            Line::from(Span::styled(
                format!("SECURITY ALERT [{}]", alert.code),
                red.add_modifier(Modifier::BOLD),
            )),
            Line::from(""),
        ];
        if let Some(c) = &alert.conversation {
            lines.push(Line::from(format!("in {c}")));
        }
        lines.push(Line::from(alert.message.clone()));
        lines.push(Line::from(""));
        lines.push(Line::from(alert.code.advice()));
        lines.push(Line::from(""));
        lines.push(Line::from("Enter or Esc: acknowledge"));
        frame.render_widget(
            Paragraph::new(lines)
                .style(red)
                .wrap(Wrap { trim: true })
                .block(Block::default().borders(Borders::ALL).title(" alert ")),
            area,
        );
    }
}

fn draw_list(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let items: Vec<ListItem<'_>> = app
        .conversations
        .iter()
        .map(|c| {
            let mut mark = String::new();
            if app.alerted.contains(&c.name) {
                mark.push('!');
            }
            if c.ended {
                mark.push('×');
            }
            if c.verified {
                mark.push('✓');
            }
            if c.is_group {
                mark.push('#');
            }
            let unread = if c.unread > 0 {
                format!(" ({})", c.unread)
            } else {
                String::new()
            };
            let mut style = Style::default();
            if app.open.as_deref() == Some(c.name.as_str()) && app.new_peer.is_none() {
                style = style.add_modifier(Modifier::REVERSED);
            }
            if app.alerted.contains(&c.name) {
                style = style.fg(app.config.colours.alert);
            } else if c.unread > 0 {
                style = style.add_modifier(Modifier::BOLD);
            }
            ListItem::new(format!("{mark}{}{unread}", c.name)).style(style)
        })
        .collect();
    frame.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title(" chats ")),
        area,
    );
}

fn draw_timeline(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let title = match (&app.new_peer, app.open_info()) {
        (Some(peer), _) => format!(" {peer} (new) "),
        (None, Some(info)) if info.ended => format!(" {} (ended) ", info.name),
        (None, Some(info)) => format!(" {} ", info.name),
        (None, None) => " no conversation: /new USER ".to_owned(),
    };
    let mut lines: Vec<Line<'_>> = Vec::new();
    let mut day = None;
    for item in app.timeline() {
        let (date, clock) = utc(item.time());
        if day != Some(date.clone()) {
            lines.push(Line::from(Span::styled(
                format!("──── {date} (UTC) ────"),
                Style::default().fg(Color::DarkGray),
            )));
            day = Some(date);
        }
        match item {
            Item::Notice { text, .. } => lines.push(Line::from(Span::styled(
                format!("{clock} · {text}"),
                Style::default().fg(app.config.colours.notice),
            ))),
            Item::Message(m) => {
                let state = match m.state {
                    MessageState::Queued => " (queued)".to_owned(),
                    MessageState::Failed => {
                        format!(" (not sent: {})", m.reason.as_deref().unwrap_or("refused"))
                    }
                    MessageState::Sent => " ✓".to_owned(),
                    MessageState::Received => String::new(),
                };
                let sender_style = if m.sender.as_str() == app.me {
                    Style::default().fg(app.config.colours.own)
                } else {
                    Style::default().fg(app.config.colours.others)
                };
                for (i, text) in m.text.split('\n').enumerate() {
                    let mut spans = if i == 0 {
                        vec![
                            Span::raw(format!("{clock} ")),
                            Span::styled(format!("{}: ", m.sender), sender_style),
                        ]
                    } else {
                        vec![Span::raw("      ")]
                    };
                    spans.push(Span::raw(text.to_owned()));
                    if i == 0 && !state.is_empty() {
                        let style = if m.state == MessageState::Failed {
                            Style::default().fg(app.config.colours.alert)
                        } else {
                            Style::default().fg(Color::DarkGray)
                        };
                        spans.push(Span::styled(state.clone(), style));
                    }
                    lines.push(Line::from(spans));
                }
            }
        }
    }
    let height = usize::from(area.height.saturating_sub(2));
    let end = lines.len().saturating_sub(app.scroll.min(lines.len()));
    let start = end.saturating_sub(height);
    let shown: Vec<Line<'_>> = lines[start..end].to_vec();
    frame.render_widget(
        Paragraph::new(shown).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let open = app.open_info().filter(|_| app.new_peer.is_none());
    let changed = open.map(|i| i.key_changed.as_slice()).unwrap_or_default();
    let title = match open.filter(|i| i.ended) {
        None if !changed.is_empty() => {
            let who: Vec<&str> = changed.iter().map(|u| u.as_str()).collect();
            format!(
                " blocked: {}'s key changed: /verify {} ",
                who.join(", "),
                who[0]
            )
        }
        Some(info) => match &info.ended_by {
            Some(by) if by.as_str() == app.me => {
                " you left: this conversation is history ".to_owned()
            }
            Some(by) => format!(" {by} removed you: this conversation is history "),
            None => " ended: this conversation is history ".to_owned(),
        },
        None => " message (Enter sends, Alt-Enter new line, ? help) ".to_owned(),
    };
    let text: Vec<Line<'_>> = app.input.text.split('\n').map(Line::from).collect();
    let height = usize::from(area.height.saturating_sub(2));
    let skip = text.len().saturating_sub(height);
    frame.render_widget(
        Paragraph::new(text[skip..].to_vec())
            .block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
    // The cursor: its line and column within the box.
    let before = &app.input.text[..app.input.cursor];
    let row = before.matches('\n').count().saturating_sub(skip);
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
    let x = area.x
        + 1
        + u16::try_from(column)
            .unwrap_or(u16::MAX)
            .min(area.width.saturating_sub(3));
    let y = area.y
        + 1
        + u16::try_from(row)
            .unwrap_or(0)
            .min(area.height.saturating_sub(3));
    frame.set_cursor_position((x, y));
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let session = match app.session {
        SessionState::Connecting => "connecting",
        SessionState::Live => "live",
        SessionState::Polling => "offline (retrying)",
    };
    let witnesses = match (app.quorum, app.quorum_missing) {
        (0, _) => "no witnesses".to_owned(),
        (quorum, false) => format!("witness quorum {quorum}"),
        (quorum, true) => format!("witness quorum {quorum} MISSING"),
    };
    let mut text = format!("{} @ {} · {session} · {witnesses}", app.me, app.server);
    if let Some(status) = &app.status {
        text = format!("{status} │ {text}");
    }
    frame.render_widget(
        Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
    );
}

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let area = centered(area, 76, 20);
    frame.render_widget(Clear, area);
    let mut lines = vec![Line::from(Span::styled(
        "keys",
        Style::default().add_modifier(Modifier::BOLD),
    ))];
    lines.extend(
        KEYS.iter()
            .map(|(k, what)| Line::from(format!("  {k:<28} {what}"))),
    );
    lines.push(Line::from(Span::styled(
        "commands",
        Style::default().add_modifier(Modifier::BOLD),
    )));
    lines.extend(
        COMMANDS
            .iter()
            .map(|(c, what)| Line::from(format!("  {c:<28} {what}"))),
    );
    lines.push(Line::from("any key closes this help"));
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" help ")),
        area,
    );
}

fn draw_panel(frame: &mut Frame<'_>, area: Rect, title: &str, lines: &[String]) {
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 4;
    let height = lines.len() + 3;
    let area = centered(
        area,
        u16::try_from(width).unwrap_or(u16::MAX).max(30),
        u16::try_from(height).unwrap_or(u16::MAX),
    );
    frame.render_widget(Clear, area);
    let mut text: Vec<Line<'_>> = lines.iter().map(|l| Line::from(format!(" {l}"))).collect();
    text.push(Line::from(" any key closes this"));
    frame.render_widget(
        Paragraph::new(text).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" {title} ")),
        ),
        area,
    );
}

/// A `width`×`height` rectangle in the middle of `area` (smaller if it
/// does not fit).
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let (w, h) = (width.min(area.width), height.min(area.height));
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// The UTC date (`YYYY-MM-DD`) and time (`HH:MM`) of Unix seconds `t`.
fn utc(t: i64) -> (String, String) {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::app::{App, PendingAlert};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use rempart_client::history::HistoryEntry;
    use rempart_client::{AlertCode, ConversationInfo};

    fn screen(app: &App) -> String {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal.draw(|f| draw(f, app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                out.push_str(buffer[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn app() -> App {
        let mut app = App::new(
            "alice".into(),
            "http://127.0.0.1:7800".into(),
            1,
            crate::chat::config::Config::default(),
        );
        let info = |name: &str, is_group, unread, last_activity| ConversationInfo {
            name: name.into(),
            is_group,
            members: Vec::new(),
            ended: false,
            ended_by: None,
            unread,
            last_activity,
            verified: false,
            key_changed: Vec::new(),
        };
        app.set_conversations(vec![
            info("bob", false, 2, 100),
            info("team", true, 0, 90_000),
        ]);
        app.session = SessionState::Live;
        let entry = |sender: &str, time, text: &str, state| HistoryEntry {
            id: rempart_proto::MessageId::random(),
            sender: sender.parse().unwrap(),
            time,
            text: text.into(),
            state,
            reason: None,
        };
        app.messages = vec![
            entry("bob", 1_764_900_000, "hello team", MessageState::Received),
            entry("alice", 1_764_990_000, "hi bob", MessageState::Sent),
            entry("alice", 1_764_990_060, "still there?", MessageState::Queued),
        ];
        app
    }

    #[test]
    fn the_list_shows_unread_counts_newest_first_and_marks_groups() {
        let shown = screen(&app());
        let team = shown.find("#team").unwrap();
        let bob = shown.find("bob (2)").unwrap();
        assert!(team < bob, "{shown}");
        assert!(
            shown.contains("alice @ http://127.0.0.1:7800 · live · witness quorum 1"),
            "{shown}"
        );
    }

    #[test]
    fn the_conversation_shows_senders_times_dates_and_delivery_states() {
        let shown = screen(&app());
        assert!(shown.contains("──── 2025-12-05 (UTC) ────"), "{shown}");
        assert!(shown.contains("──── 2025-12-06 (UTC) ────"), "{shown}");
        assert!(shown.contains("02:00 bob: hello team"), "{shown}");
        assert!(shown.contains("alice: hi bob ✓"), "{shown}");
        assert!(shown.contains("alice: still there? (queued)"), "{shown}");
    }

    #[test]
    fn help_lists_every_command() {
        let mut app = app();
        app.screen = Screen::Help;
        let shown = screen(&app);
        for (command, _) in COMMANDS {
            assert!(shown.contains(command), "{command} missing:\n{shown}");
        }
    }

    #[test]
    fn an_alert_opens_a_panel_with_its_code_and_what_to_do() {
        let mut app = app();
        app.alerted.insert("bob".into());
        app.alerts.push_back(PendingAlert {
            code: AlertCode::AccountKeyChanged,
            conversation: Some("bob".into()),
            message: "bob's account key changed".into(),
        });
        let shown = screen(&app);
        assert!(
            shown.contains("SECURITY ALERT [account_key_changed]"),
            "{shown}"
        );
        assert!(shown.contains("Enter or Esc: acknowledge"), "{shown}");
        assert!(!shown.contains("MISSING"), "{shown}");
        app.quorum_missing = true;
        assert!(screen(&app).contains("witness quorum 1 MISSING"));
        assert!(shown.contains("!bob (2)"), "{shown}");
    }

    #[test]
    fn a_verified_conversation_is_marked_and_a_key_change_blocks_its_input() {
        let mut app = app();
        let team = app
            .conversations
            .iter_mut()
            .find(|c| c.name == "team")
            .unwrap();
        team.verified = true;
        let shown = screen(&app);
        assert!(shown.contains("✓#team"), "{shown}");
        let team = app
            .conversations
            .iter_mut()
            .find(|c| c.name == "team")
            .unwrap();
        team.verified = false;
        team.key_changed = vec!["bob".parse().unwrap()];
        let shown = screen(&app);
        assert!(shown.contains("blocked: bob's key changed"), "{shown}");
    }

    #[test]
    fn a_safety_number_panel_shows_the_number() {
        let mut app = app();
        app.screen = Screen::Panel {
            title: "verify bob".into(),
            lines: vec!["12345 67890 12345 67890".into()],
        };
        let shown = screen(&app);
        assert!(shown.contains("verify bob"), "{shown}");
        assert!(shown.contains("12345 67890 12345 67890"), "{shown}");
    }

    #[test]
    fn an_ended_conversation_says_so_in_the_input_box() {
        let mut app = app();
        let open = app
            .conversations
            .iter_mut()
            .find(|c| c.name == "team")
            .unwrap();
        open.ended = true;
        open.ended_by = Some("bob".parse().unwrap());
        let shown = screen(&app);
        assert!(shown.contains("bob removed you"), "{shown}");
    }
}
