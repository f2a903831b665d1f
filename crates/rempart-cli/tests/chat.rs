//! `rempart chat` end to end: two chat processes in tmux against a real
//! `rempart-server` process. What one types reaches the other's screen with
//! no key pressed there; a group created with `/group create` appears on the
//! other's screen; a forged directory head opens the alert panel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rempart_testkit::{ServerProcess, forge_unsigned_head};
use tempfile::TempDir;

/// A guard against a hang, not a measure: generous on any machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn rempart_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rempart"))
}

/// Tmux servers started by this process, for unique socket names.
static SOCKETS: AtomicUsize = AtomicUsize::new(0);

/// A tmux server of the test's own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        Self {
            socket: format!(
                "rempart-chat-test-{}-{}",
                std::process::id(),
                SOCKETS.fetch_add(1, Ordering::SeqCst)
            ),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is needed (apt-get install tmux)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `rempart --home HOME chat` in a 100×30 session named `name`.
    fn chat(&self, name: &str, home: &Path) {
        let command = format!(
            "REMPART_PASSPHRASE_FILE={} {} --home {} chat",
            rempart_testkit::passphrase_file().display(),
            rempart_binary().display(),
            home.display()
        );
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "100",
            "-y",
            "30",
            &command,
        ]);
    }

    /// Types `text` in `name`'s pane, then Enter.
    fn type_line(&self, name: &str, text: &str) {
        self.run(&["send-keys", "-t", name, "-l", text]);
        self.run(&["send-keys", "-t", name, "Enter"]);
    }

    fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    /// Waits until `name`'s screen shows `text`.
    fn wait_for(&self, name: &str, text: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(name);
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{name}'s screen never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn init(home: &Path, server: &str, name: &str) {
    let out = Command::new(rempart_binary())
        .env_remove("REMPART_HOME")
        .env(
            "REMPART_PASSPHRASE_FILE",
            rempart_testkit::passphrase_file(),
        )
        .arg("--home")
        .arg(home)
        .args(["init", "--server", server, "--name", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_chats_talk_live_see_a_new_group_and_an_alert() {
    let (data, server) = ServerProcess::beside(&rempart_binary(), &[]);
    let homes = TempDir::new().unwrap();
    let (alice, bob) = (homes.path().join("alice"), homes.path().join("bob"));
    init(&alice, &server.url(), "alice");
    init(&bob, &server.url(), "bob");

    let tmux = Tmux::new();
    tmux.chat("alice", &alice);
    tmux.chat("bob", &bob);
    tmux.wait_for("alice", "alice @");
    tmux.wait_for("bob", "bob @");

    // Alice starts a conversation; Bob's screen shows it, untouched.
    tmux.type_line("alice", "/new bob");
    tmux.type_line("alice", "hello from alice");
    tmux.wait_for("alice", "alice: hello from alice ✓");
    tmux.wait_for("bob", "alice: hello from alice");

    // Bob answers in the conversation his chat opened.
    tmux.type_line("bob", "hi alice");
    tmux.wait_for("alice", "bob: hi alice");

    // A group Alice creates appears on Bob's screen.
    tmux.type_line("alice", "/group create crew bob");
    tmux.wait_for("bob", "#crew");

    // Bob checks Alice's safety number: the number and its QR code; then
    // confirms it, and the conversation is marked verified.
    tmux.type_line("bob", "/verify alice");
    let screen = tmux.wait_for("bob", "safety number with alice:");
    let number: String = screen
        .lines()
        .skip_while(|l| !l.contains("safety number with alice:"))
        .nth(1)
        .unwrap()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == ' ')
        .collect();
    assert_eq!(number.split_whitespace().count(), 12, "{screen}");
    tmux.run(&["send-keys", "-t", "bob", "Escape"]);
    tmux.type_line("bob", &format!("/verify alice {}", number.trim()));
    tmux.wait_for("bob", "alice is verified");
    tmux.wait_for("bob", "✓alice");

    // Alice links a second device from the chat: the code it shows lets
    // `rempart init --link` join her account, and the chat says so.
    tmux.type_line("alice", "/link");
    let screen = tmux.wait_for("alice", "code: ");
    let code: String = screen
        .lines()
        .find_map(|l| l.split("code: ").nth(1))
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    let laptop = homes.path().join("alice-laptop");
    let linked = Command::new(rempart_binary())
        .env_remove("REMPART_HOME")
        .env(
            "REMPART_PASSPHRASE_FILE",
            rempart_testkit::passphrase_file(),
        )
        .arg("--home")
        .arg(&laptop)
        .args(["init", "--server", &server.url(), "--link", &code])
        .output()
        .unwrap();
    assert!(
        linked.status.success(),
        "{}",
        String::from_utf8_lossy(&linked.stderr)
    );
    tmux.wait_for("alice", "linked device");
    tmux.run(&["send-keys", "-t", "alice", "Escape"]);

    // The server serves a directory head its key did not sign: Bob's
    // next catch-up opens the alert panel.
    forge_unsigned_head(data.path());
    tmux.type_line("alice", "are you there?");
    let screen = tmux.wait_for("bob", "SECURITY ALERT [directory_head_signature_invalid]");
    assert!(screen.contains("acknowledge"), "{screen}");

    // /quit ends the chat and gives the terminal back.
    tmux.type_line("alice", "/quit");
    let start = Instant::now();
    while tmux
        .run(&["list-sessions", "-F", "#{session_name}"])
        .contains("alice")
    {
        assert!(start.elapsed() < PATIENCE, "alice's chat did not quit");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
}

#[test]
fn sigterm_ends_the_chat_with_the_terminal_put_back() {
    let (_data, server) = ServerProcess::beside(&rempart_binary(), &[]);
    let homes = TempDir::new().unwrap();
    let alice = homes.path().join("alice");
    init(&alice, &server.url(), "alice");

    // The chat runs under a shell that, once it ends, records how it
    // exited and the terminal's modes.
    let after = homes.path().join("after");
    let tmux = Tmux::new();
    let command = format!(
        "REMPART_PASSPHRASE_FILE={} {} --home {} chat; echo \"exit $?\" > {}; stty -a >> {}; sleep 60",
        rempart_testkit::passphrase_file().display(),
        rempart_binary().display(),
        alice.display(),
        after.display(),
        after.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "alice",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    tmux.wait_for("alice", "alice @");
    let shell = tmux.run(&["display-message", "-p", "-t", "alice", "#{pane_pid}"]);
    let chat = Command::new("pgrep")
        .args(["-P", shell.trim()])
        .output()
        .unwrap();
    let chat = String::from_utf8(chat.stdout).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", chat.trim()])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "no chat process under the shell ({chat:?})"
    );
    let start = Instant::now();
    let recorded = loop {
        if let Ok(text) = std::fs::read_to_string(&after)
            && text.contains("speed")
        {
            break text;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the chat did not end on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(recorded.starts_with("exit 0"), "{recorded}");
    // Raw mode is off again: the terminal echoes and reads lines.
    let modes: Vec<&str> = recorded.split_whitespace().collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo"),
        "{recorded}"
    );
    drop(server);
}
