//! A subscribing program (mosquitto_sub or our mqtt-sub) run as a child process, watched line
//! by line: a test waits until the broker has answered its SUBSCRIBE before it publishes, rather
//! than sleeping and hoping the subscription is in place on a loaded machine.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// mosquitto_sub on 127.0.0.1:`port`, its standard output line-buffered (`stdbuf -oL`): it
/// fills a pipe's buffer before it writes its `-d` lines otherwise, so a watcher would see
/// nothing until it exits, and a killed one would lose what it printed.
pub fn mosquitto_sub(port: u16) -> Command {
    let mut command = Command::new("stdbuf");
    command.args([
        "-oL",
        "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    command
}

/// A subscriber started with `-d`: its debug lines say when SUBACK arrived; every other line is
/// what it printed for a message.
pub struct WatchedSubscriber {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

/// How long a subscriber may take to print the line a test waits for.
const LINE_WAIT: Duration = Duration::from_secs(10);

impl WatchedSubscriber {
    /// Starts `command` (which must include `-d`) with its standard output piped, and returns
    /// once it printed that it received its SUBACK. Panics when it exits or stays silent first.
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("the subscriber starts");
        let stdout = child.stdout.take().expect("piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut watched = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        watched.wait_for_line(|line| line.contains("received SUBACK"));
        watched
    }

    /// Blocks until the subscriber prints a line `wanted` accepts.
    pub fn wait_for_line(&mut self, wanted: impl Fn(&str) -> bool) {
        let until = Instant::now() + LINE_WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = wanted(&line);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "the subscriber did not print it in time; printed: {:?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the subscriber exited first; printed: {:?}", self.seen)
                }
            }
        }
    }

    /// Waits until the subscriber exits by itself (its `-C` count or `-W` timeout).
    pub fn finish(mut self) -> Finished {
        let status = self.child.wait().expect("the subscriber is waited for");
        // The reader thread ends at end of file, which the exit caused.
        while let Ok(line) = self.lines.recv_timeout(LINE_WAIT) {
            self.seen.push(line);
        }
        Finished {
            code: status.code(),
            lines: std::mem::take(&mut self.seen),
        }
    }
}

/// What a [`WatchedSubscriber`] printed, once it exited.
pub struct Finished {
    /// Its exit code (mosquitto_sub: 27 when `-W` timed out).
    pub code: Option<i32>,
    /// Every line it printed, debug lines included.
    pub lines: Vec<String>,
}

impl Finished {
    /// The lines it printed for messages: every line but its `-d` lines.
    pub fn messages(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|line| !is_debug_line(line))
            .collect()
    }
}

impl Drop for WatchedSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `-d` line of mosquitto_sub or mqtt-sub, not a message.
fn is_debug_line(line: &str) -> bool {
    line.starts_with("Client ") || line.starts_with("Subscribed (mid")
}
