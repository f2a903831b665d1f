//! Real mail servers on loopback for tests: Postfix takes submissions (with
//! SASL logins checked by Dovecot) and delivers to Dovecot over LMTP;
//! Dovecot keeps each mailbox as a Maildir and serves it over IMAP. Each
//! runs from its own configuration in a temporary directory, without
//! systemd, as root (Debian's `postfix`, `dovecot-imapd`, `dovecot-lmtpd`;
//! `.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The one address Postfix refuses as a recipient, at the SMTP dialogue.
pub const REFUSED: &str = "refused@example.net";

/// A Postfix and a Dovecot serving the domains `example.org` and
/// `example.net` on loopback. Stopped when dropped.
#[derive(Debug)]
pub struct MailServers {
    dir: TempDir,
    /// The SMTP submission port (no TLS: loopback only).
    pub smtp: u16,
    /// The IMAP port (plain, or upgraded with STARTTLS).
    pub imap: u16,
    /// The IMAPS port (TLS from the first byte), under a self-signed
    /// certificate for 127.0.0.1 that no public root signs.
    pub imaps: u16,
    master: Option<std::process::Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `command` to its end. Its output is not read: a daemon it starts
/// keeps the pipes open for as long as it runs.
fn run(command: &mut Command) {
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(status.success(), "{command:?}: {status}");
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} never listened on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl MailServers {
    /// Starts both servers with no mailbox yet.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rempart-mail")
            .tempdir()
            .unwrap();
        let root = dir.path().to_owned();
        // Postfix's daemons and Dovecot's mail user must reach in.
        run(Command::new("chmod").arg("755").arg(&root));
        let (smtp, imap, lmtp, auth) = (free_port(), free_port(), free_port(), free_port());
        let imaps = free_port();

        let dovecot = root.join("dovecot");
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(dovecot.join(sub)).unwrap();
        }
        run(Command::new("chmod").arg("777").arg(dovecot.join("mail")));
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
            ])
            .arg(dovecot.join("key.pem"))
            .arg("-out")
            .arg(dovecot.join("cert.pem")));
        std::fs::write(dovecot.join("users"), "").unwrap();
        let d = dovecot.display();
        std::fs::write(
            dovecot.join("dovecot.conf"),
            format!(
                "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
                 protocols = imap lmtp\nlisten = 127.0.0.1\nssl = yes\n\
                 ssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n\
                 disable_plaintext_auth = no\nauth_mechanisms = plain login\n\
                 first_valid_uid = 1\nmail_location = maildir:{d}/mail/%d/%n\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/users\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/mail/%d/%n\n}}\n\
                 service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n\
                 service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {lmtp}\n  }}\n}}\n\
                 service auth {{\n  inet_listener {{\n    address = 127.0.0.1\n    port = {auth}\n  }}\n}}\n\
                 service stats {{\n  unix_listener stats-reader {{\n    mode = 0666\n  }}\n  unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n"
            ),
        )
        .unwrap();
        run(Command::new("dovecot")
            .arg("-c")
            .arg(dovecot.join("dovecot.conf")));
        // From here on, dropping it stops what was started, even if a
        // later step fails.
        let mut servers = Self {
            dir,
            smtp,
            imap,
            imaps,
            master: None,
        };
        wait_for_port(imap, "Dovecot", &dovecot.join("dovecot.log"));

        let postfix = root.join("postfix");
        std::fs::create_dir_all(postfix.join("queue")).unwrap();
        std::fs::create_dir_all(postfix.join("data")).unwrap();
        run(Command::new("chown")
            .arg("postfix")
            .arg(postfix.join("data")));
        run(Command::new("chmod").arg("755").arg(&postfix));
        let p = postfix.display();
        std::fs::write(
            postfix.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {p}/queue\ndata_directory = {p}/data\n\
                 maillog_file = /dev/stdout\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
                 myhostname = mail.example.org\nmydestination =\n\
                 virtual_mailbox_domains = example.org, example.net\n\
                 virtual_transport = lmtp:inet:127.0.0.1:{lmtp}\nmynetworks = 127.0.0.0/8\n\
                 smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n\
                 smtpd_sasl_path = inet:127.0.0.1:{auth}\n\
                 smtpd_relay_restrictions = permit_sasl_authenticated, reject\n\
                 smtpd_recipient_restrictions = check_recipient_access \
                 inline:{{ {REFUSED}=REJECT }}, permit_sasl_authenticated, reject\n"
            ),
        )
        .unwrap();
        let master = std::fs::read_to_string("/etc/postfix/master.cf")
            .expect("Postfix (apt-get install postfix)")
            .lines()
            .map(|line| {
                if line.starts_with("smtp ") && line.contains(" inet ") {
                    format!("127.0.0.1:{smtp} inet n - n - - smtpd")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(postfix.join("master.cf"), master + "\n").unwrap();
        // `start-fg`: the master stays this process's child (`start`, which
        // daemonizes, fails without a word for a configuration directory
        // of its own).
        let master = Command::new("postfix")
            .arg("-c")
            .arg(&postfix)
            .arg("start-fg")
            .stdin(std::process::Stdio::null())
            // Its log: to a file of its own, it stays silent.
            .stdout(std::fs::File::create(postfix.join("maillog")).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Postfix (apt-get install postfix)");
        servers.master = Some(master);
        wait_for_port(smtp, "Postfix", &postfix.join("maillog"));
        servers
    }

    /// Adds a mailbox for `address`, with `password` for IMAP and
    /// submission.
    pub fn add_mailbox(&self, address: &str, password: &str) {
        use std::io::Write as _;
        let mut users = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dovecot().join("users"))
            .unwrap();
        writeln!(users, "{address}:{{PLAIN}}{password}").unwrap();
    }

    /// Every message in `address`'s mailbox, as stored, waiting up to 20 s
    /// for `count` of them.
    pub fn stored_messages(&self, address: &str, count: usize) -> Vec<Vec<u8>> {
        let (user, domain) = address.split_once('@').unwrap();
        let maildir = self.dovecot().join("mail").join(domain).join(user);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut found = Vec::new();
            for sub in ["new", "cur"] {
                if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
                    for entry in entries {
                        found.push(std::fs::read(entry.unwrap().path()).unwrap());
                    }
                }
            }
            if found.len() >= count || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many times `address` logged in to IMAP, from Dovecot's log.
    pub fn imap_logins(&self, address: &str) -> usize {
        std::fs::read_to_string(self.dovecot().join("dovecot.log"))
            .unwrap_or_default()
            .matches(&format!("Login: user=<{address}>"))
            .count()
    }

    fn dovecot(&self) -> PathBuf {
        self.dir.path().join("dovecot")
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        let postfix = self.dir.path().join("postfix");
        let dovecot = self.dovecot().join("dovecot.conf");
        for (program, config, verb) in [("postfix", postfix, "stop"), ("doveadm", dovecot, "stop")]
        {
            let _ = Command::new(program)
                .arg("-c")
                .arg(config)
                .arg(verb)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        if let Some(master) = &mut self.master {
            let _ = master.kill();
            let _ = master.wait();
        }
    }
}
