//! `pipebench` binary: parse the command line, run, map the outcome to an exit code.
//!
//! Exit codes (also in `pipebench --help`): 0 ok, 1 reserved for `compare` (a regression, or
//! outputs agreeing less than `--min-agreement`), 2 errors (a document, page or stage failed,
//! outputs differ from `--check-outputs` beyond its tolerance, or the run could not start).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pipebench::cli::Cli::parse();
    // Thread counts must be fixed before candle or rayon create their pools.
    pipebench::models::device::apply_thread_count(cli.threads());
    pipebench::models::device::keep_freed_memory();
    match pipebench::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            if pipebench::is_broken_pipe(&err) {
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            pipebench::ExitStatus::Errors.into()
        }
    }
}
