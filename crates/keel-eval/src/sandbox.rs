//! Runs untrusted Python (HumanEval's generated code) in a bubblewrap sandbox, and refuses to
//! run it at all where no sandbox can be made.
//!
//! # What the sandbox guarantees
//! - **Nothing writable but a private `/tmp`**: the program sees `/usr` (read-only, for
//!   `python3`), a private tmpfs at `/tmp` (its home and working directory), a minimal `/dev`
//!   and its own `/proc`. The user's home, the work tree and the rest of the file system are not
//!   mounted at all.
//! - **No network, no other processes**: new user, pid, network, IPC, UTS and cgroup
//!   namespaces (`bwrap --unshare-all`). When the evaluating process is root, the sandbox runs
//!   as `nobody`, so that the process limit applies (the kernel exempts root from it); for any
//!   other user the limit is what they already run plus [`PROCESSES`] (the kernel counts all of
//!   a user's processes). Concurrent runs as `nobody` share one allowance.
//! - **Bounded resources**: rlimits on address space ([`MEMORY_BYTES`]), processes
//!   ([`PROCESSES`]), file size ([`FILE_BYTES`]) and CPU time (the wall limit plus one second),
//!   set before `bwrap` starts and inherited by everything in the sandbox.
//! - **Nothing outlives the run**: the program is the child of the pid namespace's init
//!   (bwrap); at its exit or at the deadline the namespace is torn down, which kills every
//!   process in it (`setsid` does not escape a pid namespace), and the process group is killed
//!   too. The reader of its output stops at the deadline even if some process kept the pipe open,
//!   and keeps at most the last [`OUTPUT_BYTES`] of output.
//!
//! # How a pass is decided, and the threat that remains
//! A fresh random marker and the program reach the harness (a short Python script given on the
//! command line) through stdin, which the harness reads to its end before the program starts:
//! the marker is in no file, argument, environment variable or constant of the program's code.
//! The harness compiles and runs the program, and only if the program returns normally does it
//! print the marker; a pass is exit status 0 with the marker as the last line. A program that
//! exits early (`sys.exit(0)`, `os._exit(0)`) prints no marker and fails.
//!
//! As in OpenAI's human-eval harness, the program runs in the same interpreter as the check, so
//! a program written to cheat can still fake a pass by introspection (walking
//! `sys._getframe().f_back` to the harness's locals, or `gc`), or by patching the test's
//! `assert`-based `check` through `builtins`. The sandbox protects the machine from the code;
//! it does not make the score robust against a model trained to game it. Scores of models that
//! could have seen this harness should be read with that in mind.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// Address space of the sandbox (python3 itself needs about 30 MiB).
pub const MEMORY_BYTES: u64 = 1 << 30;
/// Processes of the sandbox's user (bubblewrap takes two of them).
pub const PROCESSES: u64 = 64;
/// The largest file the program may write (in its tmpfs).
pub const FILE_BYTES: u64 = 16 << 20;
/// Output kept from the program; the rest is read and dropped.
pub const OUTPUT_BYTES: usize = 1 << 20;

const BWRAP: &str = "bwrap";
const NOBODY: u32 = 65534;

/// Reads the marker line, then the program, from stdin, and prints the marker only if the
/// program returns normally. Nothing of the marker stays in the program's code or files.
const HARNESS: &str = r#"
import os, sys
def _keel_main():
    data = sys.stdin.buffer.read()
    marker, _, source = data.partition(b"\n")
    del data
    code = compile(source, "program.py", "exec")
    del source
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    sys.stdout.flush()
    os.write(1, b"\n" + marker + b"\n")
_keel_main()
"#;

/// The outcome of one run.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status 0 and the marker as the last line of the output.
    pub passed: bool,
    /// Killed at the deadline.
    pub timed_out: bool,
    /// The last [`OUTPUT_BYTES`] (at most) of stdout, the marker line included.
    pub stdout: Vec<u8>,
}

/// The system python3 the sandbox runs (it must live under `/usr`, the only tree mounted).
fn python() -> Result<&'static str> {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("HumanEval runs code with a system python3 under /usr, and none was found (apt-get install python3)")
}

