//! `mqtt-passwd`: adds, changes or deletes a user of a password file in mosquitto_passwd's
//! format (`$7$` PBKDF2-HMAC-SHA512 entries), which `mqtt-broker` and mosquitto both read.
//!
//! ```text
//! mqtt-passwd -c -b passwd alice secret     # create the file with alice
//! echo hunter2 | mqtt-passwd passwd bob     # add or change bob, password from stdin
//! mqtt-passwd -D passwd bob                 # delete bob
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mqtt_streaming_tokio::auth::{password_entry, PasswordFile, DEFAULT_ITERATIONS};

/// Manage a password file in mosquitto_passwd's format.
#[derive(Parser, Debug)]
#[command(name = "mqtt-passwd", version)]
struct Args {
    /// Create the file (overwriting one that exists).
    #[arg(short = 'c')]
    create: bool,
    /// Take the password from the command line (else the first line of stdin).
    #[arg(short = 'b')]
    batch: bool,
    /// Delete the user.
    #[arg(short = 'D', conflicts_with_all = ["create", "batch"])]
    delete: bool,
    /// PBKDF2 iterations.
    #[arg(short = 'I', long = "iterations", default_value_t = DEFAULT_ITERATIONS)]
    iterations: u32,
    /// The password file.
    file: PathBuf,
    /// The user name.
    username: String,
    /// The password (with -b).
    password: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let existing = if args.create {
        String::new()
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?
    };
    // Checked before it is rewritten: a file mqtt-broker would refuse is not made worse.
    PasswordFile::parse(&existing).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let prefix = format!("{}:", args.username);
    let mut lines: Vec<String> = existing
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    if args.delete {
        if lines.len() == existing.lines().count() {
            return Err(format!("user {} not found", args.username));
        }
    } else {
        let password = match (&args.password, args.batch) {
            (Some(p), true) => p.clone(),
            (None, true) => return Err("-b needs a password argument".into()),
            (Some(_), false) => return Err("a password argument needs -b".into()),
            (None, false) => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| format!("reading the password: {e}"))?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            }
        };
        lines.push(password_entry(&args.username, &password, args.iterations)?);
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(&args.file, text)
        .map_err(|e| format!("cannot write {}: {e}", args.file.display()))
}
