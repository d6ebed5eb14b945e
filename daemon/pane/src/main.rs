//! `aifactory-pane`: one session's pane monitor, started by aifactoryd (see the
//! `aifactory_pane` library). A binary of its own, much smaller than the daemon's, because one
//! is started for every session: its start is on the path of every `sessions new`.

fn main() -> std::process::ExitCode {
    aifactory_pane::main()
}