/// Checks once that `bwrap` can make the sandbox here; the error says how to get one.
fn ensure_available() -> Result<()> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(|| probe(BWRAP).map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

/// Runs a trivial program in the sandbox made with `bwrap`.
pub fn probe(bwrap: &str) -> Result<()> {
    let out = run_with(bwrap, "print('ok')", Duration::from_secs(20)).and_then(|o| {
        if o.passed {
            Ok(())
        } else {
            bail!("a trivial program did not pass in it (output: {:?})", String::from_utf8_lossy(&o.stdout))
        }
    });
    out.context(
        "HumanEval refuses to run generated code without a sandbox, and bubblewrap could not make one here \
         (install it with `apt-get install bubblewrap`, or scripts/setup.sh; in a container, allow user namespaces)",
    )
}

/// Runs `program` in the sandbox for at most `limit`.
pub fn run(program: &str, limit: Duration) -> Result<Outcome> {
    ensure_available()?;
    run_with(BWRAP, program, limit)
}

fn command(bwrap: &str, python: &str, limit: Duration) -> Command {
    let mut c = Command::new(bwrap);
    c.args(["--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]);
    // Merged-/usr systems link these into /usr; others have them as directories.
    for dir in ["/bin", "/sbin", "/lib", "/lib32", "/lib64"] {
        match std::fs::read_link(dir) {
            Ok(target) => c.arg("--symlink").arg(target).arg(dir),
            Err(_) if Path::new(dir).is_dir() => c.args(["--ro-bind", dir, dir]),
            Err(_) => continue,
        };
    }
    c.args(["--tmpfs", "/tmp", "--dev", "/dev", "--proc", "/proc", "--chdir", "/tmp", "--clearenv"]);
    c.args(["--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"]);
    c.args([python, "-I", "-c", HARNESS]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    // RLIMIT_NPROC counts every process of the real user: root runs the sandbox as nobody (root
    // is exempt from the limit); anyone else gets headroom over what they already run.
    let processes = if uid == 0 {
        c.uid(NOBODY).gid(NOBODY);
        PROCESSES
    } else {
        processes_of(uid) as u64 + PROCESSES
    };
    let cpu = limit.as_secs() + 1;
    // Its own process group, so that the deadline can kill every process of the run.
    c.process_group(0);
    // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            for (resource, value) in [
                (libc::RLIMIT_AS, MEMORY_BYTES),
                (libc::RLIMIT_NPROC, processes),
                (libc::RLIMIT_FSIZE, FILE_BYTES),
                (libc::RLIMIT_CPU, cpu),
                (libc::RLIMIT_CORE, 0),
            ] {
                let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    c
}

fn run_with(bwrap: &str, program: &str, limit: Duration) -> Result<Outcome> {
    let marker = fresh_marker()?;
    let mut child = command(bwrap, python()?, limit)
        .spawn()
        .with_context(|| format!("cannot start {bwrap} (install bubblewrap: apt-get install bubblewrap)"))?;
    let output = drain(child.stdout.take().expect("piped"));
    let mut stdin = child.stdin.take().expect("piped");
    // A program that never reads its input cannot block the writer: the harness reads all of it
    // before the program starts, and a failed write only means the sandbox died early.
    let input = format!("{marker}\n{program}");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let started = Instant::now();
    let status = loop {
        // A failed wait is treated as the deadline: the run is killed either way.
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() <= limit => {}
            _ => break None,
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    kill_group(&mut child);
    let _ = writer.join();
    // Bounded: every process that could hold the pipe died with the namespace.
    let stdout = output.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    let last = String::from_utf8_lossy(&stdout).lines().rev().find(|l| !l.is_empty()).map(str::to_string);
    Ok(Outcome {
        passed: status.is_some_and(|s| s.success()) && last.as_deref() == Some(marker.as_str()),
        timed_out: status.is_none(),
        stdout,
    })
}

/// Kills the run's process group (bwrap and anything left in it) and reaps bwrap; its pid
/// namespace dies with it.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: a plain kill(2) of the group this run created.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// How many processes (threads included, as the kernel counts them) the user `uid` runs.
fn processes_of(uid: u32) -> usize {
    let uid = uid.to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("status")).ok())
        .filter_map(|status| {
            let real = status.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(1)? == uid;
            let threads: usize =
                status.lines().find(|l| l.starts_with("Threads:"))?.split_whitespace().nth(1)?.parse().ok()?;
            real.then_some(threads)
        })
        .sum()
}

/// Reads a pipe to its end on a thread, keeping its last [`OUTPUT_BYTES`] (where the marker is).
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 1 << 16];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * OUTPUT_BYTES {
                kept.drain(..kept.len() - OUTPUT_BYTES);
            }
        }
        if kept.len() > OUTPUT_BYTES {
            kept.drain(..kept.len() - OUTPUT_BYTES);
        }
        let _ = tx.send(kept);
    });
    rx
}

/// 128 random bits from the kernel, as hex.
fn fresh_marker() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the pass marker")?;
    Ok(format!("keel-passed-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn processes_are_counted_per_user() {
        // Root always runs something (init, this test); an unused uid runs nothing, so a
        // non-root user's process limit is their own count plus the sandbox's allowance.
        // SAFETY: getuid cannot fail.
        let me = unsafe { libc::getuid() };
        assert!(super::processes_of(0) + super::processes_of(me) > 0);
        assert_eq!(super::processes_of(4_000_000_000), 0);
    }
}
